r"""Topological Concentration (TC), exact, with sparse matrix products.

From Wang et al., "A Topological Perspective on Demystifying GNN-Based Link Prediction
Performance", ICLR 2024 (https://arxiv.org/abs/2310.04612), as its code
(``YuWVandy/Topo_LP_GNN``, ``cal_tc``) computes it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from torch import Tensor

from graphmoe.metrics._graph import (
    adjacency,
    check_edge_index,
    check_K,
    check_split,
    infer_num_nodes,
    row_counts,
    row_sums,
    to_tensor,
    triangles_per_node,
)

# Nonzeros of ``A_X[rows] @ S`` built per block; bounds the memory of the numerator.
_BLOCK_FLOPS = 1 << 23


class TopologicalConcentration:
    r"""Exact Topological Concentration of every node, for any edge split.

    On the training graph :math:`A` let :math:`m_i^k(v) = (A^k)_{iv}` be the number of walks of
    length :math:`k` from :math:`i` to :math:`v`, :math:`|m_i^k| = \sum_v m_i^k(v)` and
    :math:`\beta = 1 / \bar{d}` (mean training degree over all nodes). For a node :math:`i` and
    one of its neighbours :math:`j` in the split :math:`X` (train, validation or test edges),

    .. math::
        I_X(i, j) = \frac{\sum_{k_1, k_2 \le K} \beta^{k_1 + k_2 - 2}
            \sum_{v \in \mathrm{supp}\, m_i^{k_1} \cap\, \mathrm{supp}\, m_j^{k_2}} m_i^{k_1}(v)}
            {\sum_{k_1, k_2 \le K} \beta^{k_1 + k_2 - 2}
            \left(|m_i^{k_1}| - [X = \mathrm{train}, k_1 = k_2 = 1]\right)}

    and :math:`\mathrm{TC}_X(i) = \frac{1}{|N_X(i)|} \sum_{j \in N_X(i)} I_X(i, j)`; it is 0 where
    :math:`i` has no training or no split neighbour, and for :math:`X = \mathrm{train}` also where
    its training degree is 1. For :math:`K = 1` this is
    :math:`\mathrm{mean}_j |N_i \cap N_j| / (d_i - 1)` on the training split (the local clustering
    coefficient) and :math:`\mathrm{mean}_j |N_i \cap N_j| / d_i` on the others.

    The denominator does not depend on :math:`j`, so with :math:`M = \sum_k \beta^{k-1} A^k` and
    :math:`S = \sum_k \beta^{k-1} \mathrm{supp}(A^k)` every node is handled at once:

    .. math::
        \mathrm{TC}_X = \frac{\mathrm{rowsum}(M \odot (A_X S))}
            {d_X \odot \left((\textstyle\sum_k \beta^{k-1} A^k \mathbf{1})
            \sum_k \beta^{k-1} - [X = \mathrm{train}]\right)}

    The walk matrices are built once in the constructor; each call costs one blocked sparse
    product. Memory grows with the number of :math:`K`-hop pairs (:math:`O(N \bar{d}^K)`).

    Args:
        train_edge_index: training edges ``[2, E]``, both directions of every undirected edge.
        num_nodes: number of nodes (default: ``1 +`` the largest index).
        K: walk length, ``>= 1``.
        beta: walk decay (default ``1 / mean training degree``, as the paper).
        symmetrize: add missing reverse edges instead of raising a :class:`ValueError`.
    """

    def __init__(
        self,
        train_edge_index: Tensor,
        num_nodes: int | None = None,
        K: int = 1,
        beta: float | None = None,
        symmetrize: bool = False,
    ) -> None:
        self.K = check_K(K)
        train = check_edge_index(train_edge_index, "train_edge_index")
        if train.shape[1] == 0:
            raise ValueError("train_edge_index has no edges")
        self.num_nodes = infer_num_nodes(num_nodes, train_edge_index=train)
        self.symmetrize = symmetrize
        self._device = train_edge_index.device
        self.adj = adjacency(train, self.num_nodes, "train_edge_index", symmetrize)
        self.deg = row_counts(self.adj).astype(np.float64)
        self.beta = float(self.num_nodes / self.adj.nnz) if beta is None else float(beta)
        self.M, self.S, walk_total = _walk_matrices(self.adj, self.K, self.beta)
        coef_sum = sum(self.beta**k for k in range(self.K))
        self._norm = walk_total * coef_sum

    def __call__(self, split_edge_index: Tensor | None = None, split: str = "train") -> Tensor:
        r"""TC of every node for the split ``split`` with edges ``split_edge_index``.

        ``split_edge_index`` defaults to the training edges (``split="train"`` only). With
        ``split="train"`` the pair :math:`(i, j)` itself is excluded from the normaliser.
        Returns a ``[num_nodes]`` tensor of the default dtype.
        """
        split = check_split(split)
        adj_x = self._split_adjacency(split_edge_index, split)
        deg_x = row_counts(adj_x).astype(np.float64)
        num = self._numerator(adj_x, split)
        norm = self._norm - (1.0 if split == "train" else 0.0)
        valid = (deg_x > 0) & (self.deg > (1 if split == "train" else 0)) & (norm > 0)
        out = np.zeros(self.num_nodes)
        out[valid] = num[valid] / (deg_x[valid] * norm[valid])
        return to_tensor(out, self._device)

    def _numerator(self, adj_x: sp.csr_matrix, split: str) -> np.ndarray:
        same_as_train = adj_x is self.adj or (
            np.array_equal(adj_x.indptr, self.adj.indptr)
            and np.array_equal(adj_x.indices, self.adj.indices)
        )
        if self.K == 1 and split == "train" and same_as_train and not self.adj.diagonal().any():
            # sum_j |N_i & N_j| over the training neighbours j is twice i's triangle count
            return 2.0 * triangles_per_node(self.adj)
        return _numerator(self.M, self.S, adj_x)

    def _split_adjacency(self, split_edge_index: Tensor | None, split: str) -> sp.csr_matrix:
        if split_edge_index is None:
            if split != "train":
                raise ValueError(f"split_edge_index is required for split={split!r}")
            return self.adj
        edges = check_edge_index(split_edge_index, "split_edge_index")
        if edges.shape[1] == 0:
            raise ValueError(f"split_edge_index (split={split!r}) has no edges")
        infer_num_nodes(self.num_nodes, split_edge_index=edges)
        return adjacency(edges, self.num_nodes, "split_edge_index", self.symmetrize)

    def __repr__(self) -> str:
        name = self.__class__.__name__
        return f"{name}(num_nodes={self.num_nodes}, K={self.K}, beta={self.beta:.4g})"


def _walk_matrices(
    adj: sp.csr_matrix, K: int, beta: float
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    r""":math:`M = \sum_k \beta^{k-1} A^k`, :math:`S = \sum_k \beta^{k-1} \mathrm{supp}(A^k)`,
    and the weighted walk totals :math:`\sum_k \beta^{k-1} A^k \mathbf{1}`."""
    total = row_counts(adj).astype(np.float64)
    if K == 1:
        return adj, adj, total  # M = S = A
    M, S, term, ones_k = adj, adj, adj, total
    for k in range(1, K):
        term = term @ adj  # beta^(k-1) A^k @ A; products stay unsorted, scipy does not need it
        term.data *= beta  # now beta^k A^(k+1)
        # scipy's products drop zero sums, so the stored pattern is the support of A^(k+1)
        level = sp.csr_matrix((np.full(term.nnz, beta**k), term.indices, term.indptr), term.shape)
        M, S = M + term, S + level
        ones_k = adj @ ones_k
        total = total + beta**k * ones_k
    return M.tocsr(), S.tocsr(), total


def _numerator(M: sp.csr_matrix, S: sp.csr_matrix, adj_x: sp.csr_matrix) -> np.ndarray:
    r""":math:`\mathrm{rowsum}(M \odot (A_X S))`, in row blocks of bounded size."""
    flops = adj_x @ row_counts(S).astype(np.float64)
    bounds = _blocks(flops, _BLOCK_FLOPS)
    out = np.zeros(M.shape[0])
    for start, end in zip(bounds[:-1], bounds[1:]):
        prod = _row_block(adj_x, start, end) @ S
        out[start:end] = row_sums(_row_block(M, start, end).multiply(prod))
    return out


def _row_block(mat: sp.csr_matrix, start: int, end: int) -> sp.csr_matrix:
    """Rows ``start:end`` of ``mat`` as a view (scipy's slicing copies)."""
    if start == 0 and end == mat.shape[0]:
        return mat
    lo, hi = mat.indptr[start], mat.indptr[end]
    return sp.csr_matrix(
        (mat.data[lo:hi], mat.indices[lo:hi], mat.indptr[start : end + 1] - lo),
        shape=(end - start, mat.shape[1]),
    )


def _blocks(cost: np.ndarray, budget: int) -> np.ndarray:
    """Row boundaries ``[0, ..., n]`` so that each block's summed ``cost`` is about ``budget``."""
    cum = np.cumsum(cost)
    cuts = np.searchsorted(cum, np.arange(budget, cum[-1] if cum.size else 0, budget))
    return np.unique(np.concatenate([[0], cuts, [cost.size]]))


def topological_concentration(
    train_edge_index: Tensor,
    split_edge_index: Tensor | None = None,
    num_nodes: int | None = None,
    K: int = 1,
    split: str = "train",
    beta: float | None = None,
    symmetrize: bool = False,
) -> Tensor:
    r"""Exact Topological Concentration :math:`\mathrm{TC}_X` of every node (see
    :class:`TopologicalConcentration` for the definition).

    Args:
        train_edge_index: training edges ``[2, E]``, both directions of every undirected edge;
            the walks run on this graph.
        split_edge_index: the edges of split ``split`` (both directions); defaults to the training
            edges when ``split="train"``.
        num_nodes: number of nodes (default: ``1 +`` the largest index in either edge index).
        K: walk length, ``>= 1``.
        split: ``"train"``, ``"val"`` or ``"test"``; ``"train"`` excludes the pair itself from the
            normaliser (the :math:`d_i - 1` at :math:`K = 1`).
        beta: walk decay (default ``1 / mean training degree``).
        symmetrize: add missing reverse edges instead of raising a :class:`ValueError`.

    Returns:
        ``[num_nodes]`` tensor on ``train_edge_index``'s device.

    Example:

    .. code-block:: python

        tc_test = topological_concentration(train_edge_index, test_edge_index, K=2, split="test")
        # several splits on one training graph: build the walk matrices once
        tc = TopologicalConcentration(train_edge_index, K=2)
        tc_train, tc_val = tc(), tc(val_edge_index, split="val")
    """
    check_K(K)
    check_split(split)
    if num_nodes is None:
        num_nodes = infer_num_nodes(
            None,
            train_edge_index=check_edge_index(train_edge_index, "train_edge_index"),
            split_edge_index=None
            if split_edge_index is None
            else check_edge_index(split_edge_index, "split_edge_index"),
        )
    tc = TopologicalConcentration(train_edge_index, num_nodes, K, beta, symmetrize)
    return tc(split_edge_index, split)
