"""Input checks shared by the backbones: clear ``ValueError``s instead of deep shape errors."""
from __future__ import annotations

import torch
from torch import Tensor


def check_features(x: Tensor, in_channels: int, owner: str) -> None:
    """Require ``x`` to be a 2-D ``[num_nodes, in_channels]`` tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner} expects x to be a torch.Tensor, got {type(x).__name__}")
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


def check_graph(
    edge_index: Tensor | None,
    edge_weight: Tensor | None,
    num_nodes: int,
    owner: str,
) -> None:
    """Require a ``[2, num_edges]`` integer ``edge_index`` within ``[0, num_nodes)``.

    The range check reads one min and one max (a single device sync on CUDA).
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
    if edge_index.numel() > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
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

