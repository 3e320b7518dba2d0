r"""Approximated Topological Concentration (ATC): random projections, linear in the edges.

From Wang et al., "A Topological Perspective on Demystifying GNN-Based Link Prediction
Performance", ICLR 2024 (https://arxiv.org/abs/2310.04612), Section 5.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphmoe.metrics._graph import (
    adjacency,
    check_edge_index,
    check_K,
    infer_num_nodes,
    to_tensor,
)


def approximate_tc(
    train_edge_index: Tensor,
    split_edge_index: Tensor | None = None,
    num_nodes: int | None = None,
    K: int = 1,
    dim: int = 64,
    seed: int = 0,
    symmetrize: bool = False,
) -> Tensor:
    r"""Approximated Topological Concentration of every node.

    Random Gaussian vectors :math:`R \in \mathbb{R}^{N \times \mathrm{dim}}` (seeded) are
    propagated on the training graph with :math:`\hat{A} = D^{-1}(A_{\mathrm{train}} + I)`:

    .. math::
        Z = \frac{1}{K} \sum_{k=1}^{K} \hat{A}^k R, \qquad
        \mathrm{ATC}_X(i) = \frac{1}{|N_X(i)|} \sum_{j \in N_X(i)} \cos(Z_i, Z_j),

    and :math:`\mathrm{ATC}_X(i) = 0` where :math:`i` has no neighbour in the split :math:`X`.
    Two nodes whose :math:`K`-hop computation trees coincide get the same :math:`Z`, hence
    cosine 1. Cost: :math:`O(K \cdot E \cdot \mathrm{dim})` time, :math:`O(N \cdot \mathrm{dim})`
    memory. CPU inputs run on scipy; inputs on another device (CUDA) run there with torch's
    sparse CSR products. :math:`R` comes from a CPU generator, so results agree across devices.

    Args:
        train_edge_index: training edges ``[2, E]``, both directions of every undirected edge.
        split_edge_index: edges of the split (both directions); default: the training edges.
        num_nodes: number of nodes (default: ``1 +`` the largest index in either edge index).
        K: number of propagation steps, ``>= 1``.
        dim: dimension of the random vectors.
        seed: seed of the random vectors (the result is deterministic given it).
        symmetrize: add missing reverse edges instead of raising a :class:`ValueError`.

    Returns:
        ``[num_nodes]`` tensor of the default dtype.
    """
    K = check_K(K)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an int >= 1, got {dim!r}")
    train = check_edge_index(train_edge_index, "train_edge_index")
    if train.shape[1] == 0:
        raise ValueError("train_edge_index has no edges")
    split = train
    if split_edge_index is not None:
        split = check_edge_index(split_edge_index, "split_edge_index")
    if split.shape[1] == 0:
        raise ValueError("split_edge_index has no edges")
    num_nodes = infer_num_nodes(num_nodes, train_edge_index=train, split_edge_index=split)
    adj = adjacency(train, num_nodes, "train_edge_index", symmetrize)
    adj = (adj + sp.identity(num_nodes, format="csr")).tocsr()
    adj.data[:] = 1.0  # a self-loop already in A is kept once
    deg = np.diff(adj.indptr)
    adj.data /= np.repeat(deg, deg)
    split_adj = adjacency(split, num_nodes, "split_edge_index", symmetrize)
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(num_nodes, dim, generator=gen, dtype=torch.float32)
    device = train_edge_index.device
    if device.type == "cpu":
        # scipy's single-threaded kernels: as fast as torch's on few cores, and no thread pool
        # to wake (its spinning workers cost more than the work on small or busy machines)
        total = _cosine_sums(adj.astype(np.float32), split_adj.astype(np.float32),
                                 noise.numpy(), K)
    else:
        total = _cosine_sums(_torch_csr(adj, device), _torch_csr(split_adj, device),
                                 noise.to(device), K).cpu().numpy()
    count = np.diff(split_adj.indptr)
    out = np.divide(total, count, out=np.zeros(num_nodes), where=count > 0)
    return to_tensor(out, device)


def _torch_csr(adj: sp.csr_matrix, device: torch.device) -> Tensor:
    """A scipy CSR matrix as a float32 torch CSR tensor on ``device``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(adj.indptr.astype(np.int64)),
            torch.from_numpy(adj.indices.astype(np.int64)),
            torch.from_numpy(adj.data.astype(np.float32)),
            size=adj.shape,
            check_invariants=False,
        ).to(device)


def _cosine_sums(adj_hat, split_adj, noise, K: int):
    r""":math:`\sum_{j \in N_X(i)} \cos(Z_i, Z_j)` for every node, with
    :math:`Z \propto \sum_{k=1}^K \hat{A}^k R` (the :math:`1/K` does not change a cosine).

    The sum over the split neighbours is one product with unit rows :math:`\hat{z}`:
    :math:`\sum_j \hat{z}_i^\top \hat{z}_j = \hat{z}_i^\top (A_X \hat{Z})_i`. Works on
    scipy/numpy and on torch (sparse CSR) operands alike.
    """
    h, z = noise, 0.0
    for _ in range(K):
        h = adj_hat @ h
        z = z + h
    z = z / ((z * z).sum(-1) ** 0.5 + 1e-20)[:, None]
    return (z * (split_adj @ z)).sum(-1)
