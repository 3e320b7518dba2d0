"""Heterophilous graph ``.npz`` files of Platonov et al. (ICLR 2023).

Keys: ``node_features`` [N, F], ``node_labels`` [N], ``edges`` [E, 2] and
``train_masks``/``val_masks``/``test_masks`` [10, N]. As in the paper's code
(``dgl.to_bidirected``) and PyG's ``HeterophilousGraphDataset``, edges of the
undirected variants are symmetrised and de-duplicated; the ``*_directed``
variants keep the stored direction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, to_undirected

__all__ = ["process_heterophilous_npz"]


def _masks(f: np.lib.npyio.NpzFile, key: str) -> torch.Tensor:
    """``[S, N]`` masks in the file -> ``[N, S]`` bool tensor."""
    return torch.from_numpy(np.asarray(f[key], dtype=bool)).t().contiguous()


def process_heterophilous_npz(folder: Path, required: list[Path], optional: list[Path | None], *,
                              undirected: bool = True) -> Data:
    """Read one heterophilous-graphs npz with all its provided splits."""
    with np.load(required[0]) as f:
        x = torch.from_numpy(f["node_features"]).to(torch.float32)
        y = torch.from_numpy(f["node_labels"]).to(torch.long)
        edge_index = torch.from_numpy(f["edges"]).to(torch.long).t().contiguous()
        masks = {name: _masks(f, f"{name}_masks") for name in ("train", "val", "test")}
    num_nodes = x.size(0)
    if undirected:
        edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    else:
        edge_index = coalesce(edge_index, num_nodes=num_nodes)
    return Data(x=x, y=y, edge_index=edge_index, train_mask=masks["train"],
                val_mask=masks["val"], test_mask=masks["test"])
