"""Tests for the pure-PyTorch CSR neighbour sampler and ``neighbor_loader``."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.datasets import Planetoid
from torch_geometric.loader import NeighborLoader, NodeLoader
from torch_geometric.nn import GCNConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.sampler import NodeSamplerInput

import graphmoe.data.sampler as sampler_module
from graphmoe.data.loader import neighbor_loader
from graphmoe.data.sampler import CSRNeighborSampler

CORA_FILES = [f"ind.cora.{s}" for s in ("x", "y", "tx", "ty", "allx", "ally", "graph",
                                         "test.index")]


# Fixtures and helpers ########################################################

def random_graph(num_nodes: int = 60, num_edges: int = 400, seed: int = 0) -> Data:
    """A directed multigraph with isolated nodes (the last five) and skewed degrees."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes - 5, (num_edges, ), generator=gen)
    dst = (torch.rand(num_edges, generator=gen) ** 2 * (num_nodes - 5)).long()
    x = torch.randn(num_nodes, 8, generator=gen)
    return Data(x=x, edge_index=torch.stack([src, dst]), y=torch.arange(num_nodes))


@pytest.fixture(scope="module")
def graph() -> Data:
    return random_graph()


@pytest.fixture(scope="module")
def cora(data_root: Path, tmp_path_factory) -> Data:
    src = data_root / "planetoid_cora"
    if not all((src / name).is_file() for name in CORA_FILES):
        pytest.skip(f"Cora raw files {CORA_FILES} not found in {src}")
    raw = tmp_path_factory.mktemp("planetoid") / "Cora" / "raw"
    raw.mkdir(parents=True)
    for name in CORA_FILES:
        shutil.copy(src / name, raw / name)
    return Planetoid(str(raw.parent.parent), "Cora")[0]


def in_degree(data: Data) -> Tensor:
    return torch.bincount(data.edge_index[1], minlength=data.num_nodes)


def check_batch(batch: Data, data: Data, seeds: Tensor) -> None:
    """PyG NeighborLoader conventions, for a batch sampled from ``data``."""
    n = batch.num_sampled_nodes
    e = batch.num_sampled_edges
    assert batch.batch_size == seeds.numel() == n[0]
    assert torch.equal(batch.n_id[:batch.batch_size], seeds)
    assert sum(n) == batch.n_id.numel() == batch.num_nodes
    assert sum(e) == batch.edge_index.size(1) == batch.e_id.numel()
    assert batch.n_id.unique().numel() == batch.n_id.numel()
    assert torch.equal(batch.x, data.x[batch.n_id])
    # Every sampled edge is the original edge `e_id`, in PyG's direction:
    assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
    # Hop h only adds in-edges of nodes added at hop h - 1, from nodes seen by hop h:
    node_ptr = torch.tensor([0] + n).cumsum(0)
    edge_ptr = torch.tensor([0] + e).cumsum(0)
    for h in range(len(e)):
        src, dst = batch.edge_index[:, edge_ptr[h]:edge_ptr[h + 1]]
        assert bool(((dst >= node_ptr[h]) & (dst < node_ptr[h + 1])).all())
        assert bool((src < node_ptr[h + 2]).all())
        assert bool((dst[1:] >= dst[:-1]).all())  # grouped by target, like PyG


def full_two_hop(data: Data, seeds: Tensor) -> tuple[set[int], set[int]]:
    """Reference for ``num_neighbors=[-1, -1]`` by plain set logic."""
    src, dst = data.edge_index.tolist()
    frontier, seen, edges = set(seeds.tolist()), set(seeds.tolist()), set()
    for _ in range(2):
        hop = {k for k in range(len(dst)) if dst[k] in frontier}
        edges |= hop
        frontier = {src[k] for k in hop} - seen
        seen |= frontier
    return seen, edges


# Batch structure #############################################################

@pytest.mark.parametrize("num_neighbors", [[3, 2], [5, -1, 2], [-1], [0, 4]])
@pytest.mark.parametrize("replace", [False, True])
def test_batch_follows_pyg_conventions(graph: Data, num_neighbors, replace) -> None:
    torch.manual_seed(1)
    seeds = torch.tensor([7, 3, 40, 58, 0, 12])
    loader = neighbor_loader(graph, num_neighbors, input_nodes=seeds, batch_size=6,
                             replace=replace)
    assert isinstance(loader, NodeLoader) and not isinstance(loader, NeighborLoader)
    batch = next(iter(loader))
    check_batch(batch, graph, seeds)
    assert torch.equal(batch.input_id, torch.arange(6))
    assert torch.equal(batch.y, graph.y[batch.n_id])
    assert len(batch.num_sampled_nodes) == len(num_neighbors) + 1
    assert len(batch.num_sampled_edges) == len(num_neighbors)


# `_FLOYD_RATIO` picks the path for rows with more than k in-edges:
# 0 = random-key sort only, 1 = both in one hop (sort for k < deg <= k^2),
# 16 = Floyd only (for these small fanouts).
@pytest.mark.parametrize("replace,floyd_ratio", [(False, 0), (False, 1), (False, 16),
                                                 (True, 16)])
def test_fanout_per_target(graph: Data, replace: bool, floyd_ratio: int, monkeypatch) -> None:
    monkeypatch.setattr(sampler_module, "_FLOYD_RATIO", floyd_ratio)
    torch.manual_seed(2)
    fanout = [4, 3]
    deg = in_degree(graph)
    batch = next(iter(neighbor_loader(graph, fanout, batch_size=30, shuffle=True,
                                      replace=replace)))
    edge_ptr = torch.tensor([0] + batch.num_sampled_edges).cumsum(0)
    node_ptr = torch.tensor([0] + batch.num_sampled_nodes).cumsum(0)
    for h, k in enumerate(fanout):
        dst = batch.edge_index[1, edge_ptr[h]:edge_ptr[h + 1]]
        targets = torch.arange(node_ptr[h], node_ptr[h + 1])
        count = torch.bincount(dst, minlength=batch.num_nodes)[targets]
        full_deg = deg[batch.n_id[targets]]
        expected = torch.where(full_deg > 0, k, 0) if replace else full_deg.clamp(max=k)
        assert torch.equal(count, expected)
    if not replace:  # No in-edge is drawn twice for the same target:
        assert batch.e_id.unique().numel() == batch.e_id.numel()


def test_all_neighbors_equals_reference(graph: Data) -> None:
    seeds = torch.tensor([1, 2, 3, 5, 8, 13, 21, 34, 57])
    batch = next(iter(neighbor_loader(graph, [-1, -1], input_nodes=seeds, batch_size=9)))
    check_batch(batch, graph, seeds)
    nodes, edges = full_two_hop(graph, seeds)
    assert set(batch.n_id.tolist()) == nodes
    assert set(batch.e_id.tolist()) == edges
    assert batch.e_id.numel() == len(edges)


@pytest.mark.parametrize("floyd_ratio", [0, 16])
def test_sampling_without_replacement_is_uniform(floyd_ratio: int, monkeypatch) -> None:
    # One target with 10 in-edges, seeded 4000 times in one call: each in-edge
    # should be picked with probability 3/10.
    monkeypatch.setattr(sampler_module, "_FLOYD_RATIO", floyd_ratio)
    edge_index = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])
    sampler = CSRNeighborSampler(Data(edge_index=edge_index, num_nodes=11), [3])
    torch.manual_seed(3)
    out = sampler.sample(torch.zeros(4000, dtype=torch.long))
    assert out.num_sampled_edges == [12000]
    assert torch.equal(torch.bincount(out.col, minlength=4000), torch.full((4000, ), 3))
    freq = torch.bincount(out.edge, minlength=10).double() / 4000
    assert torch.allclose(freq, torch.full((10, ), 0.3, dtype=torch.double), atol=0.04)
    for seed in range(0, 4000, 500):  # three distinct edges per copy of the seed
        assert out.edge[out.col == seed].unique().numel() == 3


# Exactness against full-graph inference ######################################

class TwoLayer(torch.nn.Module):
    def __init__(self, conv: type, in_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv1 = conv(in_channels, 16, **kwargs)
        self.conv2 = conv(16, 7, **kwargs)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None):
        args = () if edge_weight is None else (edge_weight, )
        x = self.conv1(x, edge_index, *args).relu()
        return self.conv2(x, edge_index, *args)


@torch.no_grad()
def test_full_neighborhood_matches_full_graph_sage(cora: Data) -> None:
    torch.manual_seed(4)
    model = TwoLayer(SAGEConv, cora.num_features).eval()
    full = model(cora.x, cora.edge_index)
    seeds = torch.randperm(cora.num_nodes)[:300]
    for batch in neighbor_loader(cora, [-1, -1], input_nodes=seeds, batch_size=100):
        check_batch(batch, cora, batch.n_id[:batch.batch_size])
        out = model(batch.x, batch.edge_index)[:batch.batch_size]
        torch.testing.assert_close(out, full[batch.n_id[:batch.batch_size]])


@torch.no_grad()
def test_full_neighborhood_matches_full_graph_gcn(cora: Data) -> None:
    # GCN's symmetric normalisation needs full-graph degrees: take the
    # full-graph edge weights through `e_id` (plus the self-loops).
    torch.manual_seed(5)
    model = TwoLayer(GCNConv, cora.num_features, add_self_loops=False, normalize=False).eval()
    n = cora.num_nodes
    edge_index, weight = gcn_norm(cora.edge_index, num_nodes=n)  # self-loops appended last
    full = model(cora.x, edge_index, weight)
    seeds = torch.randperm(n)[:200]
    batch = next(iter(neighbor_loader(cora, [-1, -1], input_nodes=seeds, batch_size=200)))
    loops = torch.arange(batch.num_nodes).repeat(2, 1)
    sub_index = torch.cat([batch.edge_index, loops], dim=1)
    sub_weight = torch.cat([weight[batch.e_id], weight[cora.num_edges + batch.n_id]])
    out = model(batch.x, sub_index, sub_weight)[:batch.batch_size]
    torch.testing.assert_close(out, full[seeds])


def test_epoch_covers_every_seed_once(cora: Data) -> None:
    torch.manual_seed(6)
    loader = neighbor_loader(cora, [10, 5], input_nodes=cora.train_mask, batch_size=32,
                             shuffle=True)
    seeds = torch.cat([batch.n_id[:batch.batch_size] for batch in loader])
    assert torch.equal(seeds.sort().values, cora.train_mask.nonzero().view(-1))


# Determinism, corner cases and bad input ######################################

def test_deterministic_under_manual_seed(graph: Data) -> None:
    def run(seed: int) -> list[Tensor]:
        torch.manual_seed(seed)
        loader = neighbor_loader(graph, [3, 3], batch_size=16, shuffle=True)
        return [torch.cat([b.n_id, b.e_id]) for b in loader]

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_isolated_seeds(graph: Data) -> None:
    isolated = torch.tensor([55, 59, 57])
    assert bool((in_degree(graph)[isolated] == 0).all())
    batch = next(iter(neighbor_loader(graph, [5, 5], input_nodes=isolated, batch_size=3)))
    assert torch.equal(batch.n_id, isolated)
    assert batch.edge_index.shape == (2, 0) and batch.e_id.numel() == 0
    assert batch.num_sampled_nodes == [3, 0, 0] and batch.num_sampled_edges == [0, 0]


def test_graph_without_edges() -> None:
    data = Data(x=torch.randn(4, 2), edge_index=torch.empty(2, 0, dtype=torch.long))
    batch = next(iter(neighbor_loader(data, [2], batch_size=4, replace=True)))
    assert torch.equal(batch.n_id, torch.arange(4)) and batch.num_sampled_edges == [0]


def test_sample_from_nodes_sets_metadata(graph: Data) -> None:
    sampler = CSRNeighborSampler(graph, [2])
    out = sampler.sample_from_nodes(NodeSamplerInput(input_id=torch.tensor([4, 9]),
                                                     node=torch.tensor([10, 20])))
    assert torch.equal(out.node[:2], torch.tensor([10, 20]))
    assert torch.equal(out.metadata[0], torch.tensor([4, 9])) and out.metadata[1] is None
    assert sampler.edge_permutation is None
    assert repr(sampler) == "CSRNeighborSampler(num_neighbors=[2], replace=False)"


@pytest.mark.parametrize("num_neighbors", [[], [1.5], ["2"], [True], [-2], 3, None])
def test_bad_num_neighbors(graph: Data, num_neighbors) -> None:
    with pytest.raises(ValueError, match="num_neighbors"):
        CSRNeighborSampler(graph, num_neighbors)
    with pytest.raises(ValueError, match="num_neighbors"):
        neighbor_loader(graph, num_neighbors)


def test_bad_graph_and_seeds(graph: Data) -> None:
    with pytest.raises(TypeError, match="data"):
        CSRNeighborSampler(graph.to_dict(), [2])
    bad = Data(x=torch.randn(3, 1), edge_index=torch.tensor([[0, 1], [1, 3]]))
    with pytest.raises(ValueError, match=r"edge_index.*\[0, 3\)"):
        CSRNeighborSampler(bad, [2])
    with pytest.raises(ValueError, match=r"seed nodes must lie in \[0, 60\)"):
        CSRNeighborSampler(graph, [2]).sample(torch.tensor([0, 60]))
    with pytest.raises(ValueError, match="disjoint"):
        neighbor_loader(graph, [2], disjoint=True)


def test_uses_pyg_neighbor_loader_when_pyg_lib_is_present(graph: Data, monkeypatch) -> None:
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", True)
    loader = neighbor_loader(graph, [2, 2], batch_size=8, shuffle=True)
    assert isinstance(loader, NeighborLoader)
    assert loader.node_sampler.num_neighbors.values == [2, 2]
