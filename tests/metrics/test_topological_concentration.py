"""Exact TC against a set-based walk-enumeration implementation and networkx."""
from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np
import pytest
import torch

from graphmoe.metrics import TopologicalConcentration, topological_concentration


def _walks(adj: list[set[int]], start: int, length: int) -> list[tuple[int, ...]]:
    """Every walk of ``length`` edges from ``start``, enumerated one by one."""
    walks = [(start,)]
    for _ in range(length):
        walks = [w + (v,) for w in walks for v in sorted(adj[w[-1]])]
    return walks


def _endpoint_counts(adj: list[set[int]], start: int, K: int) -> list[Counter]:
    return [Counter(w[-1] for w in _walks(adj, start, k)) for k in range(1, K + 1)]


def brute_force_tc(
    train: list[set[int]], split: list[set[int]], K: int, is_train: bool
) -> np.ndarray:
    """The definition, node by node and neighbour by neighbour, with Python sets."""
    n = len(train)
    beta = n / sum(len(s) for s in train)
    out = np.zeros(n)
    for i in range(n):
        if not train[i] or not split[i] or (is_train and len(train[i]) < 2):
            continue
        mi = _endpoint_counts(train, i, K)
        ratios = []
        for j in split[i]:
            mj = _endpoint_counts(train, j, K)
            num = den = 0.0
            for k1 in range(K):
                for k2 in range(K):
                    w = beta ** (k1 + k2)
                    common = set(mi[k1]) & set(mj[k2])
                    num += w * sum(mi[k1][v] for v in common)
                    den += w * (sum(mi[k1].values()) - (is_train and k1 == k2 == 0))
            ratios.append(num / den)
        out[i] = np.mean(ratios)
    return out


def random_split_graph(seed: int, n: int = 24, p: float = 0.25, isolated: int = 3):
    """An undirected random graph, its edges split 70/30 into train/test; the last ``isolated``
    nodes have no edge at all."""
    rng = np.random.default_rng(seed)
    core = n - isolated
    pairs = [(u, v) for u in range(core) for v in range(u + 1, core) if rng.random() < p]
    is_test = rng.random(len(pairs)) < 0.3
    train = [e for e, t in zip(pairs, is_test) if not t]
    test = [e for e, t in zip(pairs, is_test) if t]
    return n, train, test


def to_edge_index(pairs) -> torch.Tensor:
    ei = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    return torch.cat([ei, ei.flip(0)], dim=1)


def to_sets(n: int, pairs) -> list[set[int]]:
    sets = [set() for _ in range(n)]
    for u, v in pairs:
        sets[u].add(v)
        sets[v].add(u)
    return sets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("split", ["train", "test"])
def test_matches_brute_force(seed: int, K: int, split: str) -> None:
    n, train, test = random_split_graph(seed)
    split_pairs = train if split == "train" else test
    expected = brute_force_tc(to_sets(n, train), to_sets(n, split_pairs), K, split == "train")
    got = topological_concentration(
        to_edge_index(train), to_edge_index(split_pairs), n, K=K, split=split
    )
    assert got.shape == (n,) and got.dtype == torch.get_default_dtype()
    torch.testing.assert_close(got.double(), torch.from_numpy(expected), rtol=1e-6, atol=1e-7)
    # isolated nodes and nodes without split neighbours are 0
    assert torch.all(got[n - 3 :] == 0)
    no_split = torch.tensor([not s for s in to_sets(n, split_pairs)])
    assert torch.all(got[no_split] == 0)


def test_validation_split_and_default_train_edges() -> None:
    n, train, test = random_split_graph(5)
    tc = TopologicalConcentration(to_edge_index(train), n, K=2)
    expected = brute_force_tc(to_sets(n, train), to_sets(n, test), 2, False)
    got = tc(to_edge_index(test), split="val").double()
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(tc(), tc(to_edge_index(train), split="train"))
    assert "K=2" in repr(tc)


def test_k1_train_is_networkx_clustering() -> None:
    n, train, _ = random_split_graph(3, n=40, p=0.2)
    graph = nx.Graph(train)
    graph.add_nodes_from(range(n))
    got = topological_concentration(to_edge_index(train), num_nodes=n, K=1)
    expected = torch.tensor([nx.clustering(graph, i) for i in range(n)], dtype=got.dtype)
    torch.testing.assert_close(got, expected)


def test_k1_test_split_is_mean_common_neighbours_over_degree() -> None:
    n, train, test = random_split_graph(4, n=40, p=0.2)
    graph = nx.Graph(train)
    graph.add_nodes_from(range(n))
    test_sets = to_sets(n, test)
    expected = []
    for i in range(n):
        d = graph.degree(i)
        if d == 0 or not test_sets[i]:
            expected.append(0.0)
            continue
        cn = [len(list(nx.common_neighbors(graph, i, j))) for j in test_sets[i]]
        expected.append(float(np.mean(cn)) / d)
    got = topological_concentration(to_edge_index(train), to_edge_index(test), n, K=1, split="test")
    torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype))


def test_duplicates_count_once_and_num_nodes_inferred() -> None:
    n, train, test = random_split_graph(6, isolated=0)
    ei, split = to_edge_index(train), to_edge_index(test)
    once = topological_concentration(ei, split, n, K=2, split="test")
    twice = topological_concentration(
        torch.cat([ei, ei], 1), torch.cat([split, split], 1), K=2, split="test"
    )
    assert twice.numel() == int(max(ei.max(), split.max())) + 1
    torch.testing.assert_close(once[: twice.numel()], twice)


def test_symmetrize_flag() -> None:
    n, train, test = random_split_graph(7)
    one_way = torch.tensor(train, dtype=torch.long).t()
    with pytest.raises(ValueError, match="undirected"):
        topological_concentration(one_way, num_nodes=n)
    torch.testing.assert_close(
        topological_concentration(one_way, num_nodes=n, K=2, symmetrize=True),
        topological_concentration(to_edge_index(train), num_nodes=n, K=2),
    )


def test_errors() -> None:
    ei = to_edge_index([(0, 1), (1, 2), (0, 2)])
    with pytest.raises(ValueError, match="K"):
        topological_concentration(ei, K=0)
    with pytest.raises(ValueError, match="no edges"):
        topological_concentration(ei, torch.empty(2, 0, dtype=torch.long), split="test")
    with pytest.raises(ValueError, match="no edges"):
        topological_concentration(torch.empty(2, 0, dtype=torch.long), ei, 3, split="test")
    with pytest.raises(ValueError, match="out of range"):
        topological_concentration(ei, to_edge_index([(0, 5)]), num_nodes=3, split="test")
    with pytest.raises(ValueError, match="negative"):
        topological_concentration(ei, to_edge_index([(0, -1)]), split="test")
    with pytest.raises(ValueError, match="split must be"):
        topological_concentration(ei, ei, split="valid")
    with pytest.raises(ValueError, match="required"):
        TopologicalConcentration(ei)(split="test")
    with pytest.raises(ValueError, match=r"shape \[2, E\]"):
        topological_concentration(ei.t())
    with pytest.raises(TypeError, match="integer"):
        topological_concentration(ei.float())
    with pytest.raises(ValueError, match="num_nodes"):
        topological_concentration(ei, num_nodes=0)
