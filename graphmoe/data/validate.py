"""Sanity checks run on every loaded graph (:func:`validate_graph`)."""
from __future__ import annotations

import torch
from torch_geometric.data import Data

from .info import METRICS

__all__ = ["validate_graph"]

_MASKS = ("train_mask", "val_mask", "test_mask")


def _name(data: Data) -> str:
    name = getattr(data, "name", None)
    return f"graph {name!r}" if isinstance(name, str) else "graph"


def _check_features(data: Data, what: str) -> int:
    x = data.x
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{what}: data.x must be a 2-D feature tensor [num_nodes, num_features], "
                         f"got {None if x is None else tuple(x.shape)}")
    if x.size(0) == 0:
        raise ValueError(f"{what}: the graph is empty (data.x has 0 rows)")
    if not x.is_floating_point():
        raise ValueError(f"{what}: data.x must be a floating point tensor, got {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x.sum())):  # cheap check; exact count on failure
        bad = int((~torch.isfinite(x)).sum())
    else:
        bad = 0
    if bad:
        raise ValueError(f"{what}: data.x contains {bad} NaN or infinite value(s)")
    return x.size(0)


def _check_edges(data: Data, num_nodes: int, what: str) -> None:
    ei = data.edge_index
    if not isinstance(ei, torch.Tensor) or ei.dim() != 2 or ei.size(0) != 2:
        raise ValueError(f"{what}: data.edge_index must have shape [2, num_edges], "
                         f"got {None if ei is None else tuple(ei.shape)}")
    if ei.dtype != torch.long:
        raise ValueError(f"{what}: data.edge_index must be torch.long, got {ei.dtype}")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= num_nodes):
        raise ValueError(f"{what}: data.edge_index holds node indices in "
                         f"[{int(ei.min())}, {int(ei.max())}] but the graph has {num_nodes} "
                         f"nodes (valid indices 0..{num_nodes - 1})")


def _check_labels(data: Data, num_nodes: int, what: str) -> None:
    y = data.y
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.numel() != num_nodes:
        raise ValueError(f"{what}: data.y must have shape [{num_nodes}] (one label per node), "
                         f"got {None if y is None else tuple(y.shape)}")
    if y.dtype != torch.long:
        raise ValueError(f"{what}: data.y must be torch.long class indices, got {y.dtype}")
    num_classes = getattr(data, "num_classes", None)
    labelled = y[y >= 0]
    if num_classes is not None and labelled.numel() and int(labelled.max()) >= int(num_classes):
        raise ValueError(f"{what}: data.y holds label {int(labelled.max())} but "
                         f"num_classes={int(num_classes)}")
    if int(y.min()) < -1:
        raise ValueError(f"{what}: data.y holds label {int(y.min())}; labels must be class "
                         f"indices >= 0 (or -1 for an unlabelled node)")


def _check_masks(data: Data, num_nodes: int, what: str) -> None:
    for key in _MASKS:
        mask = getattr(data, key, None)
        if mask is None:
            continue
        if mask.dtype != torch.bool or tuple(mask.shape) != (num_nodes,):
            raise ValueError(f"{what}: data.{key} must be a bool tensor of shape [{num_nodes}], "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if bool((data.y[mask] < 0).any()):
            raise ValueError(f"{what}: data.{key} selects {int((data.y[mask] < 0).sum())} "
                             f"unlabelled node(s) (label -1)")
    train, test = getattr(data, "train_mask", None), getattr(data, "test_mask", None)
    if train is not None and test is not None and bool((train & test).any()):
        raise ValueError(f"{what}: {int((train & test).sum())} node(s) are in both "
                         f"data.train_mask and data.test_mask")


def validate_graph(data: Data) -> Data:
    """Check a node-classification graph and return it unchanged.

    Raises a one-sentence :class:`ValueError` when features are missing, not
    floating point or not finite, when ``edge_index`` is malformed or points
    outside ``[0, num_nodes)``, when ``y`` does not have one class index per node
    within ``num_classes``, when a mask has the wrong dtype/shape or selects an
    unlabelled node, when train and test overlap, or when ``data.metric`` is unknown.
    """
    what = _name(data)
    num_nodes = _check_features(data, what)
    _check_edges(data, num_nodes, what)
    _check_labels(data, num_nodes, what)
    _check_masks(data, num_nodes, what)
    metric = getattr(data, "metric", None)
    if metric is not None and metric not in METRICS:
        raise ValueError(f"{what}: data.metric must be one of {METRICS}, got {metric!r}")
    return data
