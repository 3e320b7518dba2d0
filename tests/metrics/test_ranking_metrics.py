"""Per-node Hits@K, MRR and NDCG@K against a sort-each-node reference."""
from __future__ import annotations

import math

import pytest
import torch

from graphmoe.metrics import hits_at_k, mrr, ndcg_at_k, node_ranking_metrics


def reference(pos, neg, pos_index, neg_index, num_nodes, ks, pessimistic=True):
    """Sort every node's candidates (negatives before tied positives when pessimistic)."""
    out = {f"hits@{k}": [] for k in ks} | {"mrr": []} | {f"ndcg@{k}": [] for k in ks}
    for n in range(num_nodes):
        ps = pos[pos_index == n].tolist()
        ns = neg[neg_index == n].tolist()
        if not ps:
            for key in out:
                out[key].append(math.nan)
            continue
        tie = 1 if pessimistic else -1  # negatives first among equal scores if pessimistic
        items = sorted([(-s, tie, 1) for s in ps] + [(-s, -tie, 0) for s in ns])
        ranks = [r + 1 for r, item in enumerate(items) if item[2] == 1]
        for k in ks:
            out[f"hits@{k}"].append(float(ranks[0] <= k))
            dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= k)
            idcg = sum(1 / math.log2(r + 1) for r in range(1, min(k, len(ps)) + 1))
            out[f"ndcg@{k}"].append(dcg / idcg)
        out["mrr"].append(1 / ranks[0])
    return {key: torch.tensor(val) for key, val in out.items()}


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed: int, ties: str) -> None:
    g = torch.Generator().manual_seed(seed)
    num_nodes, ks = 12, [1, 3, 10]
    pos_index = torch.randint(0, num_nodes - 2, (30,), generator=g)  # last 2 nodes: no positive
    neg_index = torch.randint(0, num_nodes, (120,), generator=g)
    pos = torch.randint(0, 6, (30,), generator=g).float() / 5  # coarse scores: many ties
    neg = torch.randint(0, 6, (120,), generator=g).float() / 5
    got = node_ranking_metrics(pos, neg, pos_index, neg_index, num_nodes, ks, ties)
    expected = reference(pos, neg, pos_index, neg_index, num_nodes, ks, ties == "pessimistic")
    assert got.keys() == expected.keys()
    for key in got:
        torch.testing.assert_close(got[key], expected[key], equal_nan=True, msg=key)


def test_ogb_layout_matches_ogb_hits() -> None:
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(50, generator=g), torch.randn(50, 20, generator=g)
    for k in (1, 5, 10):
        kth = torch.topk(neg, k, dim=1).values[:, -1]
        torch.testing.assert_close(hits_at_k(pos, neg, k=k), (pos > kth).float())
    rank = 1 + (neg >= pos[:, None]).sum(1)
    torch.testing.assert_close(mrr(pos, neg), 1.0 / rank.float())
    torch.testing.assert_close(ndcg_at_k(pos, neg, k=10), torch.where(
        rank <= 10, 1 / torch.log2(rank.float() + 1), torch.zeros(50)))


def test_wrappers_and_dense_negatives() -> None:
    pos = torch.tensor([0.9, 0.1, 0.5])
    pos_index = torch.tensor([0, 0, 1])
    neg = torch.tensor([[0.6, 0.2], [0.7, 0.3]])
    out = node_ranking_metrics(pos, neg, pos_index, k=1)
    torch.testing.assert_close(out["mrr"], torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(out["hits@1"], torch.tensor([1.0, 0.0]))
    expected_ndcg = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    torch.testing.assert_close(ndcg_at_k(pos, neg, pos_index, k=4)[0], torch.tensor(expected_ndcg))


def test_errors() -> None:
    pos, neg = torch.tensor([0.5, 0.2]), torch.tensor([0.1, 0.3])
    idx = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="NaN"):
        mrr(torch.tensor([float("nan"), 0.1]), neg, idx, idx)
    with pytest.raises(ValueError, match="k must be"):
        hits_at_k(pos, neg, idx, idx, k=0)
    with pytest.raises(ValueError, match="ties"):
        mrr(pos, neg, idx, idx, ties="random")
    with pytest.raises(ValueError, match="num_nodes"):
        mrr(pos, neg, idx, idx, num_nodes=1)
    with pytest.raises(ValueError, match="neg_index"):
        mrr(pos, torch.tensor([[0.1], [0.3]]), idx, idx)
    with pytest.raises(ValueError, match=r"\[num_nodes, M\]"):
        mrr(pos, neg, idx)
    with pytest.raises(TypeError, match="floating"):
        mrr(torch.tensor([1, 2]), neg, idx, idx)
