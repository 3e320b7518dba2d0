"""SEAL / WLNM link-prediction networks (Zhang & Chen, KDD 2017 / NeurIPS 2018).

``<Name>.mat`` holds a symmetric sparse adjacency ``net`` (USAir, NS, PB, Yeast, Celegans,
Power, Router, Ecoli in ``muhanzhang/SEAL``, ``Python/data/``). The networks have no node
attributes, so the loader builds *structural* features, chosen by the ``features`` option:

* ``"onehot"`` (default): the identity matrix, one column per node. A first linear layer on
  it is a free embedding per node, what SEAL's and the TC paper's GNN baselines train on
  featureless graphs (``nn.Embedding``). Memory is ``N^2`` floats (98 MB for Router's 5,022
  nodes); it is cached sparse.
* ``"random"``: ``feature_dim`` seeded standard-normal columns (fixed, not trained): cheap,
  and still tells nodes apart.
* ``"constant"``: one column of ones (every node alike; a GNN then only sees structure).

Features never depend on the edges, so they leak nothing about held-out links. Self-loops are
dropped and the adjacency is made binary and symmetric.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce

__all__ = ["FEATURE_KINDS", "process_seal_mat", "structural_features"]

#: Values of the ``features`` option of featureless link datasets.
FEATURE_KINDS = ("onehot", "random", "constant")


def structural_features(num_nodes: int, kind: str = "onehot", *, feature_dim: int = 64,
                        seed: int = 0) -> torch.Tensor:
    """Node features for a graph without attributes (see the module docstring)."""
    if kind == "onehot":
        return torch.eye(num_nodes)
    if kind == "random":
        if not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim < 1:
            raise ValueError(f"feature_dim must be a positive int, got {feature_dim!r}")
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn(num_nodes, feature_dim, generator=gen)
    if kind == "constant":
        return torch.ones(num_nodes, 1)
    raise ValueError(f"features must be one of {FEATURE_KINDS}, got {kind!r}")


def process_seal_mat(folder: Path, required: list[Path], optional: list[Path | None], *,
                     features: str = "onehot", feature_dim: int = 64, feature_seed: int = 0,
                     ) -> Data:
    """Read ``net`` from a SEAL ``.mat`` file as an undirected graph with structural features."""
    path = required[0]
    mat = scipy.io.loadmat(str(path))
    if "net" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path} has no 'net' adjacency (keys: {keys}); expected a SEAL .mat file")
    net = sp.coo_matrix(mat["net"])
    num_nodes = net.shape[0]
    if net.shape[0] != net.shape[1]:
        raise ValueError(f"{path}: 'net' must be square, got shape {net.shape}")
    keep = net.row != net.col
    row, col = net.row[keep].astype(np.int64), net.col[keep].astype(np.int64)
    # binary + symmetric: keep each unordered pair once, then list both directions
    lo, hi = np.minimum(row, col), np.maximum(row, col)
    pairs = np.unique(lo * num_nodes + hi)
    lo, hi = pairs // num_nodes, pairs % num_nodes
    edge_index = torch.from_numpy(np.stack([np.concatenate([lo, hi]), np.concatenate([hi, lo])]))
    edge_index = coalesce(edge_index, num_nodes=num_nodes)
    x = structural_features(num_nodes, features, feature_dim=feature_dim, seed=feature_seed)
    return Data(x=x, edge_index=edge_index, num_nodes=num_nodes)
