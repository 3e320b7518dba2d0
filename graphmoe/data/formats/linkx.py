"""LINKX raw files (Lim et al., NeurIPS 2021): Facebook100 ``.mat`` and MUSAE Twitch.

Facebook100: ``A`` is the sparse adjacency and ``local_info`` has the columns
(student/faculty, gender, major, second major, dorm, year, high school). As in
LINKX's ``load_fb100_dataset``, the label is ``gender - 1`` (``-1``: missing, left
out of every split) and the features are the other columns binarised one by one
with scikit-learn's ``label_binarize`` semantics (a two-valued column gives one
indicator column, a constant column one zero column).

Twitch: as LINKX's ``load_twitch``: node ``i`` is the row with ``new_id == i``, the
label is the ``mature`` flag and features are the bag of ``features.json`` ids
with all-zero columns dropped. LINKX trains on the undirected graph (its default
``to_undirected``), and so does this loader unless ``undirected=False``.
Provided split files (``splits/*-splits.npy``: pickled ``train``/``valid``/``test``
index lists) are used when present.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, to_undirected

__all__ = ["process_fb100", "process_twitch", "read_index_splits"]


def read_index_splits(path: Path, num_nodes: int) -> dict[str, torch.Tensor]:
    """LINKX split file -> ``{"train"|"val"|"test": bool [N, S]}``."""
    splits = np.load(path, allow_pickle=True)
    out = {name: torch.zeros(num_nodes, len(splits), dtype=torch.bool)
           for name in ("train", "val", "test")}
    for i, split in enumerate(splits):
        for name, key in (("train", "train"), ("val", "valid"), ("test", "test")):
            out[name][torch.as_tensor(np.asarray(split[key], dtype=np.int64)), i] = True
    return out


def _one_hot_columns(columns: list[np.ndarray]) -> torch.Tensor:
    """Binarise each column like ``label_binarize`` and concatenate the results."""
    rows, cols, offset = [], [], 0
    for column in columns:
        classes, inverse = np.unique(column, return_inverse=True)
        if len(classes) == 2:  # one indicator column for the larger value
            hit = np.flatnonzero(inverse == 1)
            rows.append(hit), cols.append(np.full(len(hit), offset))
        elif len(classes) > 2:
            rows.append(np.arange(len(column))), cols.append(offset + inverse)
        offset += 1 if len(classes) <= 2 else len(classes)
    x = torch.zeros(len(columns[0]), offset)
    x[torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols))] = 1.0
    return x


def _finish(x: torch.Tensor, y: torch.Tensor, edge_index: torch.Tensor, undirected: bool,
            split_file: Path | None) -> Data:
    num_nodes = x.size(0)
    if undirected:
        edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    else:
        edge_index = coalesce(edge_index, num_nodes=num_nodes)
    data = Data(x=x, y=y, edge_index=edge_index)
    if split_file is not None:
        for name, mask in read_index_splits(split_file, num_nodes).items():
            data[f"{name}_mask"] = mask
    return data


def process_fb100(folder: Path, required: list[Path], optional: list[Path | None], *,
                  undirected: bool = True) -> Data:
    """Read one Facebook100 ``.mat`` (gender labels, LINKX one-hot features)."""
    from scipy.io import loadmat

    mat = loadmat(required[0])
    adj = mat["A"].tocoo()
    edge_index = torch.from_numpy(np.stack([adj.row, adj.col]).astype(np.int64))
    info = mat["local_info"].astype(np.int64)
    y = torch.from_numpy(info[:, 1] - 1)
    columns = [info[:, 0]] + [info[:, i] for i in range(2, info.shape[1])]
    x = _one_hot_columns(columns)
    return _finish(x, y, edge_index, undirected, optional[0] if optional else None)


def process_twitch(folder: Path, required: list[Path], optional: list[Path | None],
                   *, lang: str = "DE", undirected: bool = True) -> Data:
    """Read one MUSAE Twitch country graph as LINKX does."""
    edges_path, features_path, target_path = required
    with open(target_path, newline="") as f:
        rows = list(csv.DictReader(f))
    num_nodes = len({int(r["new_id"]) for r in rows})
    y = torch.full((num_nodes,), -1, dtype=torch.long)
    for r in rows:
        y[int(r["new_id"])] = int(r["mature"] == "True")
    edges = np.loadtxt(edges_path, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
    edge_index = torch.from_numpy(edges).t().contiguous()
    x = torch.zeros(num_nodes, 3170)
    for node, feats in json.loads(features_path.read_text()).items():
        if int(node) < num_nodes:
            x[int(node), torch.tensor(feats, dtype=torch.long)] = 1.0
    x = x[:, x.sum(dim=0) != 0]
    return _finish(x, y, edge_index, undirected, optional[0] if optional else None)
