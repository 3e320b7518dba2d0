"""FED-PUB partitions: coverage, edges, split, determinism, cache, summary and errors."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

import graphmoe.federated.partition as partition_module
from graphmoe.data import cache_dir, load_dataset
from graphmoe.federated.partition import (
    FederatedGraph,
    load_federated,
    partition_graph,
    prepare_graph,
)

CORA_LCC_NODES = 2485  # nodes in the largest connected component of Cora


@pytest.fixture
def cora(data_root) -> Data:
    return prepare_graph(load_dataset("Cora", data_root), seed=1234)


def _edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.t().tolist()))


def _induced_edge_set(graph: Data, nodes: torch.Tensor) -> set[tuple[int, int]]:
    keep = torch.zeros(graph.num_nodes, dtype=torch.bool)
    keep[nodes] = True
    inside = keep[graph.edge_index[0]] & keep[graph.edge_index[1]]
    return _edge_set(graph.edge_index[:, inside])


def _global_edges(client: Data) -> torch.Tensor:
    return client.global_id[client.edge_index]


def _same_partition(a: list[Data], b: list[Data]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.global_id, y.global_id) and torch.equal(x.edge_index, y.edge_index)
        for x, y in zip(a, b))


def _toy_graph(num_nodes: int = 40) -> Data:
    """Two rings joined by one edge, undirected, with features and labels."""
    half = num_nodes // 2
    ring = torch.arange(half)
    edges = [torch.stack([ring, (ring + 1) % half]), torch.stack([ring + half, (ring + 1) % half + half]),
             torch.tensor([[0], [half]])]
    edge_index = torch.cat(edges, dim=1)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return Data(x=torch.rand(num_nodes, 3), y=torch.arange(num_nodes) % 3, edge_index=edge_index)


def test_prepared_cora_is_the_normalised_lcc_with_a_20_40_40_split(cora):
    assert cora.num_nodes == CORA_LCC_NODES
    row_sums = cora.x.sum(dim=-1)
    assert torch.allclose(row_sums[row_sums > 0], torch.ones(1))
    masks = torch.stack([cora.train_mask, cora.val_mask, cora.test_mask])
    assert torch.equal(masks.sum(0), torch.ones(cora.num_nodes, dtype=torch.long))
    assert masks.sum(1).tolist() == [497, 994, 994]  # round(0.2 N), round(0.4 N), the rest


def test_disjoint_cora_10_covers_every_lcc_node_once_and_keeps_edges_inside_parts(cora):
    clients = partition_graph(cora, "disjoint", 10, seed=1234)
    assert [c.client_id for c in clients] == list(range(10))
    nodes = torch.cat([c.global_id for c in clients])
    assert torch.equal(nodes.sort().values, torch.arange(CORA_LCC_NODES))
    owner = torch.empty(CORA_LCC_NODES, dtype=torch.long)
    for c in clients:
        owner[c.global_id] = c.client_id
    graph_edges = _edge_set(cora.edge_index)
    for c in clients:
        edges = _global_edges(c)
        assert bool((owner[edges] == c.client_id).all())
        assert _edge_set(edges) == _induced_edge_set(cora, c.global_id)
        assert _edge_set(edges) <= graph_edges
        assert torch.equal(c.x, cora.x[c.global_id]) and torch.equal(c.y, cora.y[c.global_id])
        for key in ("train_mask", "val_mask", "test_mask"):
            assert torch.equal(c[key], cora[key][c.global_id])
    assert 200 <= min(c.num_nodes for c in clients) <= max(c.num_nodes for c in clients) <= 300


def test_overlapping_cora_10_gives_each_client_half_of_its_community(cora):
    clients = partition_graph(cora, "overlapping", 10, seed=1234)
    communities = [clients[:5], clients[5:]]
    members = []
    for community in communities:
        sizes = {c.num_nodes for c in community}
        assert len(sizes) == 1  # floor(|community| / 2) each
        members.append(torch.cat([c.global_id for c in community]).unique())
        for c in community:
            assert torch.equal(c.global_id, c.global_id.unique())
            assert _edge_set(_global_edges(c)) == _induced_edge_set(cora, c.global_id)
        assert not all(torch.equal(community[0].global_id, c.global_id) for c in community[1:])
    assert len(set(members[0].tolist()) & set(members[1].tolist())) == 0
    halves = clients[0].num_nodes + clients[5].num_nodes
    assert 2 * halves <= CORA_LCC_NODES <= 2 * halves + 2


def test_partitions_are_seeded_and_independent_of_earlier_partitions(cora):
    for mode, num_clients, other in [("disjoint", 10, 5), ("overlapping", 10, 30)]:
        first = partition_graph(cora, mode, num_clients, seed=7)
        partition_graph(cora, mode, other, seed=7)
        torch.manual_seed(99)
        torch.rand(100)
        again = partition_graph(cora, mode, num_clients, seed=7)
        assert _same_partition(first, again), mode
    overlapping = partition_graph(cora, "overlapping", 10, seed=7)
    assert not _same_partition(overlapping, partition_graph(cora, "overlapping", 10, seed=8))


def test_load_federated_caches_the_partition(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHMOE_CACHE", str(tmp_path / "cache"))
    first = load_federated("Cora", "disjoint", 10, seed=3, root=data_root)
    files = list((cache_dir() / "federated").glob("*.pt"))
    assert len(files) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the partition was recomputed instead of read from the cache")

    monkeypatch.setattr(partition_module, "partition_graph", fail)
    second = load_federated("Cora", "disjoint", 10, seed=3, root=data_root)
    assert _same_partition(first.clients, second.clients)
    for a, b in zip(first, second):
        assert torch.equal(a.x, b.x) and torch.equal(a.train_mask, b.train_mask)
    with pytest.raises(AssertionError, match="recomputed"):  # another key misses the cache
        load_federated("Cora", "disjoint", 10, seed=4, root=data_root)


def test_load_federated_without_cache_writes_nothing(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHMOE_CACHE", str(tmp_path / "cache"))
    fed = load_federated("Cora", "overlapping", 10, root=data_root, use_cache=False)
    assert isinstance(fed, FederatedGraph) and len(fed) == 10
    assert (fed.name, fed.mode, fed.num_clients, fed.seed) == ("cora", "overlapping", 10, 1234)
    assert (fed.num_features, fed.num_classes) == (1433, 7)
    assert not (cache_dir() / "federated").exists()


def test_summary_and_label_distribution_png(data_root, tmp_path):
    fed = load_federated("Cora", "disjoint", 10, root=data_root)
    rows = fed.summary()
    assert [r["client_id"] for r in rows] == list(range(10))
    assert sum(r["nodes"] for r in rows) == CORA_LCC_NODES
    for row, client in zip(rows, fed.clients):
        assert row["edges"] == client.edge_index.size(1)
        assert row["train"] + row["val"] + row["test"] == row["nodes"]
        assert len(row["labels"]) == 7 and sum(row["labels"]) == row["nodes"]
    path = fed.plot_label_distribution(tmp_path / "plots" / "labels.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "num_clients=10" in repr(fed)


def test_small_graphs_and_a_single_client():
    graph = _toy_graph()
    (only,) = partition_graph(graph, "disjoint", 1)
    assert torch.equal(only.global_id, torch.arange(40)) and only.edge_index.size(1) == 82
    clients = partition_graph(graph, "disjoint", 2)
    assert sorted(c.num_nodes for c in clients) == [20, 20]
    assert "train_mask" not in clients[0]  # no global split given: none is invented


@pytest.mark.parametrize("mode, num_clients, change, message", [
    ("disjoint", 41, None, "more clients than nodes"),
    ("metis", 10, None, "valid modes are 'disjoint', 'overlapping'"),
    ("disjoint", 4, "no_features", "needs node features"),
    ("overlapping", 7, None, "multiple of 5"),
    ("disjoint", 0, None, "positive integer"),
])
def test_bad_input_raises_one_clear_value_error(mode, num_clients, change, message):
    graph = _toy_graph()
    if change == "no_features":
        graph.x = None
    with pytest.raises(ValueError, match=message):
        partition_graph(graph, mode, num_clients)


def test_load_federated_rejects_bad_arguments_before_partitioning(data_root):
    with pytest.raises(ValueError, match="more clients than nodes"):
        load_federated("Cora", "disjoint", 3000, root=data_root, use_cache=False)
    with pytest.raises(ValueError, match="valid modes"):
        load_federated("Cora", "random", 10, root=data_root, use_cache=False)


def test_a_graph_of_100k_nodes_is_partitioned_without_a_dense_adjacency():
    # An N x N dense adjacency of this graph would take 40 GB: this only passes on CSR.
    num_nodes, num_edges = 100_000, 600_000
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    near = (src // 500) * 500 + torch.randint(0, 500, (num_edges,), generator=gen)
    far = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst = torch.where(torch.rand(num_edges, generator=gen) < 0.9, near, far)
    graph = Data(x=torch.ones(num_nodes, 1), edge_index=torch.stack([src, dst]))
    clients = partition_graph(graph, "disjoint", 20)
    assert sum(c.num_nodes for c in clients) == num_nodes
    assert max(c.num_nodes for c in clients) <= 1.1 * num_nodes / 20
