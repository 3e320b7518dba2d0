"""Degree, K-hop subgraph density and clustering coefficient against networkx."""
from __future__ import annotations

import networkx as nx
import pytest
import torch

from graphmoe.metrics import clustering_coefficient, khop_density, node_degree


def random_graph(seed: int, n: int = 40, p: float = 0.12) -> tuple[nx.Graph, torch.Tensor]:
    graph = nx.gnp_random_graph(n - 4, p, seed=seed)
    graph.add_nodes_from(range(n))  # 4 isolated nodes
    ei = torch.tensor(list(graph.edges), dtype=torch.long).t()
    return graph, torch.cat([ei, ei.flip(0)], dim=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_degree_and_clustering(seed: int) -> None:
    graph, ei = random_graph(seed)
    n = graph.number_of_nodes()
    deg = node_degree(ei, n)
    assert deg.dtype == torch.get_default_dtype()
    assert deg.tolist() == [graph.degree(i) for i in range(n)]
    clustering = clustering_coefficient(ei, n)
    expected = torch.tensor([nx.clustering(graph, i) for i in range(n)], dtype=clustering.dtype)
    torch.testing.assert_close(clustering, expected)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_khop_density(K: int) -> None:
    graph, ei = random_graph(2)
    n = graph.number_of_nodes()
    expected = torch.tensor([nx.density(nx.ego_graph(graph, i, radius=K)) for i in range(n)])
    torch.testing.assert_close(khop_density(ei, n, K=K), expected.to(torch.get_default_dtype()))


def test_self_loops_and_duplicates() -> None:
    ei = torch.tensor([[0, 1, 1, 2, 0, 2, 2, 0], [1, 0, 2, 1, 2, 0, 2, 1]])
    assert node_degree(ei).tolist() == [2, 2, 3]  # the self-loop counts once, duplicates once
    torch.testing.assert_close(clustering_coefficient(ei), torch.ones(3))
    torch.testing.assert_close(khop_density(ei), torch.ones(3))


def test_errors() -> None:
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="undirected"):
        node_degree(ei)
    assert node_degree(ei, symmetrize=True).tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match="K"):
        khop_density(torch.tensor([[0, 1], [1, 0]]), K=0)
    with pytest.raises(ValueError, match="out of range"):
        clustering_coefficient(torch.tensor([[0, 3], [3, 0]]), num_nodes=2)
