"""Input checks and the scipy adjacency shared by the node-level topology metrics."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

SPLITS = ("train", "val", "test")


def check_edge_index(edge_index: Tensor, name: str = "edge_index") -> np.ndarray:
    """Return ``edge_index`` as an ``int64`` array of shape ``[2, E]`` or raise."""
    if not isinstance(edge_index, Tensor):
        kind = type(edge_index).__name__
        raise TypeError(f"{name} must be a torch.Tensor of shape [2, E], got {kind}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"{name} must have shape [2, E], got {list(edge_index.shape)}")
    if edge_index.dtype == torch.bool or edge_index.is_floating_point() or edge_index.is_complex():
        raise TypeError(f"{name} must hold integer node indices, got dtype {edge_index.dtype}")
    return edge_index.detach().cpu().numpy().astype(np.int64, copy=False)


def infer_num_nodes(num_nodes: int | None, **edge_indices: np.ndarray | None) -> int:
    """``num_nodes`` if given (checked against every index), else ``1 + max index``."""
    given = {k: v for k, v in edge_indices.items() if v is not None and v.size > 0}
    for key, ei in given.items():
        if int(ei.min()) < 0:
            raise ValueError(f"{key} contains a negative node index ({int(ei.min())})")
    if num_nodes is None:
        if not given:
            raise ValueError("num_nodes is required when every edge index is empty")
        return 1 + max(int(ei.max()) for ei in given.values())
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)) or num_nodes < 1:
        raise ValueError(f"num_nodes must be a positive int, got {num_nodes!r}")
    for key, ei in given.items():
        if int(ei.max()) >= num_nodes:
            raise ValueError(
                f"{key} contains node index {int(ei.max())}, out of range for num_nodes={num_nodes}"
            )
    return int(num_nodes)


def check_K(K: int, name: str = "K") -> int:
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"{name} must be an int >= 1, got {K!r}")
    return int(K)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def adjacency(
    edge_index: np.ndarray,
    num_nodes: int,
    name: str = "edge_index",
    symmetrize: bool = False,
    remove_self_loops: bool = False,
) -> sp.csr_matrix:
    r"""Binary, canonical (sorted, deduplicated) CSR adjacency of an undirected graph.

    ``edge_index`` must list every edge in both directions, as PyG stores undirected graphs
    (:func:`torch_geometric.utils.to_undirected`). A one-way edge raises a :class:`ValueError`,
    or, with ``symmetrize=True``, gets its reverse added.
    """
    row, col = edge_index
    if remove_self_loops:
        keep = row != col
        row, col = row[keep], col[keep]
    data = np.ones(row.size, dtype=np.float64)
    adj = sp.csr_matrix((data, (row, col)), shape=(num_nodes, num_nodes))
    adj.sum_duplicates()  # also sorts the indices: canonical CSR
    adj.data[:] = 1.0
    transposed = adj.T.tocsr()  # canonical too, so equal arrays <=> symmetric
    if np.array_equal(adj.indptr, transposed.indptr) and np.array_equal(
        adj.indices, transposed.indices
    ):
        return adj
    if symmetrize:
        adj = adj.maximum(transposed).tocsr()
        adj.sort_indices()
        return adj
    diff = (adj - transposed).tocoo()
    diff.eliminate_zeros()
    first = int(np.argmax(diff.data > 0))
    u, v = int(diff.row[first]), int(diff.col[first])
    raise ValueError(
        f"{name} must be undirected with both directions listed, but edge ({u}, {v}) has no "
        f"reverse ({v}, {u}) ({diff.nnz // 2} such edges); use "
        "torch_geometric.utils.to_undirected or pass symmetrize=True"
    )


def row_sums(mat: sp.csr_matrix) -> np.ndarray:
    """Sum of each row (as a matrix-vector product: cheaper than ``mat.sum(axis=1)``)."""
    return mat @ np.ones(mat.shape[1])


def row_counts(adj: sp.csr_matrix) -> np.ndarray:
    """Number of stored entries per row (the degree of a binary adjacency)."""
    return np.diff(adj.indptr)


def support(mat: sp.csr_matrix) -> sp.csr_matrix:
    """The 0/1 pattern of ``mat`` (explicit zeros dropped)."""
    out = mat.copy()
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def to_tensor(values: np.ndarray, device: torch.device) -> Tensor:
    """``values`` as a tensor of torch's default dtype on ``device``.

    The cast happens in numpy: a torch CPU kernel here would wake its thread pool, whose
    spinning workers then slow the numpy/scipy code that follows on small machines.
    """
    dtype = torch.empty(0).numpy().dtype  # numpy twin of torch.get_default_dtype()
    out = torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))
    return out if torch.device(device).type == "cpu" else out.to(device)


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concat([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a Python loop."""
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return shift + np.arange(int(lengths.sum()))


def has_edges(adj: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each ``(rows[k], cols[k])`` is stored in the canonical CSR ``adj`` (binary search
    within the row, in scipy's C code)."""
    return np.asarray(adj[rows, cols]).ravel() != 0


def triangles_per_node(adj: sp.csr_matrix) -> np.ndarray:
    r"""Number of triangles through each node of a binary symmetric CSR without self-loops.

    Forward algorithm (Schank & Wagner, 2005): orient every edge from the lower to the higher
    (degree, id) rank, list the pairs of out-neighbours of each node and keep the closed ones.
    Each triangle is found once; :math:`O(E^{3/2})` pairs at worst, far fewer than the
    :math:`\sum_i d_i^2` wedges of :math:`A^2` on most graphs.
    """
    n = adj.shape[0]
    deg = row_counts(adj)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), deg))] = np.arange(n)
    rows = np.repeat(np.arange(n), deg)
    keep = rank[rows] < rank[adj.indices]
    src, dst = rows[keep], adj.indices[keep].astype(np.int64)
    out_deg = np.bincount(src, minlength=n)
    list_end = np.repeat(np.cumsum(out_deg), out_deg)
    later = list_end - np.arange(dst.size) - 1  # out-neighbours listed after each entry
    first = np.repeat(np.arange(dst.size), later)
    second = ragged_arange(np.arange(dst.size) + 1, later)
    closed = has_edges(adj, dst[first], dst[second])
    corners = np.concatenate([src[first][closed], dst[first][closed], dst[second][closed]])
    return np.bincount(corners, minlength=n).astype(np.float64)
