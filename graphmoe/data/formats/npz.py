"""gnn-benchmark ``.npz`` graphs (Shchur et al. 2018), plain or inside a DGL ``.zip``.

The npz holds a CSR adjacency (``adj_*``), CSR attributes (``attr_*``) and
``labels``. As PyG's ``Amazon``/``Coauthor`` do, self-loops are removed, edges are
made undirected and attributes binarised. A ``.zip`` (DGL's packaging) is read in
memory: nothing is extracted next to it.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from torch_geometric.data import Data
from torch_geometric.io.npz import parse_npz

__all__ = ["process_npz", "read_npz_bytes"]


def read_npz_bytes(path: Path) -> bytes:
    """Return the bytes of ``path`` or, for a zip, of the single ``.npz`` inside it."""
    if path.suffix != ".zip":
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if m.endswith(".npz")]
        if len(members) != 1:
            raise ValueError(f"Expected exactly one .npz inside {path}, found {members}")
        return archive.read(members[0])


def process_npz(folder: Path, required: list[Path], optional: list[Path | None], *,
                undirected: bool = True) -> Data:
    """Read a gnn-benchmark npz (or a zip holding one) into a ``Data`` without masks."""
    with np.load(io.BytesIO(read_npz_bytes(required[0]))) as f:
        data = parse_npz(f, to_undirected=undirected)
    return Data(x=data.x, y=data.y, edge_index=data.edge_index)
