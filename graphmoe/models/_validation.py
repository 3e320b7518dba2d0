"""Input checks shared by the backbones: clear ``ValueError``s instead of deep shape errors."""
from __future__ import annotations

import torch
from torch import Tensor

from graphmoe.ops.csr import has_csr

SPARSE_FEATURE_MODELS = "MLP, GCN and GraphSAGE"
"""The backbones that accept sparse node features (see :func:`check_sparse_features`)."""


def check_features(x: Tensor, in_channels: int, owner: str, sparse: bool = False) -> None:
    """Require ``x`` to be a 2-D ``[num_nodes, in_channels]`` tensor; a ``torch.sparse_csr``
    one only if ``sparse`` (the owner supports it, see :func:`check_sparse_features`)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner} expects x to be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        check_sparse_features(x, owner, sparse)
    if x.dim() != 2:
        raise ValueError(
            f"{owner} expects 2-D node features x of shape [num_nodes, in_channels={in_channels}], "
            f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
        )
    if x.size(-1) != in_channels:
        raise ValueError(
            f"{owner} was built with in_channels={in_channels} but x has {x.size(-1)} features "
            f"(x.shape={tuple(x.shape)})"
        )


def check_sparse_features(x: Tensor, owner: str, supported: bool = True) -> None:
    """Require a sparse ``x`` to be a 2-D float ``torch.sparse_csr`` tensor without grad, and
    the ``owner`` to support it (``supported``; only MLP, GCN and GraphSAGE do). Checks layout,
    shape and the dtype of ``x.values()``, no per-entry work."""
    if not supported:
        raise ValueError(f"{owner} does not accept sparse node features (x.layout={x.layout}): "
                         f"sparse features are supported by {SPARSE_FEATURE_MODELS} only; "
                         f"pass x.to_dense()")
    if x.layout != torch.sparse_csr or x.dim() != 2:
        raise ValueError(f"{owner} expects sparse node features as a 2-D torch.sparse_csr "
                         f"tensor (x.to_sparse_csr()), got a {x.dim()}-D {x.layout} tensor of "
                         f"shape {tuple(x.shape)}")
    if not x.values().is_floating_point():
        raise ValueError(f"{owner} expects floating point node features, got {x.dtype}")
    if x.requires_grad:
        raise ValueError(f"{owner} expects sparse node features that do not require grad "
                         f"(gradients flow to the weights only); pass x.detach()")


def check_graph(
    edge_index: Tensor | None,
    edge_weight: Tensor | None,
    num_nodes: int,
    owner: str,
) -> None:
    """Require a ``[2, num_edges]`` integer ``edge_index`` within ``[0, num_nodes)``.

    The range check is one pass (``aminmax``; a single device sync on CUDA), skipped for a
    graph whose CSR is cached for ``num_nodes`` (:func:`graphmoe.ops.has_csr`: checked when it
    was built, and the cache drops it when ``edge_index`` changes in place).
    """
    if edge_index is None:
        raise ValueError(f"{owner} needs an edge_index of shape [2, num_edges], got None")
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"{owner} expects edge_index to be a torch.Tensor, got {type(edge_index).__name__}"
        )
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"{owner} expects edge_index of shape [2, num_edges], got {tuple(edge_index.shape)}"
        )
    if edge_index.dtype != torch.long:
        raise TypeError(f"{owner} expects edge_index of dtype torch.long, got {edge_index.dtype}")
    if edge_index.numel() > 0 and not has_csr(edge_index, num_nodes):
        lo, hi = (int(v) for v in torch.aminmax(edge_index))
        if lo < 0 or hi >= num_nodes:
            raise ValueError(
                f"{owner} got edge_index with node indices in [{lo}, {hi}] but x has "
                f"{num_nodes} nodes (valid indices are 0..{num_nodes - 1})"
            )
    if edge_weight is not None:
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(
                f"{owner} expects edge_weight of shape [num_edges={edge_index.size(1)}], "
                f"got {tuple(edge_weight.shape)}"
            )

