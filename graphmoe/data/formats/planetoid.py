"""Planetoid raw files ``ind.<prefix>.{x,tx,allx,y,ty,ally,graph,test.index}`` (Yang et al. 2016)."""
from __future__ import annotations

from pathlib import Path

from torch_geometric.data import Data
from torch_geometric.io import read_planetoid_data

__all__ = ["process_planetoid"]


def process_planetoid(folder: Path, required: list[Path], optional: list[Path | None], *,
                      prefix: str) -> Data:
    """Read a Planetoid dataset with its public split (as PyG's ``Planetoid``)."""
    data = read_planetoid_data(str(folder), prefix)
    return Data(x=data.x, y=data.y, edge_index=data.edge_index,
                train_mask=data.train_mask, val_mask=data.val_mask, test_mask=data.test_mask)
