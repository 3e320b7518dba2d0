r"""Receptive fields of Mowst's strong expert: frontier expansion on the graph's cached CSR
(:func:`expand`, :class:`Field`) and extraction of the receptive subgraph a model can run on
unchanged (:func:`receptive_subgraph`, with the compensation edges that keep GCN's source
degrees exact; :func:`run_on_subgraph`). See :mod:`graphmoe.models.mowst_conditional` for the
reasoning and for the entry points that use them.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from graphmoe.ops import CSR, cpu_kernels, register_csr, to_csr
from graphmoe.ops.aggregate import select_rows
from graphmoe.ops.row_subset import ragged_arange, sources_of

__all__ = [
    "Field",
    "Subgraph",
    "expand",
    "needs_source_degree",
    "receptive_field",
    "receptive_subgraph",
    "run_on_subgraph",
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


class Field(NamedTuple):
    r"""The nodes within ``num_hops`` hops upstream of some seeds, by hop distance.

    ``nodes[:sizes[k]]`` are the nodes within :math:`k` hops (:math:`V_k`), sorted by
    distance, then by id (``nodes[:sizes[0]]`` are the seeds in node order);
    ``in_edges[k]`` is the number of in-edges of :math:`V_k`, for :math:`k < L` (what a layer
    computing the rows of :math:`V_k` reads). ``position``, when given, maps a node id to its
    place in ``nodes`` (entries outside the field are unset).
    """

    nodes: Tensor
    sizes: tuple[int, ...]
    in_edges: tuple[int, ...]
    position: Tensor | None = None

    @property
    def num_hops(self) -> int:
        return len(self.sizes) - 1

    def distance(self, num_nodes: int) -> Tensor:
        """Hop distance ``[num_nodes]`` of every node, ``-1`` outside the field."""
        dist = self.nodes.new_full((num_nodes,), -1)
        bounds = (0, *self.sizes)
        for hop in range(len(self.sizes)):
            dist[self.nodes[bounds[hop]:bounds[hop + 1]]] = hop
        return dist


def expand(csr: CSR, seeds: Tensor, num_hops: int,
           max_edges: float | None = None) -> Field | None:
    """The :class:`Field` of the bool mask ``seeds`` by frontier expansion on ``csr``.

    Each hop marks the sources of the current frontier's in-edges and keeps the nodes not seen
    before. Returns ``None`` as soon as the in-edges of :math:`V_{L-1}` are known to number
    ``max_edges`` or more (checked before every hop). On CPU one compiled call does every hop
    and the position map (:func:`graphmoe.ops.cpu_kernels.frontier_levels`: the marking split
    among threads, one sequential pass per hop to keep the new nodes in id order); elsewhere
    each hop is :func:`graphmoe.ops.row_subset.sources_of` and ``nonzero``.
    """
    if seeds.dtype != torch.bool or seeds.numel() != csr.num_rows or csr.num_rows != csr.num_cols:
        raise ValueError(f"expand() needs a bool mask with one entry per node of a square graph "
                         f"({csr.num_rows} x {csr.num_cols}), got {seeds.dtype} "
                         f"{tuple(seeds.shape)}")
    if csr.device.type == "cpu":
        levels = cpu_kernels.frontier_levels(csr.rowptr, csr.col, seeds, num_hops, max_edges)
        if levels is not None:
            if not levels:
                return None
            nodes, sizes, in_edges, position = levels
            return Field(nodes, tuple(sizes.tolist()), tuple(in_edges.tolist()), position)
    return _expand_by_hops(csr, seeds, num_hops, max_edges)


def _expand_by_hops(csr: CSR, seeds: Tensor, num_hops: int,
                    max_edges: float | None) -> Field | None:
    """:func:`expand` hop by hop with tensor operations (no position map)."""
    deg = csr.deg
    seen = seeds.clone()
    level = seeds.nonzero().view(-1)
    levels, in_edges = [level], []
    for _ in range(num_hops):
        # index_select: faster than deg[level]
        in_edges.append((in_edges[-1] if in_edges else 0) + int(deg.index_select(0, level).sum()))
        if max_edges is not None and in_edges[-1] >= max_edges:  # E(V_{L-1}) >= what we have
            return None
        new = sources_of(csr, level).logical_and_(seen.logical_not())
        seen.logical_or_(new)
        level = new.nonzero().view(-1)
        levels.append(level)
    sizes = tuple(torch.tensor([lv.numel() for lv in levels]).cumsum(0).tolist())
    return Field(torch.cat(levels), sizes, tuple(in_edges))


def receptive_field(edge_index: Tensor, seeds: Tensor, num_hops: int,
                    num_nodes: int | None = None) -> Tensor:
    """Hop distance ``[N]`` of every node to the ``seeds`` (bool ``[N]``) against the edge
    direction, ``-1`` beyond ``num_hops`` hops (see :func:`expand`)."""
    num_nodes = seeds.numel() if num_nodes is None else num_nodes
    return expand(to_csr(edge_index, num_nodes), seeds, num_hops).distance(num_nodes)


_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _self_loops(csr: CSR) -> tuple[Tensor, Tensor]:
    """``(loop_pos, loop_count)``: CSR positions of the self-loops (in row order) and their
    number per node, computed once per cached graph."""
    entry = _LOOPS.get(csr)
    if entry is None:
        loop_pos = (csr.col == csr.row).nonzero().view(-1)
        loop_count = torch.bincount(csr.row[loop_pos], minlength=csr.num_rows)
        entry = _LOOPS[csr] = (loop_pos, loop_count)
    return entry


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
                       num_hops: int, source_degree: bool = True,
                       dist: Tensor | None = None) -> Subgraph:
    """The ``num_hops``-hop receptive field of the bool mask ``nodes`` (module docstring).

    ``source_degree`` adds the compensation node and edges that keep the in-degree of the
    boundary nodes exact (needed by GCN-normalised models, see :func:`needs_source_degree`).
    The subgraph's edges are emitted in target-major CSR order straight from the graph's
    cached CSR (no sort) and its CSR is registered with :func:`graphmoe.ops.register_csr`.
    ``dist`` may pass the hop distances of :func:`receptive_field` if already known.
    ``x`` may be a ``torch.sparse_csr`` tensor (the subgraph's ``x`` is then one too).
    ``stats`` holds ``node_fraction`` (nodes of the graph in the subgraph,
    over all nodes), ``edge_fraction`` (edges of the subgraph, the compensation edges included,
    over all edges) and the counts.
    """
    if nodes.dtype != torch.bool or nodes.numel() != x.size(0):
        raise ValueError(f"nodes must be a bool mask of shape [{x.size(0)}], "
                         f"got {nodes.dtype} {tuple(nodes.shape)}")
    num_nodes, num_edges, device = x.size(0), edge_index.size(1), x.device
    csr = to_csr(edge_index, num_nodes)
    deg = csr.rowptr.diff()
    if dist is None:
        dist = expand(csr, nodes, num_hops).distance(num_nodes)
    keep = (dist >= 0).nonzero().view(-1)  # subgraph nodes, in node order
    new_id = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
    new_id[keep] = torch.arange(keep.numel(), device=device)
    inner = (dist[keep] < num_hops)  # rows whose in-edges are all kept
    compensate = num_hops > 0 and source_degree
    dtype = x.dtype if edge_weight is None else edge_weight.dtype
    w_csr = edge_weight.index_select(0, csr.perm) if edge_weight is not None else None

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
    src_pos = ragged_arange(csr.rowptr[rows_in], deg[rows_in])
    dst_pos = ragged_arange(starts[inner], deg[rows_in])
    col[dst_pos] = new_id.index_select(0, csr.col.index_select(0, src_pos))
    if w_csr is not None:
        weight[dst_pos] = w_csr.index_select(0, src_pos)
    extra_edges = 0
    if compensate:
        start = starts[~inner]
        if bool((loops > 0).any()):
            pos = loop_pos[dist[csr.row[loop_pos]] == num_hops]  # boundary loops, row order
            loop_dst = ragged_arange(start[loops > 0], loops[loops > 0])
            col[loop_dst] = new_id[csr.col[pos]]
            if w_csr is not None:
                weight[loop_dst] = w_csr[pos]
        with_deficit = has_deficit.nonzero().view(-1)
        dummy_pos = start[with_deficit] + loops[with_deficit]
        col[dummy_pos] = keep.numel()  # the extra node
        weight[dummy_pos] = deficit[with_deficit]
        extra_edges = int(with_deficit.numel())
    sub_x = _subgraph_features(x, keep, compensate)
    sub_ei[1] = torch.repeat_interleave(torch.arange(sub_n, device=device), rowptr.diff(),
                                        output_size=total)
    # edges emitted in CSR order: the identity permutation
    register_csr(sub_ei, CSR.from_arrays(rowptr, col, sub_n, validate=False), validate=False)
    stats = {  # nodes of the graph touched (the extra node is not one); edges incl. compensation
        "node_fraction": keep.numel() / max(num_nodes, 1),
        "edge_fraction": total / max(num_edges, 1),
        "nodes_touched": float(keep.numel()),
        "edges_touched": float(total),
        "compensation_edges": float(extra_edges),
        "routed_strong": float(int(nodes.sum())),
    }
    return Subgraph(sub_x, sub_ei, weight, new_id[nodes], stats)


def _subgraph_features(x: Tensor, keep: Tensor, extra_node: bool) -> Tensor:
    """The rows ``keep`` of ``x``, then an all-zero row for the extra node if ``extra_node``
    (a CSR tensor for a ``torch.sparse_csr`` ``x``)."""
    if x.layout != torch.strided:
        sub_x = select_rows(x, keep)
        if not extra_node:
            return sub_x
        crow = sub_x.crow_indices()
        return torch.sparse_csr_tensor(torch.cat([crow, crow[-1:]]), sub_x.col_indices(),
                                       sub_x.values(), (keep.numel() + 1, x.size(1)),
                                       check_invariants=False)
    sub_x = x.new_empty(keep.numel() + int(extra_node), x.size(1))
    torch.index_select(x, 0, keep, out=sub_x[:keep.numel()])
    if extra_node:
        sub_x[-1] = 0.0  # the extra node: no features
    return sub_x


def run_on_subgraph(model: nn.Module, sub: Subgraph) -> Tensor:
    """``model`` on ``sub``, rows of the requested nodes (``cached=True`` caches bypassed)."""
    with _no_graph_cache(model):
        return model(sub.x, sub.edge_index, sub.edge_weight)[sub.index]
