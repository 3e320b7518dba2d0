r"""Layer-wise evaluation of GCN and GraphSAGE on shrinking receptive fields (Mowst's strong
expert under conditional inference): layer :math:`l` of :math:`L` is computed only on the rows
of :math:`V_{L-l-1}`, over rectangular CSRs sliced from one relabelled CSR of the field's
in-edges (:func:`layer_graphs`, :func:`layerwise_rows`), reproducing the full-graph outputs.
See :mod:`graphmoe.models.mowst_conditional` for the derivation.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphmoe.models.basic_gnn import GCN, GraphSAGE
from graphmoe.models.conv import GCNConv, SAGEConv
from graphmoe.models.conv.gcn_conv import cached_gcn_norm, gcn_norm
from graphmoe.models.mowst_receptive import Field
from graphmoe.ops import CSR, aggregate
from graphmoe.ops.aggregate import head_rows, select_rows

try:  # the fused SAGE kernel (sum/mean aggregation and linear maps in one operation)
    from graphmoe.ops.aggregate import aggregate_linear
except ImportError:  # pragma: no cover - older graphmoe.ops: the unfused path
    aggregate_linear = None

__all__ = ["LayerGraphs", "layer_graphs", "layerwise_rows", "supports_layerwise"]


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
    the full graph) for the field's in-edges and nodes: the full graph's values, gathered, so
    the layers reproduce the full-graph outputs bit for bit. Unweighted graphs reuse the
    normalisation :class:`GCNConv` keeps with the cached graph (one :math:`O(E)` pass per
    graph); weighted ones run ``gcn_norm`` on the whole graph at every call, as the layer does.
    """
    if not conv.normalize:  # plain weighted sum, existing self-loops included
        return graphs.edge_weight, None
    num_nodes = graphs.graph.num_rows
    if graphs.graph_weight is None:
        norm, loop_norm = cached_gcn_norm(graphs.edge_index, num_nodes, conv.improved,
                                          conv.add_self_loops, dtype)
    else:
        norm, loop_norm = gcn_norm(graphs.edge_index, graphs.graph_weight, num_nodes,
                                   conv.improved, conv.add_self_loops, dtype)
    loop_norm = None if loop_norm is None else loop_norm.index_select(0, graphs.field.nodes)
    return graphs.field_edges(norm), loop_norm


class _Rows(NamedTuple):
    """A layer's input. ``source``: the tensor whose rows the layer's CSR columns index (the
    previous layer's output, or the graph's or the field's features for the first layer);
    ``index``: with graph-id columns, the graph ids of the field's nodes (the targets are rows
    ``index[:n]`` of ``source``), else ``None`` (the targets are the first rows)."""

    source: Tensor
    index: Tensor | None = None

    def target(self, t: Tensor, n: int) -> Tensor:
        """The rows of the first ``n`` field nodes in ``t`` (indexed like ``source``)."""
        return head_rows(t, n) if self.index is None else select_rows(t, self.index[:n])

    def map_target(self, fn: Callable[[Tensor], Tensor], n: int, out_channels: int) -> Tensor:
        """``fn`` (row-wise, to ``out_channels``) on the targets: applied to every row first
        when that is cheaper than gathering wide rows (most rows, fewer channels out)."""
        if (self.index is not None and 2 * n >= self.source.size(0)
                and out_channels < self.source.size(1)):
            return self.target(fn(self.source), n)
        return fn(self.target(self.source, n))


def _gcn_layer(conv: nn.Module, x: _Rows, csr: CSR, norm: tuple) -> Tensor:
    """``GCNConv.forward`` on the rows of ``csr`` (its targets: the first ``csr.num_rows``
    input rows), with the operations of ``gcn_propagate`` in the same order and the linear map
    on the same side (:meth:`GCNConv.aggregates_first`: then only on the target rows)."""
    weight, loop_norm = norm
    n = csr.num_rows
    first = conv.aggregates_first(x.source)
    h = x.source if first else conv.lin(x.source)
    out = aggregate(h, csr, None if weight is None else weight[:csr.num_edges], "sum")
    if loop_norm is not None:
        out = out.add_(loop_norm[:n].unsqueeze(-1) * x.target(h, n))  # as gcn_propagate
    if first:
        out = conv.lin(out)
    return out if conv.bias is None else out.add_(conv.bias)


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
    :func:`supports_layerwise` must hold and the model be in eval mode. ``graphs.x`` may be a
    ``torch.sparse_csr`` tensor (its rows are gathered with
    :func:`graphmoe.ops.aggregate.select_rows`).
    """
    num_layers, jk = model.num_layers, model.jk_mode
    nodes = graphs.field.nodes
    x = _Rows(graphs.x, nodes) if graphs.graph_ids else _Rows(select_rows(graphs.x, nodes))
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
