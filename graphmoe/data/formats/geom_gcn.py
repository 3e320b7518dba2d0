"""Geom-GCN raw files (Pei et al., ICLR 2020): WebKB (Cornell, Texas, Wisconsin) and Film.

``out1_node_feature_label.txt`` is a TSV ``node_id, features, label`` with a
header; features are either a dense comma-separated 0/1 vector (WebKB) or the
comma-separated indices of the non-zero entries (Film, 932 features).
``out1_graph_edges.txt`` is a TSV edge list with a header. The 10 split files
``splits/<name>_split_0.6_0.2_<i>.npz`` hold ``train_mask``/``val_mask``/``test_mask``.
As PyG's ``WebKB``/``Actor``, edges keep their stored direction (coalesced) unless
``undirected=True``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, to_undirected

__all__ = ["process_geom_gcn"]


def _read_nodes(path: Path, num_features: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    lines = path.read_text().strip().split("\n")[1:]
    rows = [line.split("\t") for line in lines]
    ids = torch.tensor([int(r[0]) for r in rows])
    y = torch.empty(len(rows), dtype=torch.long)
    y[ids] = torch.tensor([int(r[2]) for r in rows])
    if num_features is None:  # dense 0/1 vectors
        x = torch.empty(len(rows), len(rows[0][1].split(",")))
        x[ids] = torch.tensor([[float(v) for v in r[1].split(",")] for r in rows])
        return x, y
    x = torch.zeros(len(rows), num_features)
    for node, r in zip(ids.tolist(), rows):
        x[node, [int(v) for v in r[1].split(",")]] = 1.0
    return x, y


def _read_edges(path: Path) -> torch.Tensor:
    edges = np.loadtxt(path, dtype=np.int64, skiprows=1, ndmin=2)
    return torch.from_numpy(edges).t().contiguous()


def _read_splits(paths: list[Path]) -> dict[str, torch.Tensor]:
    out: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    for path in paths:
        with np.load(path) as f:
            for name in out:
                out[name].append(torch.from_numpy(f[f"{name}_mask"].astype(bool)))
    return {name: torch.stack(masks, dim=1) for name, masks in out.items()}


def process_geom_gcn(folder: Path, required: list[Path], optional: list[Path | None], *,
                     num_features: int | None = None, undirected: bool = False) -> Data:
    """Read a Geom-GCN dataset: node file, edge file, then the split files."""
    x, y = _read_nodes(required[0], num_features)
    edge_index = _read_edges(required[1])
    num_nodes = x.size(0)
    if undirected:
        edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    else:
        edge_index = coalesce(edge_index, num_nodes=num_nodes)
    masks = _read_splits(required[2:])
    return Data(x=x, y=y, edge_index=edge_index, train_mask=masks["train"],
                val_mask=masks["val"], test_mask=masks["test"])
