"""Link-prediction evaluation: metric names, OGB-style overall Hits@K, and the per-node ranking
of every source's candidate targets (:func:`node_link_metrics`, also used by
:mod:`graphmoe.training.topology`)."""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from graphmoe.training.link_decoders import PAIR_BUDGET
from graphmoe.training.metrics import OGB_PREFIX, metric_key

__all__ = ["HITS", "both_directions", "hits_at_k_overall", "link_metric_key", "node_link_metrics"]

#: A ``hits@K`` metric spec.
HITS = re.compile(r"hits@([1-9][0-9]*)")


def link_metric_key(metric: str) -> str:
    """The name a link metric spec is logged under: ``rocauc``, ``hits@K``, or OGB's metric."""
    if metric.startswith(OGB_PREFIX):
        return metric_key(metric)
    if metric == "rocauc" or HITS.fullmatch(metric):
        return metric
    raise ValueError(f"link metric must be 'rocauc', 'hits@K' (K >= 1) or 'ogb:<ogbl dataset>', "
                     f"got {metric!r}")


def hits_at_k_overall(pos_score: Tensor, neg_score: Tensor, k: int) -> Tensor:
    """OGB's Hits@K: the fraction of positives scored above the ``k``-th best negative
    (1 when there are fewer than ``k`` negatives, as ``ogb.linkproppred.Evaluator``)."""
    if neg_score.numel() < k:
        return pos_score.new_tensor(1.0)
    kth = torch.topk(neg_score, k).values[-1]
    return (pos_score > kth).float().mean()



# -- per-node ranking --------------------------------------------------------------------------


def _keys(src: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    return src.long() * num_nodes + dst.long()


def _member(keys: Tensor, sorted_keys: Tensor) -> Tensor:
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys


def both_directions(edge_index: Tensor) -> Tensor:
    """``edge_index`` followed by its reversed edges."""
    return torch.cat([edge_index, edge_index.flip(0)], dim=1)


@torch.no_grad()
def node_link_metrics(
    z: Tensor,
    decoder: nn.Module,
    pos_edge_index: Tensor,
    known_edge_index: Tensor | None = None,
    k: int | Sequence[int] = (10, 20),
    candidates: str | int = "all",
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    r"""Per-node Hits@K, MRR and NDCG@K: each node ranks its candidate targets.

    The held-out pairs ``pos_edge_index`` (undirected, one direction each) make ``v`` a positive
    of ``u`` and ``u`` a positive of ``v``. A node's candidates are every other node
    (``candidates="all"``, the protocol of the TC paper) or ``candidates`` random nodes
    (sampled ranking for large graphs), minus itself and its ``known_edge_index`` neighbours
    (the training edges, plus validation edges when ranking test edges), which are neither
    positives nor negatives. Scores come from ``decoder`` on the embeddings ``z``; the metrics
    are :func:`graphmoe.metrics.node_ranking_metrics` (pessimistic ties).

    Returns:
        ``{"hits@K": [N], "mrr": [N], "ndcg@K": [N]}`` with ``NaN`` for nodes that have no
        positive.
    """
    from graphmoe.metrics import node_ranking_metrics

    ks = [k] if isinstance(k, int) else list(k)
    num_nodes, device = z.size(0), z.device
    if pos_edge_index.numel() == 0:
        raise ValueError("pos_edge_index has no edges: there is nothing to rank")
    if candidates != "all" and (isinstance(candidates, bool) or not isinstance(candidates, int)
                                or candidates < 1):
        raise ValueError(f"candidates must be 'all' or a positive int, got {candidates!r}")
    pos = both_directions(pos_edge_index.to(device))
    pos_keys = torch.unique(_keys(pos[0], pos[1], num_nodes))
    pos_src, pos_dst = pos_keys // num_nodes, pos_keys % num_nodes
    known = (torch.unique(_keys(*both_directions(known_edge_index.to(device)), num_nodes))
             if known_edge_index is not None and known_edge_index.numel()
             else torch.empty(0, dtype=torch.long, device=device))
    sources = torch.unique(pos_src)
    width = num_nodes if candidates == "all" else int(candidates)
    rows = max(1, PAIR_BUDGET // width)
    out = {f"hits@{x}": torch.full((num_nodes,), float("nan"), device=device) for x in ks}
    out["mrr"] = torch.full((num_nodes,), float("nan"), device=device)
    out.update({f"ndcg@{x}": torch.full((num_nodes,), float("nan"), device=device) for x in ks})
    for chunk in sources.split(rows):
        b = chunk.numel()
        if candidates == "all":
            cand = torch.arange(num_nodes, device=device).expand(b, num_nodes)
            scores = decoder.all_pairs(z[chunk], z)
        else:
            cand = torch.randint(num_nodes, (b, width), generator=generator).to(device)
            src_rep = chunk.repeat_interleave(width)
            scores = decoder(z[src_rep], z[cand.reshape(-1)]).view(b, width)
        src = chunk.unsqueeze(1).expand_as(cand)
        keys = _keys(src, cand, num_nodes)
        negative = (cand != src) & ~_member(keys, known) & ~_member(keys, pos_keys)
        # positives of the chunk's sources, scored directly (sampled candidates may miss them)
        lo, hi = torch.searchsorted(pos_src, chunk[0]), torch.searchsorted(pos_src, chunk[-1], right=True)
        p_src, p_dst = pos_src[lo:hi], pos_dst[lo:hi]
        p_score = decoder(z[p_src], z[p_dst]).float()
        res = node_ranking_metrics(p_score, scores[negative].float(), pos_index=p_src,
                                   neg_index=src[negative], num_nodes=num_nodes, k=ks)
        for name, values in res.items():
            out[name][chunk] = values[chunk].to(out[name].dtype)
    return out
