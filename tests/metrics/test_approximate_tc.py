"""Approximated TC: sanity properties, determinism and errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from graphmoe.metrics import approximate_tc
from graphmoe.metrics.atc import _cosine_sums, _torch_csr


def undirected(pairs) -> torch.Tensor:
    ei = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    return torch.cat([ei, ei.flip(0)], dim=1)


def clique(nodes) -> list[tuple[int, int]]:
    return list(itertools.combinations(nodes, 2))


@pytest.mark.parametrize("K", [1, 2, 3])
def test_identical_neighbourhoods_give_one(K: int) -> None:
    atc = approximate_tc(undirected(clique(range(6))), K=K)
    torch.testing.assert_close(atc, torch.ones(6))


def test_matches_dense_definition() -> None:
    pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (4, 5)]
    ei, split = undirected(pairs), undirected([(1, 3), (0, 5)])
    n, K, dim, seed = 7, 2, 16, 3
    adj = torch.zeros(n, n)
    adj[ei[0], ei[1]] = 1.0
    adj += torch.eye(n)
    a_hat = adj / adj.sum(1, keepdim=True)
    h = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    z = torch.zeros(n, dim)
    for _ in range(K):
        h = a_hat @ h
        z += h / K
    expected = torch.zeros(n)
    for i, j in split.t().tolist():
        expected[i] += F.cosine_similarity(z[i], z[j], dim=0) / (split[0] == i).sum()
    got = approximate_tc(ei, split, n, K=K, dim=dim, seed=seed)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert got[6] == 0 and got[4] == 0  # isolated node; node without split neighbours


def test_torch_path_matches_scipy_path() -> None:
    # the non-CPU (CUDA) branch runs the same function on torch CSR tensors
    g = torch.Generator().manual_seed(0)
    adj = sp.random(40, 40, density=0.1, format="csr", dtype=np.float32, random_state=0)
    split = sp.random(40, 40, density=0.05, format="csr", dtype=np.float32, random_state=1)
    noise = torch.randn(40, 8, generator=g)
    expected = _cosine_sums(adj, split, noise.numpy(), 3)
    got = _cosine_sums(_torch_csr(adj, "cpu"), _torch_csr(split, "cpu"), noise, 3)
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-5, atol=1e-5)


def test_deterministic_per_seed_and_bounded() -> None:
    g = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, 50, (2, 200), generator=g)
    pairs = pairs[:, pairs[0] != pairs[1]].t().tolist()
    ei = undirected(pairs)
    a = approximate_tc(ei, num_nodes=55, K=2, seed=1)
    torch.testing.assert_close(a, approximate_tc(ei, num_nodes=55, K=2, seed=1), rtol=0, atol=0)
    assert not torch.equal(a, approximate_tc(ei, num_nodes=55, K=2, seed=2))
    assert a.shape == (55,) and torch.all(a.abs() <= 1 + 1e-6)
    assert torch.all(a[50:] == 0)


def test_dense_community_scores_higher_than_bridge() -> None:
    # two 6-cliques joined by one bridge edge (5, 6); a sparse path hangs off node 11
    pairs = clique(range(6)) + clique(range(6, 12)) + [(5, 6), (11, 12), (12, 13), (13, 14)]
    atc = approximate_tc(undirected(pairs), K=2, dim=256, seed=0)
    assert atc[0] > atc[5] and atc[0] > atc[13]


def test_errors() -> None:
    ei = undirected([(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="K"):
        approximate_tc(ei, K=0)
    with pytest.raises(ValueError, match="dim"):
        approximate_tc(ei, dim=0)
    with pytest.raises(ValueError, match="no edges"):
        approximate_tc(ei, torch.empty(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="undirected"):
        approximate_tc(torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(ValueError, match="out of range"):
        approximate_tc(ei, undirected([(0, 9)]), num_nodes=3)
