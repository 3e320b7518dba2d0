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
found by frontier expansion on the graph's cached CSR (:func:`expand`: per hop, the sources of
the frontier's in-edges marked by :func:`graphmoe.ops.sources_of`; no ``k_hop_subgraph``), its
nodes sorted by distance so that every :math:`V_k` is a prefix. Each layer computes its rows with
:func:`graphmoe.ops.aggregate_rows` straight from the graph's CSR (the first layer reading the
graph's features in place, later ones the previous layer's rows through a node-to-row map): no
sub-CSR, no sort, no COO. GCN's normalisation uses the full graph's degrees (no compensation
edges).

This module holds the entry points (:func:`strong_on_nodes`, :func:`rows_of`); the receptive
field and subgraph extraction are in :mod:`graphmoe.models.mowst_receptive`, the layer-wise
GCN/SAGE evaluation in :mod:`graphmoe.models.mowst_layerwise`. Their public names are
re-exported here.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from graphmoe.models.mowst_layerwise import (
    LayerwiseInput,
    layerwise_input,
    layerwise_rows,
    supports_layerwise,
)
from graphmoe.models.mowst_receptive import (
    Field,
    Subgraph,
    _has_batch_norm_in_training,
    expand,
    needs_source_degree,
    receptive_field,
    receptive_subgraph,
    run_on_subgraph,
)
from graphmoe.ops import to_csr
from graphmoe.ops.aggregate import select_rows

__all__ = [
    "Field",
    "LayerwiseInput",
    "Subgraph",
    "expand",
    "layerwise_input",
    "layerwise_rows",
    "needs_source_degree",
    "receptive_field",
    "receptive_subgraph",
    "rows_of",
    "run_on_subgraph",
    "strong_on_nodes",
    "supports_layerwise",
]


# -- the strong expert on the routed nodes -----------------------------------------------------


def _full_graph_stats(num_nodes: int, num_edges: int, routed: int, **extra: float) -> dict:
    return {"node_fraction": 1.0, "edge_fraction": 1.0, "nodes_touched": float(num_nodes),
            "edges_touched": float(num_edges), "compensation_edges": 0.0,
            "routed_strong": float(routed), "layerwise": 0.0, "full_graph": 1.0, **extra}


def _layerwise_stats(field: Field, num_nodes: int, num_edges: int) -> dict:
    """Fractions of the graph touched; ``aggregation_fraction``: edges aggregated over all
    layers, over ``num_layers * num_edges`` (what full inference aggregates)."""
    sizes, in_edges = field.sizes, field.in_edges
    read = in_edges[-1] if in_edges else 0
    return {"node_fraction": sizes[-1] / max(num_nodes, 1),
            "edge_fraction": read / max(num_edges, 1),
            "aggregation_fraction": sum(in_edges) / max(len(in_edges) * num_edges, 1),
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
        out_channels = int(getattr(strong, "out_channels", 0) or 0)
        return torch.empty(0, out_channels, dtype=x.dtype, device=x.device), empty
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
        inputs = layerwise_input(x, edge_index, csr, edge_weight, field)
        return layerwise_rows(strong, inputs), _layerwise_stats(field, num_nodes, num_edges)
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
    the randomness of dropout. ``x`` may be a ``torch.sparse_csr`` tensor for models that accept
    one (MLP, GCN, GraphSAGE).
    """
    if num_hops is None or _has_batch_norm_in_training(model):
        return model(x, edge_index, edge_weight)[nodes]
    if num_hops == 0:
        return model(select_rows(x, nodes), None, None)
    if subgraph is None:
        subgraph = receptive_subgraph(x, edge_index, edge_weight, nodes, num_hops,
                                      needs_source_degree(model))
    return run_on_subgraph(model, subgraph)
