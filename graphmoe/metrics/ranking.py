r"""Per-node ranking metrics for link prediction: Hits@K, MRR and NDCG@K.

Each source node ranks its candidate targets by score; its positives (the held-out neighbours)
should come first. These are the node-level performance measures that Wang et al., "A
Topological Perspective on Demystifying GNN-Based Link Prediction Performance", ICLR 2024,
correlate with Topological Concentration. All nodes are ranked at once (sort + binary search,
no Python loop over nodes).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_TIES = ("pessimistic", "optimistic")


def node_ranking_metrics(
    pos_score: Tensor,
    neg_score: Tensor,
    pos_index: Tensor | None = None,
    neg_index: Tensor | None = None,
    num_nodes: int | None = None,
    k: int | Sequence[int] = (1, 10, 100),
    ties: str = "pessimistic",
) -> dict[str, Tensor]:
    r"""Hits@K, MRR and NDCG@K of every source node.

    Node :math:`n` ranks the union of its positives :math:`P_n` and negatives by score
    (descending). With :math:`r(p)` the rank of positive :math:`p` in that list and
    :math:`r^*_n = \min_{p \in P_n} r(p)`:

    .. math::
        \mathrm{Hits@}K(n) = [r^*_n \le K], \qquad \mathrm{MRR}(n) = 1 / r^*_n, \qquad
        \mathrm{NDCG@}K(n) = \frac{\sum_{p \in P_n,\, r(p) \le K} 1 / \log_2(1 + r(p))}
            {\sum_{r=1}^{\min(K, |P_n|)} 1 / \log_2(1 + r)}.

    A negative scored equal to a positive ranks above it with ``ties="pessimistic"`` (as OGB's
    Hits@K) and below it with ``ties="optimistic"``. Nodes with no positive get ``NaN`` (use
    :func:`torch.nanmean` to average).

    Args:
        pos_score: ``[P]`` scores of the positive pairs.
        neg_score: ``[Q]`` scores of the negative pairs, or ``[num_nodes, M]`` where row ``n``
            holds node ``n``'s negatives (then ``neg_index`` must be ``None``).
        pos_index: ``[P]`` source node of each positive (default: positive ``p`` is node ``p``,
            the OGB layout ``pos [P]``, ``neg [P, M]``).
        neg_index: ``[Q]`` source node of each negative.
        num_nodes: number of source nodes (default: inferred).
        k: the cut-off(s) of Hits@K and NDCG@K.
        ties: ``"pessimistic"`` or ``"optimistic"``.

    Returns:
        ``{"hits@K": [N], ..., "mrr": [N], "ndcg@K": [N], ...}``, float tensors.
    """
    ks = _check_k(k)
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")
    pos_score, neg_score, pos_index, neg_index, num_nodes = _flatten(
        pos_score, neg_score, pos_index, neg_index, num_nodes
    )
    rank = _positive_ranks(pos_score, neg_score, pos_index, neg_index, num_nodes, ties)
    return _aggregate(rank, pos_index, num_nodes, ks, pos_score.dtype)


def hits_at_k(pos_score: Tensor, neg_score: Tensor, pos_index: Tensor | None = None,
              neg_index: Tensor | None = None, num_nodes: int | None = None, k: int = 10,
              ties: str = "pessimistic") -> Tensor:
    """Per-node Hits@K: 1 if a positive ranks in the top ``k`` (:func:`node_ranking_metrics`)."""
    out = node_ranking_metrics(pos_score, neg_score, pos_index, neg_index, num_nodes, k, ties)
    return out[f"hits@{k}"]


def mrr(pos_score: Tensor, neg_score: Tensor, pos_index: Tensor | None = None,
        neg_index: Tensor | None = None, num_nodes: int | None = None,
        ties: str = "pessimistic") -> Tensor:
    """Per-node reciprocal rank of the best positive (see :func:`node_ranking_metrics`)."""
    out = node_ranking_metrics(pos_score, neg_score, pos_index, neg_index, num_nodes, 1, ties)
    return out["mrr"]


def ndcg_at_k(pos_score: Tensor, neg_score: Tensor, pos_index: Tensor | None = None,
              neg_index: Tensor | None = None, num_nodes: int | None = None, k: int = 10,
              ties: str = "pessimistic") -> Tensor:
    """Per-node NDCG@K with binary relevance (see :func:`node_ranking_metrics`)."""
    out = node_ranking_metrics(pos_score, neg_score, pos_index, neg_index, num_nodes, k, ties)
    return out[f"ndcg@{k}"]


def _check_k(k: int | Sequence[int]) -> list[int]:
    ks = [k] if isinstance(k, int) else list(k)
    if not ks or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in ks):
        raise ValueError(f"k must be an int >= 1 or a sequence of them, got {k!r}")
    return ks


def _check_scores(score: Tensor, name: str) -> Tensor:
    if not isinstance(score, Tensor) or not score.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor")
    if not torch.isfinite(score).all():
        raise ValueError(f"{name} contains NaN or infinite scores")
    return score.detach()


def _check_index(index: Tensor, size: int, name: str) -> Tensor:
    if not isinstance(index, Tensor) or index.is_floating_point() or index.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer torch.Tensor")
    if index.dim() != 1 or index.numel() != size:
        raise ValueError(f"{name} must have shape [{size}], got {list(index.shape)}")
    if size and int(index.min()) < 0:
        raise ValueError(f"{name} contains a negative node index")
    return index.long()


def _flatten(pos_score, neg_score, pos_index, neg_index, num_nodes):
    """Bring the inputs to flat ``(score, node)`` pairs and check them."""
    pos_score = _check_scores(pos_score, "pos_score")
    neg_score = _check_scores(neg_score, "neg_score")
    if pos_score.dim() != 1 or pos_score.numel() == 0:
        raise ValueError(f"pos_score must have shape [P] with P > 0, got {list(pos_score.shape)}")
    device = pos_score.device
    if pos_index is None:
        pos_index = torch.arange(pos_score.numel(), device=device)
    pos_index = _check_index(pos_index, pos_score.numel(), "pos_index")
    if neg_index is None:
        if neg_score.dim() != 2:
            raise ValueError("neg_score must be [num_nodes, M] when neg_index is None, "
                             f"got shape {list(neg_score.shape)}")
        rows = torch.arange(neg_score.size(0), device=device)
        neg_index = rows.repeat_interleave(neg_score.size(1))
        neg_score = neg_score.reshape(-1)
    elif neg_score.dim() != 1:
        shape = list(neg_score.shape)
        raise ValueError(f"neg_score must have shape [Q] with neg_index, got {shape}")
    neg_index = _check_index(neg_index, neg_score.numel(), "neg_index")
    inferred = 1 + max(int(pos_index.max()), int(neg_index.max()) if neg_index.numel() else -1)
    if num_nodes is None:
        num_nodes = inferred
    elif inferred > num_nodes:
        raise ValueError(f"node index {inferred - 1} is out of range for num_nodes={num_nodes}")
    return pos_score, neg_score, pos_index, neg_index, int(num_nodes)


def _positive_ranks(pos_score, neg_score, pos_index, neg_index, num_nodes, ties) -> Tensor:
    """1-based rank of each positive among its node's positives and negatives."""
    num_pos = pos_score.numel()
    _, level = torch.unique(torch.cat([pos_score, neg_score]), sorted=True, return_inverse=True)
    width = int(level.max()) + 2  # (node, score level) -> one sortable int64 key
    pos_level, neg_level = level[:num_pos], level[num_pos:]
    neg_key = torch.sort(neg_index * width + neg_level).values
    pos_key = pos_index * width + pos_level
    node_end = torch.searchsorted(neg_key, (pos_index + 1) * width)
    neg_above = node_end - torch.searchsorted(neg_key, pos_key, right=ties == "optimistic")
    # Positives of a node sorted by descending score: the position is the number of positives
    # above; the order among tied positives does not change any metric (binary relevance).
    order = torch.argsort(pos_index * width + (width - 1 - pos_level), stable=True)
    count = torch.bincount(pos_index, minlength=num_nodes)
    start = torch.cumsum(count, 0) - count
    pos_above = torch.empty_like(pos_index)
    pos_above[order] = torch.arange(num_pos, device=pos_index.device) - start[pos_index[order]]
    return 1 + neg_above + pos_above


def _aggregate(rank, pos_index, num_nodes, ks, dtype) -> dict[str, Tensor]:
    device = rank.device
    count = torch.bincount(pos_index, minlength=num_nodes)
    has_pos = count > 0
    nan = torch.full((num_nodes,), float("nan"), dtype=dtype, device=device)
    best = torch.full((num_nodes,), torch.iinfo(torch.long).max, device=device)
    best = best.scatter_reduce(0, pos_index, rank, "amin")
    gain = 1.0 / torch.log2(rank.to(dtype) + 1)
    discount = 1.0 / torch.log2(torch.arange(2, max(ks) + 2, device=device, dtype=dtype))
    ideal = torch.cat([torch.zeros(1, dtype=dtype, device=device), discount.cumsum(0)])
    out: dict[str, Tensor] = {}
    for k in ks:
        out[f"hits@{k}"] = torch.where(has_pos, (best <= k).to(dtype), nan)
    out["mrr"] = torch.where(has_pos, 1.0 / best.to(dtype), nan)
    for k in ks:
        dcg = torch.zeros(num_nodes, dtype=dtype, device=device)
        dcg.index_add_(0, pos_index, torch.where(rank <= k, gain, torch.zeros_like(gain)))
        idcg = ideal[count.clamp(max=k)]
        out[f"ndcg@{k}"] = torch.where(has_pos, dcg / idcg.clamp(min=1e-12), nan)
    return out
