r"""Conditional computation for Mowst: run the strong expert only where it is used.

An :math:`L`-layer message-passing network computes the output of node :math:`v` from the
inputs of the nodes at most :math:`L` hops upstream of :math:`v` (its *receptive field*).
When the inference rule sends only a set :math:`S` of nodes to the strong expert, it is enough
to run it on the subgraph of the :math:`L`-hop receptive field of :math:`S`:

* nodes: every node within :math:`L` hops (following edges backwards, source :math:`\to`
  target as in PyG) of :math:`S`;
* edges: the in-edges of the nodes within :math:`L - 1` hops. The nodes at distance exactly
  :math:`L` only contribute their input features, so their in-edges are not needed, with one
  exception:
* degree-normalised backbones (GCN, DAGNN: :math:`\hat{d}_j^{-1/2}\hat{d}_i^{-1/2}`) also read
  the in-degree :math:`\hat{d}_j` of every source :math:`j`, including those at distance
  :math:`L`. Their missing in-edges are replaced by *one* edge from an extra all-zero node
  carrying the missing weight, so that :math:`\hat{d}_j` is exact. That edge changes only the
  output of :math:`j` itself, which no node of :math:`S` reads.

Node-wise operations (linear layers, activations, eval-mode dropout and batch norm, residual
and jumping-knowledge connections, GAT's softmax over the in-edges of a target, mean/max/sum
aggregation) are unaffected, so the outputs on :math:`S` equal those of a full-graph run up to
floating-point summation order (tested for GCN, GraphSAGE, GAT, GIN and DAGNN). It needs eval
mode: in training mode dropout masks and batch statistics depend on the node set.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "Subgraph",
    "needs_source_degree",
    "receptive_field",
    "receptive_subgraph",
    "rows_of",
    "run_on_subgraph",
    "strong_on_nodes",
]


def needs_source_degree(model: nn.Module) -> bool:
    """Whether ``model`` normalises messages by the in-degree of their *source* nodes.

    True for GCN-style convolutions with ``normalize=True`` (graphmoe's and PyG's
    ``GCNConv``), for DAGNN, and for any module with ``source_degree_normalized = True``.
    """
    for module in model.modules():
        if getattr(module, "source_degree_normalized", False):
            return True
        name = type(module).__name__
        if name == "GCNConv" and getattr(module, "normalize", False):
            return True
        if name == "DAGNN":
            return True
    return False


@contextmanager
def _no_graph_cache(model: nn.Module) -> Iterator[None]:
    """Disable ``cached=True`` normalisation caches (they hold the full graph) meanwhile."""
    saved = []
    for module in model.modules():
        if getattr(module, "cached", False) is True:
            attrs = {k: v for k, v in vars(module).items() if k.startswith("_cached")}
            saved.append((module, attrs))
            module.cached = False
            for key in attrs:
                setattr(module, key, None)
    try:
        yield
    finally:
        for module, attrs in saved:
            module.cached = True
            for key, value in attrs.items():
                setattr(module, key, value)


def _ragged(starts: Tensor, counts: Tensor) -> Tensor:
    """Concatenation of the ranges ``starts[i] .. starts[i] + counts[i] - 1``."""
    total = int(counts.sum())
    if total == 0:
        return starts.new_empty(0)
    ends = torch.cumsum(counts, 0)
    shift = torch.repeat_interleave(starts - (ends - counts), counts, output_size=total)
    return shift + torch.arange(total, device=starts.device)


def receptive_field(edge_index: Tensor, seeds: Tensor, num_hops: int,
                    num_nodes: int | None = None) -> Tensor:
    """Hop distance ``[N]`` of every node to the ``seeds`` (bool ``[N]``) against the edge
    direction, ``-1`` beyond ``num_hops`` hops.

    Walks the cached target-major CSR of :func:`graphmoe.ops.to_csr`: each hop reads only the
    in-edges of the current frontier.
    """
    from graphmoe.ops import to_csr

    num_nodes = seeds.numel() if num_nodes is None else num_nodes
    csr = to_csr(edge_index, num_nodes)
    deg = csr.rowptr.diff()
    dist = torch.full((num_nodes,), -1, dtype=torch.long, device=seeds.device)
    dist[seeds] = 0
    frontier = seeds.nonzero().view(-1)
    for hop in range(1, num_hops + 1):
        sources = csr.col[_ragged(csr.rowptr[frontier], deg[frontier])]
        reached = torch.zeros(num_nodes, dtype=torch.bool, device=seeds.device)
        reached[sources] = True
        reached &= dist < 0
        frontier = reached.nonzero().view(-1)
        if frontier.numel() == 0:
            break
        dist[frontier] = hop
    return dist


_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _self_loops(csr) -> tuple[Tensor, Tensor]:
    """``(loop_pos, loop_count)``: CSR positions of the self-loops (in row order) and their
    number per node, computed once per cached graph."""
    entry = _LOOPS.get(csr)
    if entry is None:
        loop_pos = (csr.col == csr.row).nonzero().view(-1)
        loop_count = torch.bincount(csr.row[loop_pos], minlength=csr.num_rows)
        entry = _LOOPS[csr] = (loop_pos, loop_count)
    return entry


def _register_csr(edge_index: Tensor, rowptr: Tensor, col: Tensor, num_nodes: int) -> None:
    """Hand ``graphmoe.ops`` the CSR of a subgraph whose ``edge_index`` is already in CSR order,
    so that its first aggregation does not sort the edges again.

    Uses the cache of :mod:`graphmoe.ops.csr` (no public API for it yet); without it the
    CSR is simply rebuilt on first use.
    """
    try:
        from graphmoe.ops import csr as csr_module

        cache = csr_module._CACHE
        csr = csr_module.CSR(rowptr, col, torch.arange(col.numel(), device=col.device),
                             num_nodes, num_nodes)
        key = (id(edge_index), csr_module._version(edge_index), num_nodes, edge_index.device)
        with cache._lock:
            cache._data[key] = (weakref.ref(edge_index), csr)
            while len(cache._data) > cache.maxsize:
                cache._data.popitem(last=False)
    except (AttributeError, ImportError, TypeError):  # pragma: no cover - internals changed
        return


class Subgraph(NamedTuple):
    """The receptive field of some nodes, ready to run a model on (see :func:`receptive_subgraph`)."""

    x: Tensor
    edge_index: Tensor
    edge_weight: Tensor | None
    index: Tensor
    """Position of each requested node (in node order) in the subgraph."""
    stats: dict[str, float]


def _has_batch_norm_in_training(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
               for m in model.modules())


def receptive_subgraph(x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, nodes: Tensor,
                       num_hops: int, source_degree: bool = True) -> Subgraph:
    """The ``num_hops``-hop receptive field of the bool mask ``nodes`` (module docstring).

    ``source_degree`` adds the compensation node and edges that keep the in-degree of the
    boundary nodes exact (needed by GCN-normalised models, see :func:`needs_source_degree`).
    The subgraph's edges are emitted in target-major CSR order straight from the graph's
    cached CSR (no sort). ``stats`` holds ``node_fraction`` (nodes of the graph in the subgraph,
    over all nodes), ``edge_fraction`` (edges of the subgraph, the compensation edges included,
    over all edges) and the counts.
    """
    from graphmoe.ops import to_csr

    if nodes.dtype != torch.bool or nodes.numel() != x.size(0):
        raise ValueError(f"nodes must be a bool mask of shape [{x.size(0)}], "
                         f"got {nodes.dtype} {tuple(nodes.shape)}")
    num_nodes, num_edges, device = x.size(0), edge_index.size(1), x.device
    csr = to_csr(edge_index, num_nodes)
    deg = csr.rowptr.diff()
    dist = receptive_field(edge_index, nodes, num_hops, num_nodes)
    keep = (dist >= 0).nonzero().view(-1)  # subgraph nodes, in node order
    new_id = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    new_id[keep] = torch.arange(keep.numel(), device=device)
    inner = (dist[keep] < num_hops)  # rows whose in-edges are all kept
    compensate = num_hops > 0 and source_degree
    dtype = x.dtype if edge_weight is None else edge_weight.dtype
    w_csr = edge_weight[csr.perm] if edge_weight is not None else None

    # per subgraph row: the full in-edges for inner nodes; for boundary nodes (compensation
    # only) their self-loops, then one edge from the extra node carrying the missing degree
    counts = torch.where(inner, deg[keep], torch.zeros_like(keep))
    if compensate:
        loop_pos, loop_count = _self_loops(csr)
        boundary = keep[~inner]
        if edge_weight is None:  # missing in-degree of a boundary node: all its other in-edges
            deficit = (deg[boundary] - loop_count[boundary]).to(dtype)
        else:
            w_nonloop = w_csr.clone()
            w_nonloop[loop_pos] = 0.0
            deficit = torch.zeros(num_nodes, dtype=dtype, device=device).index_add_(
                0, csr.row, w_nonloop)[boundary]
        has_deficit = deficit != 0
        loops = loop_count[boundary]
        counts[~inner] = loops + has_deficit.long()
    sub_n = keep.numel() + (1 if compensate else 0)
    rowptr = torch.zeros(sub_n + 1, dtype=torch.long, device=device)
    rowptr[1:keep.numel() + 1] = torch.cumsum(counts, 0)
    rowptr[keep.numel() + 1:] = rowptr[keep.numel()]
    total = int(rowptr[-1])
    sub_ei = torch.empty(2, total, dtype=torch.long, device=device)
    col = sub_ei[0]
    weight = None
    if w_csr is not None:
        weight = torch.empty(total, dtype=dtype, device=device)
    elif compensate:  # unit weights, plus the compensation weights set below
        weight = torch.ones(total, dtype=dtype, device=device)

    starts = rowptr[:keep.numel()]
    rows_in = keep[inner]
    src_pos = _ragged(csr.rowptr[rows_in], deg[rows_in])
    dst_pos = _ragged(starts[inner], deg[rows_in])
    col[dst_pos] = new_id[csr.col[src_pos]]
    if w_csr is not None:
        weight[dst_pos] = w_csr[src_pos]
    extra_edges = 0
    if compensate:
        start = starts[~inner]
        if bool((loops > 0).any()):
            pos = loop_pos[dist[csr.row[loop_pos]] == num_hops]  # boundary loops, row order
            loop_dst = _ragged(start[loops > 0], loops[loops > 0])
            col[loop_dst] = new_id[csr.col[pos]]
            if w_csr is not None:
                weight[loop_dst] = w_csr[pos]
        with_deficit = has_deficit.nonzero().view(-1)
        dummy_pos = start[with_deficit] + loops[with_deficit]
        col[dummy_pos] = keep.numel()  # the extra node
        weight[dummy_pos] = deficit[with_deficit]
        extra_edges = int(with_deficit.numel())
    sub_x = x.new_empty(sub_n, x.size(1))
    torch.index_select(x, 0, keep, out=sub_x[:keep.numel()])
    if compensate:
        sub_x[-1] = 0.0  # the extra node: no features
    sub_ei[1] = torch.repeat_interleave(torch.arange(sub_n, device=device), rowptr.diff(),
                                        output_size=total)
    _register_csr(sub_ei, rowptr, col, sub_n)
    stats = {  # nodes of the graph touched (the extra node is not one); edges incl. compensation
        "node_fraction": keep.numel() / max(num_nodes, 1),
        "edge_fraction": total / max(num_edges, 1),
        "nodes_touched": float(keep.numel()),
        "edges_touched": float(total),
        "compensation_edges": float(extra_edges),
        "routed_strong": float(int(nodes.sum())),
    }
    return Subgraph(sub_x, sub_ei, weight, new_id[nodes], stats)


def run_on_subgraph(model: nn.Module, sub: Subgraph) -> Tensor:
    """``model`` on ``sub``, rows of the requested nodes (``cached=True`` caches bypassed)."""
    with _no_graph_cache(model):
        return model(sub.x, sub.edge_index, sub.edge_weight)[sub.index]


def strong_on_nodes(
    strong: nn.Module,
    x: Tensor,
    edge_index: Tensor,
    edge_weight: Tensor | None,
    nodes: Tensor,
    num_hops: int | None,
    max_fraction: float = 0.9,
) -> tuple[Tensor, dict[str, float]]:
    """Outputs of ``strong`` (in eval mode) on the nodes of the bool mask ``nodes``, computed on
    their ``num_hops``-hop receptive field only (see the module docstring).

    When the receptive field holds ``max_fraction`` of the nodes or more, extracting it would
    cost more than it saves: the strong expert then runs on the whole graph (``stats`` has
    ``full_graph = 1`` and the ``receptive_fraction``). Returns ``(rows, stats)``: ``rows``
    ``[nodes.sum(), C]`` in node order, and the ``stats`` of :func:`receptive_subgraph`.
    """
    if strong.training:
        raise ValueError("conditional inference needs the strong expert in eval mode "
                         "(call .eval()): dropout and batch-norm statistics depend on the node set")
    if num_hops is None:
        raise ValueError(f"conditional inference needs the receptive field of the strong expert "
                         f"{type(strong).__name__}: pass num_hops= to Mowst")
    if nodes.dtype != torch.bool or nodes.numel() != x.size(0):
        raise ValueError(f"nodes must be a bool mask of shape [{x.size(0)}], "
                         f"got {nodes.dtype} {tuple(nodes.shape)}")
    num_edges = edge_index.size(1)
    if not bool(nodes.any()):
        empty = {"node_fraction": 0.0, "edge_fraction": 0.0, "nodes_touched": 0.0,
                 "edges_touched": 0.0, "compensation_edges": 0.0, "routed_strong": 0.0,
                 "full_graph": 0.0}
        return x.new_empty(0, int(getattr(strong, "out_channels", 0) or 0)), empty
    if max_fraction < 1.0:
        dist = receptive_field(edge_index, nodes, num_hops, x.size(0))
        covered = int((dist >= 0).sum())
        if covered >= max_fraction * x.size(0):  # nothing to save: the whole graph, as is
            stats = {"node_fraction": 1.0, "edge_fraction": 1.0,
                     "nodes_touched": float(x.size(0)), "edges_touched": float(num_edges),
                     "compensation_edges": 0.0, "routed_strong": float(int(nodes.sum())),
                     "receptive_fraction": covered / x.size(0), "full_graph": 1.0}
            return strong(x, edge_index, edge_weight)[nodes], stats
    sub = receptive_subgraph(x, edge_index, edge_weight, nodes, num_hops,
                             needs_source_degree(strong))
    return run_on_subgraph(strong, sub), {**sub.stats, "full_graph": 0.0}


def rows_of(model: nn.Module, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None,
            nodes: Tensor, num_hops: int | None, subgraph: Subgraph | None = None) -> Tensor:
    """``model(x, edge_index, edge_weight)[nodes]``, computed on as little of the graph as exact.

    Graph-free models (``num_hops == 0``) run on the rows of ``nodes`` only; message-passing
    models on the receptive field (``subgraph``, if given, must be the one of ``nodes``), unless
    the number of hops is unknown or batch norm is in training mode (its statistics would change),
    where the whole graph is used. In training mode the outputs equal the full-graph ones up to
    the randomness of dropout.
    """
    if num_hops is None or _has_batch_norm_in_training(model):
        return model(x, edge_index, edge_weight)[nodes]
    if num_hops == 0:
        return model(x[nodes], None, None)
    if subgraph is None:
        subgraph = receptive_subgraph(x, edge_index, edge_weight, nodes, num_hops,
                                      needs_source_degree(model))
    return run_on_subgraph(model, subgraph)
