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

**Layer-wise evaluation** (GCN and GraphSAGE, :func:`layerwise_rows`). Only the last layer
needs outputs on :math:`S = V_0`; layer :math:`l` (of :math:`L`) needs them on :math:`V_{L-l-1}`,
the nodes within :math:`L - l - 1` hops, and reads the rows of :math:`V_{L-l}`. The field is
found by frontier expansion on the graph's cached CSR (:func:`expand`: one ragged gather of the
frontier's in-edges per hop, boolean masks, no ``k_hop_subgraph``), its nodes sorted by
distance so that every :math:`V_k` is a prefix. The in-edges of :math:`V_{L-1}` gathered by
the last hop, relabelled once, form one CSR whose row prefixes are the per-layer rectangular
CSRs (:meth:`graphmoe.ops.CSR.from_arrays`, aggregated by :func:`graphmoe.ops.aggregate`), with
no sort and no COO. GCN's normalisation uses the full graph's degrees (no compensation edges).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphmoe.models.basic_gnn import GCN, GraphSAGE
from graphmoe.models.conv import GCNConv, SAGEConv
from graphmoe.models.conv.gcn_conv import gcn_norm
from graphmoe.ops import CSR, aggregate, register_csr, to_csr

try:  # the fused SAGE kernel (sum/mean aggregation and linear maps in one operation)
    from graphmoe.ops.aggregate import aggregate_linear
except ImportError:  # pragma: no cover - older graphmoe.ops: the unfused path
    aggregate_linear = None

__all__ = [
    "Field",
    "LayerGraphs",
    "Subgraph",
    "expand",
    "layer_graphs",
    "layerwise_rows",
    "needs_source_degree",
    "receptive_field",
    "receptive_subgraph",
    "rows_of",
    "run_on_subgraph",
    "strong_on_nodes",
    "supports_layerwise",
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


def _ragged(starts: Tensor, counts: Tensor, total: int | None = None) -> Tensor:
    """Concatenation of the ranges ``starts[i] .. starts[i] + counts[i] - 1``."""
    total = int(counts.sum()) if total is None else total
    if total == 0:
        return starts.new_empty(0)
    ends = torch.cumsum(counts, 0)
    shift = torch.repeat_interleave(starts - (ends - counts), counts, output_size=total)
    return shift.add_(torch.arange(total, device=starts.device))


class Field(NamedTuple):
    r"""The nodes within ``num_hops`` hops upstream of some seeds, by hop distance.

    ``nodes[:sizes[k]]`` are the nodes within :math:`k` hops (:math:`V_k`), sorted by
    distance, then by id (``nodes[:sizes[0]]`` are the seeds in node order). ``positions``
    are the positions in the graph's CSR of the in-edges of :math:`V_{L-1}`, row after row in
    that order, ``sources`` their sources (``csr.col[positions]``) and ``rowptr`` the row
    pointers of those rows (``rowptr[sizes[k]]`` in-edges for :math:`V_k`).
    """

    nodes: Tensor
    sizes: tuple[int, ...]
    rowptr: Tensor
    positions: Tensor
    sources: Tensor

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

    Each hop reads only the in-edges of the current frontier (one ragged gather of the CSR)
    and marks their sources in a boolean mask. Returns ``None`` as soon as the in-edges of
    :math:`V_{L-1}` are known to number ``max_edges`` or more (checked before every gather).
    """
    deg = csr.deg
    seen = seeds.clone()
    level = seeds.nonzero().view(-1)
    levels, counts, positions, sources = [level], [], [], []
    needed = 0
    for _ in range(num_hops):
        counts.append(deg.index_select(0, level))  # index_select: faster than deg[level]
        total = int(counts[-1].sum())
        needed += total
        if max_edges is not None and needed >= max_edges:  # E(V_{L-1}) >= what we have
            return None
        positions.append(_ragged(csr.rowptr.index_select(0, level), counts[-1], total))
        sources.append(csr.col.index_select(0, positions[-1]))
        reached = torch.zeros_like(seen)
        reached[sources[-1]] = True
        new = reached.logical_and_(seen.logical_not())
        seen.logical_or_(new)
        level = new.nonzero().view(-1)
        levels.append(level)
    sizes = tuple(torch.tensor([lv.numel() for lv in levels]).cumsum(0).tolist())
    rowptr = deg.new_zeros(sizes[-2] + 1 if num_hops else 1)
    if num_hops:
        torch.cumsum(torch.cat(counts), 0, out=rowptr[1:])
    empty = deg.new_empty(0)
    return Field(torch.cat(levels), sizes, rowptr, torch.cat([empty, *positions]),
                 torch.cat([empty, *sources]))


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
    src_pos = _ragged(csr.rowptr[rows_in], deg[rows_in])
    dst_pos = _ragged(starts[inner], deg[rows_in])
    col[dst_pos] = new_id.index_select(0, csr.col.index_select(0, src_pos))
    if w_csr is not None:
        weight[dst_pos] = w_csr.index_select(0, src_pos)
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


def run_on_subgraph(model: nn.Module, sub: Subgraph) -> Tensor:
    """``model`` on ``sub``, rows of the requested nodes (``cached=True`` caches bypassed)."""
    with _no_graph_cache(model):
        return model(sub.x, sub.edge_index, sub.edge_weight)[sub.index]


# -- layer-wise evaluation (GCN, GraphSAGE) ----------------------------------------------------


def supports_layerwise(model: nn.Module, num_hops: int | None) -> bool:
    """Whether :func:`layerwise_rows` can evaluate ``model``: graphmoe's ``GCN`` or
    ``GraphSAGE`` (exactly those classes, with graphmoe's ``GCNConv``/``SAGEConv`` layers)
    and ``num_hops == num_layers``."""
    return (type(model) in (GCN, GraphSAGE) and num_hops == model.num_layers
            and all(type(conv) in (GCNConv, SAGEConv) for conv in model.convs))


class LayerGraphs(NamedTuple):
    r"""What :func:`layerwise_rows` runs on: the field's features and one CSR per layer.

    Layer :math:`l = 0, \dots, L - 1` maps the rows of :math:`V_{L-l}` to those of
    :math:`V_{L-l-1}` (:class:`Field` order); ``csrs[l]`` is a rectangular CSR over those rows
    and columns, a prefix of one relabelled CSR (rows of :math:`V_{L-1}` in the field's order,
    their in-edges in the graph's CSR order, so every sum runs in the full-graph order).
    """

    x: Tensor
    """The graph's features (all nodes; the first layer reads the rows ``field.nodes``)."""
    csrs: list[CSR]
    field: Field
    graph: CSR
    edge_index: Tensor
    graph_weight: Tensor | None
    """The graph's edge weights (``edge_index`` order), or ``None``."""
    edge_weight: Tensor | None
    """Weights of the field's in-edges (``field.positions`` order), or ``None``."""
    graph_ids: bool = False
    """Whether the first layer's columns are the graph's node ids (else field positions)."""

    def field_edges(self, values: Tensor) -> Tensor:
        """``values`` given in ``edge_index`` order, for the field's in-edges."""
        return values.index_select(0, self.graph.perm.index_select(0, self.field.positions))


def layer_graphs(x: Tensor, edge_index: Tensor, csr: CSR, edge_weight: Tensor | None,
                 field: Field) -> LayerGraphs:
    """Relabel the field's in-edges once and slice one CSR per layer out of them.

    When the field holds half of the nodes or more, the first layer keeps the graph's node ids
    as columns (it reads the graph's features in place: no gather of ``x``, and only the
    in-edges of the later layers are relabelled).
    """
    sizes, num_hops = field.sizes, field.num_hops
    graph_ids = 2 * sizes[-1] >= csr.num_rows
    relabel = 0  # in-edges whose source needs its field position: rows of V_{L-2} or V_{L-1}
    if num_hops > int(graph_ids):
        relabel = int(field.rowptr[sizes[-3] if graph_ids else sizes[-2]])
    new_id = torch.empty(csr.num_rows, dtype=torch.long, device=x.device)
    new_id[field.nodes] = torch.arange(field.nodes.numel(), device=x.device)
    col = new_id.index_select(0, field.sources[:relabel])  # much faster than new_id[...]
    csrs = []
    for layer in range(num_hops):
        rows, cols = sizes[num_hops - layer - 1], sizes[num_hops - layer]
        ptr = field.rowptr[:rows + 1]
        if layer == 0 and graph_ids:
            csrs.append(CSR.from_arrays(ptr, field.sources[:int(ptr[-1])], csr.num_rows,
                                        validate=False))
        else:
            csrs.append(CSR.from_arrays(ptr, col[:int(ptr[-1])], cols, validate=False))
    graphs = LayerGraphs(x, csrs, field, csr, edge_index, edge_weight, None, graph_ids)
    if edge_weight is None:
        return graphs
    return graphs._replace(edge_weight=graphs.field_edges(edge_weight))


def _gcn_norm(graphs: LayerGraphs, conv: nn.Module,
              dtype: torch.dtype) -> tuple[Tensor | None, Tensor | None]:
    r"""``(norm, loop_norm)`` of :func:`~graphmoe.models.conv.gcn_conv.gcn_norm` (degrees of
    the full graph) for the field's in-edges and nodes, computed with the same operations in
    the same order, so the layers reproduce the full-graph outputs bit for bit.

    Unweighted graphs need only node-wise degrees (:math:`O(N)`) and gathers over the field's
    edges; weighted ones run ``gcn_norm`` on the whole graph (:math:`O(E)`).
    """
    if not conv.normalize:  # plain weighted sum, existing self-loops included
        return graphs.edge_weight, None
    field, csr = graphs.field, graphs.graph
    if graphs.graph_weight is not None:
        norm, loop_norm = gcn_norm(graphs.edge_index, graphs.graph_weight, csr.num_rows,
                                   conv.improved, conv.add_self_loops, dtype)
        loop_norm = None if loop_norm is None else loop_norm.index_select(0, field.nodes)
        return graphs.field_edges(norm), loop_norm
    loop_pos, loop_count = _self_loops(csr)
    deg = csr.deg
    loop_weight = None
    if conv.add_self_loops:  # an existing loop keeps its weight (1), the others get `fill`
        loop_weight = torch.full((csr.num_rows,), 2.0 if conv.improved else 1.0, dtype=dtype,
                                 device=deg.device).masked_fill_(loop_count > 0, 1.0)
        deg = deg - loop_count
    deg = deg.to(dtype)
    if loop_weight is not None:
        deg = deg + loop_weight
    dis = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    dst = csr.row.index_select(0, field.positions)
    norm = dis.index_select(0, field.sources) * dis.index_select(0, dst)
    if loop_weight is None:
        return norm, None
    if loop_pos.numel() > 0:  # the loop term replaces existing self-loops
        norm = norm.masked_fill_(field.sources == dst, 0.0)
    return norm, (dis * loop_weight * dis).index_select(0, field.nodes)


class _Rows(NamedTuple):
    """A layer's input. ``source``: the tensor whose rows the layer's CSR columns index (the
    previous layer's output, or the graph's or the field's features for the first layer);
    ``index``: with graph-id columns, the graph ids of the field's nodes (the targets are rows
    ``index[:n]`` of ``source``), else ``None`` (the targets are the first rows)."""

    source: Tensor
    index: Tensor | None = None

    def target(self, t: Tensor, n: int) -> Tensor:
        """The rows of the first ``n`` field nodes in ``t`` (indexed like ``source``)."""
        return t[:n] if self.index is None else t.index_select(0, self.index[:n])

    def map_target(self, fn: Callable[[Tensor], Tensor], n: int, out_channels: int) -> Tensor:
        """``fn`` (row-wise, to ``out_channels``) on the targets: applied to every row first
        when that is cheaper than gathering wide rows (most rows, fewer channels out)."""
        if (self.index is not None and 2 * n >= self.source.size(0)
                and out_channels < self.source.size(1)):
            return self.target(fn(self.source), n)
        return fn(self.target(self.source, n))


def _gcn_layer(conv: nn.Module, x: _Rows, csr: CSR, norm: tuple) -> Tensor:
    """``GCNConv.forward`` on the rows of ``csr`` (its targets: the first ``csr.num_rows``
    input rows), with the operations of ``gcn_propagate`` in the same order."""
    weight, loop_norm = norm
    n = csr.num_rows
    h = conv.lin(x.source)
    out = aggregate(h, csr, None if weight is None else weight[:csr.num_edges], "sum")
    if loop_norm is not None:
        out = out + loop_norm[:n].unsqueeze(-1) * x.target(h, n)
    return out if conv.bias is None else out + conv.bias


def _sage_layer(conv: nn.Module, x: _Rows, csr: CSR, weight: Tensor | None) -> Tensor:
    """``SAGEConv.forward`` on the rows of ``csr`` (``project``, root weight, normalize),
    through the fused ``aggregate_linear`` of :mod:`graphmoe.ops` when it is available."""
    weight = None if weight is None else weight[:csr.num_edges]
    n, lin, out_channels = csr.num_rows, conv.lin_l, conv.out_channels
    project = getattr(conv, "lin", None)
    h = x.source if project is None else project(x.source).relu()
    root_apart = conv.lin_r is not None and (  # wide features: project all rows, then gather
        x.index is not None and 2 * n >= x.source.size(0) and out_channels < x.source.size(1))
    if aggregate_linear is not None:
        fused_root = conv.lin_r is not None and not root_apart
        out = aggregate_linear(h, csr, lin.weight, lin.bias, weight, conv.reduce,
                               x_root=x.target(x.source, n) if fused_root else None,
                               weight_root=conv.lin_r.weight if fused_root else None)
    elif conv.reduce != "max" and out_channels < h.size(1):  # projection first, as SAGEConv
        out = aggregate(F.linear(h, lin.weight), csr, weight, conv.reduce)
        out = out if lin.bias is None else out.add_(lin.bias)
    else:
        out = lin(aggregate(h, csr, weight, conv.reduce))
    if conv.lin_r is not None and (root_apart or aggregate_linear is None):
        out = out + x.map_target(conv.lin_r, n, out_channels)
    return F.normalize(out, p=2.0, dim=-1) if conv.normalize else out


def _conv_layer(conv: nn.Module, x: _Rows, graphs: LayerGraphs, layer: int,
                norms: dict) -> Tensor:
    csr = graphs.csrs[layer]
    if type(conv) is GCNConv:
        key = (conv.normalize, conv.add_self_loops, conv.improved)
        if key not in norms:
            norms[key] = _gcn_norm(graphs, conv, x.source.dtype)
        return _gcn_layer(conv, x, csr, norms[key])
    return _sage_layer(conv, x, csr, graphs.edge_weight)


def layerwise_rows(model: nn.Module, graphs: LayerGraphs) -> Tensor:
    r"""``model``'s outputs on the field's seeds, layer :math:`l` evaluated only on the rows
    of :math:`V_{L-l-1}` (see :class:`LayerGraphs`), in seed (node) order.

    Follows :meth:`graphmoe.models.basic_gnn.BasicGNN.forward` (residual, norm, activation,
    dropout, jumping knowledge) with every node-wise operation applied to the rows computed;
    :func:`supports_layerwise` must hold and the model be in eval mode.
    """
    num_layers, jk = model.num_layers, model.jk_mode
    nodes = graphs.field.nodes
    x = _Rows(graphs.x, nodes) if graphs.graph_ids else _Rows(graphs.x.index_select(0, nodes))
    xs, norms = [], {}
    for i in range(num_layers):
        h = _conv_layer(model.convs[i], x, graphs, i, norms)
        if model.residual:
            h = h + x.map_target(model.skips[i], h.size(0), h.size(1))
        if i < num_layers - 1 or jk is not None:
            h = model.norms[i](h)
            if model.act is not None:
                h = model.act(h)
            h = model.dropout(h)
            xs.append(h)
        x = _Rows(h)
    if jk is None:
        return x.source
    seeds = graphs.field.sizes[0]
    if jk == "cat":
        out = torch.cat([h[:seeds] for h in xs], dim=-1)
    elif jk == "max":
        out = torch.stack([h[:seeds] for h in xs], dim=-1).amax(dim=-1)
    else:  # "last"
        out = x.source
    return model.lin(out)


# -- the strong expert on the routed nodes -----------------------------------------------------


def _full_graph_stats(num_nodes: int, num_edges: int, routed: int, **extra: float) -> dict:
    return {"node_fraction": 1.0, "edge_fraction": 1.0, "nodes_touched": float(num_nodes),
            "edges_touched": float(num_edges), "compensation_edges": 0.0,
            "routed_strong": float(routed), "layerwise": 0.0, "full_graph": 1.0, **extra}


def _layerwise_stats(graphs: LayerGraphs, num_nodes: int, num_edges: int) -> dict:
    """Fractions of the graph touched; ``aggregation_fraction``: edges aggregated over all
    layers, over ``num_layers * num_edges`` (what full inference aggregates)."""
    sizes, csrs = graphs.field.sizes, graphs.csrs
    read = csrs[0].num_edges if csrs else 0
    per_layer = sum(c.num_edges for c in csrs)
    return {"node_fraction": sizes[-1] / max(num_nodes, 1),
            "edge_fraction": read / max(num_edges, 1),
            "aggregation_fraction": per_layer / max(len(csrs) * num_edges, 1),
            "nodes_touched": float(sizes[-1]), "edges_touched": float(read),
            "compensation_edges": 0.0, "routed_strong": float(sizes[0]),
            "layerwise": 1.0, "full_graph": 0.0}


def _check_strong(strong: nn.Module, x: Tensor, nodes: Tensor, num_hops: int | None) -> None:
    if strong.training:
        raise ValueError("conditional inference needs the strong expert in eval mode "
                         "(call .eval()): dropout and batch-norm statistics depend on the node set")
    if num_hops is None:
        raise ValueError(f"conditional inference needs the receptive field of the strong expert "
                         f"{type(strong).__name__}: pass num_hops= to Mowst")
    if nodes.dtype != torch.bool or nodes.numel() != x.size(0):
        raise ValueError(f"nodes must be a bool mask of shape [{x.size(0)}], "
                         f"got {nodes.dtype} {tuple(nodes.shape)}")


def strong_on_nodes(
    strong: nn.Module,
    x: Tensor,
    edge_index: Tensor,
    edge_weight: Tensor | None,
    nodes: Tensor,
    num_hops: int | None,
    max_fraction: float = 0.9,
    layerwise: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """Outputs of ``strong`` (in eval mode) on the nodes of the bool mask ``nodes``, computed on
    their ``num_hops``-hop receptive field only (see the module docstring).

    GCN and GraphSAGE (:func:`supports_layerwise`; ``layerwise=True``) are evaluated layer by
    layer on shrinking fields (:func:`layerwise_rows`); other models on the receptive
    subgraph (:func:`receptive_subgraph`). When the first layer would read ``max_fraction`` of
    the edges or more, or the field holds ``max_fraction`` of the nodes or more, there is
    little to save: the strong expert then runs on the whole graph (``stats["full_graph"] = 1``).
    Returns ``(rows, stats)``: ``rows`` ``[nodes.sum(), C]`` in node order, and the fractions
    of nodes and edges touched.
    """
    _check_strong(strong, x, nodes, num_hops)
    num_nodes, num_edges = x.size(0), edge_index.size(1)
    routed = int(nodes.sum())
    if routed == 0:
        empty = {"node_fraction": 0.0, "edge_fraction": 0.0, "nodes_touched": 0.0,
                 "edges_touched": 0.0, "compensation_edges": 0.0, "routed_strong": 0.0,
                 "layerwise": 0.0, "full_graph": 0.0}
        return x.new_empty(0, int(getattr(strong, "out_channels", 0) or 0)), empty
    if layerwise and supports_layerwise(strong, num_hops):
        strong.check_input(x, edge_index, edge_weight)
    csr = to_csr(edge_index, num_nodes)
    limit = max_fraction < 1.0
    field = expand(csr, nodes, num_hops, max_fraction * num_edges if limit else None)
    if field is None or (limit and field.sizes[-1] >= max_fraction * num_nodes):
        extra = {} if field is None else {"receptive_fraction": field.sizes[-1] / num_nodes}
        return (strong(x, edge_index, edge_weight)[nodes],
                _full_graph_stats(num_nodes, num_edges, routed, **extra))
    if layerwise and supports_layerwise(strong, num_hops):
        graphs = layer_graphs(x, edge_index, csr, edge_weight, field)
        return layerwise_rows(strong, graphs), _layerwise_stats(graphs, num_nodes, num_edges)
    sub = receptive_subgraph(x, edge_index, edge_weight, nodes, num_hops,
                             needs_source_degree(strong), dist=field.distance(num_nodes))
    return run_on_subgraph(strong, sub), {**sub.stats, "layerwise": 0.0, "full_graph": 0.0}


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
