r"""Layer-wise evaluation of GCN and GraphSAGE on shrinking receptive fields (Mowst's strong
expert under conditional inference): layer :math:`l` of :math:`L` is computed only on the rows
of :math:`V_{L-l-1}`, straight from the graph's cached CSR with
:func:`graphmoe.ops.row_subset.aggregate_rows` (:func:`layerwise_input`, :func:`layerwise_rows`),
reproducing the full-graph outputs. See :mod:`graphmoe.models.mowst_conditional` for the
derivation.
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
from graphmoe.ops import CSR
from graphmoe.ops.aggregate import head_rows, select_rows
from graphmoe.ops.row_subset import aggregate_rows

__all__ = ["LayerwiseInput", "layerwise_input", "layerwise_rows", "supports_layerwise"]


def supports_layerwise(model: nn.Module, num_hops: int | None) -> bool:
    """Whether :func:`layerwise_rows` can evaluate ``model``: graphmoe's ``GCN`` or
    ``GraphSAGE`` (exactly those classes, with graphmoe's ``GCNConv``/``SAGEConv`` layers)
    and ``num_hops == num_layers``."""
    return (type(model) in (GCN, GraphSAGE) and num_hops == model.num_layers
            and all(type(conv) in (GCNConv, SAGEConv) for conv in model.convs))


class LayerwiseInput(NamedTuple):
    r"""What :func:`layerwise_rows` runs on: the graph, its features and the field.

    Layer :math:`l = 0, \dots, L - 1` computes the rows of the first
    ``field.sizes[L - l - 1]`` field nodes (:math:`V_{L-l-1}`) from the rows of
    :math:`V_{L-l}`, over the in-edges of those targets in the graph's own CSR. After the first
    layer, a layer's input holds the rows of a prefix of ``field.nodes``; ``position`` maps a
    node id to its place in ``field.nodes`` (entries outside the field are never read).
    """

    x: Tensor
    """The graph's features (all nodes)."""
    field: Field
    graph: CSR
    edge_index: Tensor
    edge_weight: Tensor | None
    """The graph's edge weights (``edge_index`` order), or ``None``."""
    position: Tensor
    graph_ids: bool = False
    """Whether the first layer reads the graph's features in place (else the field's rows,
    gathered: fields with less than half of the nodes)."""


def layerwise_input(x: Tensor, edge_index: Tensor, csr: CSR, edge_weight: Tensor | None,
                    field: Field) -> LayerwiseInput:
    """The field's position map (``field.position``, else built here); the first layer reads
    ``x`` in place when the field holds half of the nodes or more (no gather of ``x``)."""
    position = field.position
    if position is None:
        position = torch.empty(csr.num_rows, dtype=torch.long, device=x.device)
        position[field.nodes] = torch.arange(field.nodes.numel(), device=x.device)
    graph_ids = 2 * field.sizes[-1] >= csr.num_rows
    return LayerwiseInput(x, field, csr, edge_index, edge_weight, position, graph_ids)


def _gcn_norm(inputs: LayerwiseInput, conv: nn.Module,
              dtype: torch.dtype) -> tuple[Tensor | None, Tensor | None]:
    r"""``(norm, loop_norm)`` of :func:`~graphmoe.models.conv.gcn_conv.gcn_norm` on the whole
    graph (degrees of the full graph), as :class:`GCNConv` computes it: unweighted graphs reuse
    the normalisation kept with the cached graph (one :math:`O(E)` pass per graph), and its
    CSR-order values are shared with the full-graph layers; weighted ones run ``gcn_norm`` at
    every call, as the layer does."""
    if not conv.normalize:  # plain weighted sum, existing self-loops included
        return inputs.edge_weight, None
    num_nodes = inputs.graph.num_rows
    if inputs.edge_weight is None:
        return cached_gcn_norm(inputs.edge_index, num_nodes, conv.improved,
                               conv.add_self_loops, dtype)
    return gcn_norm(inputs.edge_index, inputs.edge_weight, num_nodes, conv.improved,
                    conv.add_self_loops, dtype)


class _Rows(NamedTuple):
    """A layer's input ``source`` and ``x_index`` (node id -> row of ``source``; ``None``: the
    rows are node ids). Without ``x_index`` the targets are gathered by id, with it they are
    the first rows (targets are a prefix of the field's nodes)."""

    source: Tensor
    x_index: Tensor | None = None

    def target(self, t: Tensor, targets: Tensor) -> Tensor:
        """The rows of ``targets`` in ``t`` (indexed like ``source``)."""
        if self.x_index is None:
            return select_rows(t, targets)
        return head_rows(t, targets.numel())

    def map_target(self, fn: Callable[[Tensor], Tensor], targets: Tensor,
                   out_channels: int) -> Tensor:
        """``fn`` (row-wise, to ``out_channels``) on the targets: applied to every row first
        when that is cheaper than gathering wide rows (most rows, fewer channels out)."""
        if (self.x_index is None and 2 * targets.numel() >= self.source.size(0)
                and out_channels < self.source.size(1)):
            return self.target(fn(self.source), targets)
        return fn(self.target(self.source, targets))

    def aggregation_input(self, h: Tensor, nodes: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(h, x_index)`` to aggregate ``h`` (indexed like ``source``; its rows are those of
        ``nodes``) with. Narrow rows (one cache line or less) are scattered to node ids first:
        the product then reads each source row directly instead of through a random read of
        ``x_index``, which costs more than the row itself at that width."""
        if self.x_index is None or h.size(1) * h.element_size() > 64:
            return h, self.x_index
        by_id = h.new_empty(self.x_index.numel(), h.size(1))
        return by_id.index_copy_(0, nodes[:h.size(0)], h), None


def _gcn_layer(conv: nn.Module, x: _Rows, inputs: LayerwiseInput, targets: Tensor,
               norm: tuple) -> Tensor:
    """``GCNConv.forward`` on the rows ``targets``, with the operations of ``gcn_propagate`` in
    the same order and the linear map on the same side (:meth:`GCNConv.aggregates_first`: then
    only on the target rows)."""
    weight, loop_norm = norm
    first = conv.aggregates_first(x.source)
    h, x_index = x.aggregation_input(x.source if first else conv.lin(x.source),
                                     inputs.field.nodes)
    out = aggregate_rows(h, inputs.graph, targets, weight, "sum", x_index,
                         self_weight=loop_norm)  # as gcn_propagate
    if first:
        out = conv.lin(out)
    return out if conv.bias is None else out.add_(conv.bias)


def _sage_layer(conv: nn.Module, x: _Rows, inputs: LayerwiseInput, targets: Tensor) -> Tensor:
    """``SAGEConv.forward`` on the rows ``targets`` (``project``, root weight, normalize): the
    neighbour map before the aggregation when it narrows the features (sum, mean), after it
    otherwise."""
    lin, reduce, out_channels = conv.lin_l, conv.reduce, conv.out_channels
    project = getattr(conv, "lin", None)
    h = x.source if project is None else project(x.source).relu()
    sparse = h.layout != torch.strided
    nodes = inputs.field.nodes
    if reduce != "max" and (sparse or out_channels < h.size(1)):
        h, x_index = x.aggregation_input(F.linear(h, lin.weight), nodes)
        out = aggregate_rows(h, inputs.graph, targets, inputs.edge_weight, reduce, x_index)
        out = out if lin.bias is None else out.add_(lin.bias)
    else:
        h, x_index = x.aggregation_input(h.to_dense() if sparse else h, nodes)
        out = lin(aggregate_rows(h, inputs.graph, targets, inputs.edge_weight, reduce, x_index))
    if conv.lin_r is not None:
        out = out + x.map_target(conv.lin_r, targets, out_channels)
    return F.normalize(out, p=2.0, dim=-1) if conv.normalize else out


def _conv_layer(conv: nn.Module, x: _Rows, inputs: LayerwiseInput, targets: Tensor,
                norms: dict) -> Tensor:
    if type(conv) is GCNConv:
        key = (conv.normalize, conv.add_self_loops, conv.improved)
        if key not in norms:
            norms[key] = _gcn_norm(inputs, conv, x.source.dtype)
        return _gcn_layer(conv, x, inputs, targets, norms[key])
    return _sage_layer(conv, x, inputs, targets)


def layerwise_rows(model: nn.Module, inputs: LayerwiseInput) -> Tensor:
    r"""``model``'s outputs on the field's seeds, layer :math:`l` evaluated only on the rows
    of :math:`V_{L-l-1}` (see :class:`LayerwiseInput`), in seed (node) order.

    Follows :meth:`graphmoe.models.basic_gnn.BasicGNN.forward` (residual, norm, activation,
    dropout, jumping knowledge) with every node-wise operation applied to the rows computed;
    :func:`supports_layerwise` must hold and the model be in eval mode. ``inputs.x`` may be a
    ``torch.sparse_csr`` tensor (its rows are gathered with
    :func:`graphmoe.ops.aggregate.select_rows`).
    """
    num_layers, jk = model.num_layers, model.jk_mode
    nodes, sizes = inputs.field.nodes, inputs.field.sizes
    x = (_Rows(inputs.x) if inputs.graph_ids
         else _Rows(select_rows(inputs.x, nodes), inputs.position))
    xs, norms = [], {}
    for i in range(num_layers):
        targets = nodes[:sizes[num_layers - i - 1]]
        h = _conv_layer(model.convs[i], x, inputs, targets, norms)
        if model.residual:
            h = h + x.map_target(model.skips[i], targets, h.size(1))
        if i < num_layers - 1 or jk is not None:
            h = model.norms[i](h)
            if model.act is not None:
                h = model.act(h)
            h = model.dropout(h)
            xs.append(h)
        x = _Rows(h, inputs.position)
    if jk is None:
        return x.source
    seeds = sizes[0]
    if jk == "cat":
        out = torch.cat([h[:seeds] for h in xs], dim=-1)
    elif jk == "max":
        out = torch.stack([h[:seeds] for h in xs], dim=-1).amax(dim=-1)
    else:  # "last"
        out = x.source
    return model.lin(out)
