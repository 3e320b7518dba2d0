r"""Compressed sparse row adjacency, built once per graph and cached.

For PyG's ``edge_index`` (``edge_index[0]`` = source :math:`j`, ``edge_index[1]`` = target
:math:`i`), the CSR is *target-major*: row :math:`i` lists the sources of the edges entering
:math:`i`, so that message passing is the sparse-dense product :math:`\mathbf{A} \mathbf{X}`
with :math:`A_{ij} = w_{ji}`.  Its transpose (source-major, used by the backward pass) is
built lazily on first use and kept on the same :class:`CSR` object.

:func:`to_csr` caches its result per ``edge_index`` tensor (identity, ``_version``,
``num_nodes`` and device), so layers may call it on every forward.
"""
from __future__ import annotations

import threading
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["CSR", "to_csr", "clear_csr_cache", "csr_cache_info"]

CACHE_SIZE = 16  # graphs kept alive at once; full-batch training touches 1-3


@dataclass(eq=False)  # identity semantics: tensors have no boolean ==
class CSR:
    r"""Adjacency of a directed graph in CSR form, rows are *targets*.

    Row :math:`i` holds ``col[rowptr[i]:rowptr[i + 1]]``, the sources :math:`j` of the edges
    :math:`j \to i`, sorted by :math:`j`.  ``perm[k]`` is the position in ``edge_index`` of
    the :math:`k`-th CSR entry, so ``edge_weight[perm]`` is the weight in CSR order.
    """

    rowptr: Tensor
    col: Tensor
    perm: Tensor
    num_rows: int
    num_cols: int
    # Derived data, filled lazily and shared by every call on this graph:
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.col.device

    @property
    def deg(self) -> Tensor:
        """In-degree of every row (``long``)."""
        if "deg" not in self._cache:
            self._cache["deg"] = self.rowptr.diff()
        return self._cache["deg"]

    @property
    def row(self) -> Tensor:
        """Row (target) index of every CSR entry."""
        if "row" not in self._cache:
            self._cache["row"] = torch.repeat_interleave(
                torch.arange(self.num_rows, device=self.device), self.deg,
                output_size=self.num_edges)
        return self._cache["row"]

    @property
    def has_empty_rows(self) -> bool:
        """Whether some target has no in-edge (its aggregate is 0, its max has no arg)."""
        if "has_empty_rows" not in self._cache:
            self._cache["has_empty_rows"] = bool((self.deg == 0).any())
        return self._cache["has_empty_rows"]

    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        r"""Source-major CSR ``(rowptr_t, col_t, perm_t)`` of :math:`\mathbf{A}^\top`.

        ``perm_t[k]`` is the CSR position of the :math:`k`-th entry of the transpose, so the
        values of :math:`\mathbf{A}^\top` are ``values[perm_t]``.  Built once, on the first
        backward pass.
        """
        if "t" not in self._cache:
            # Stable sort keeps targets increasing inside each source row:
            perm_t = torch.argsort(self.col, stable=True)
            rowptr_t = _ptr(self.col, self.num_cols)
            self._cache["t"] = (rowptr_t, self.row[perm_t], perm_t)
        return self._cache["t"]

    def coalesced(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(rowptr_u, col_u, inverse)`` without duplicate edges (``inverse`` maps every CSR
        entry to its unique entry), or ``None`` when the graph has no duplicate edges."""
        if "coalesced" not in self._cache:
            key = self.row * self.num_cols + self.col  # sorted, duplicates are adjacent
            unique, inverse = torch.unique_consecutive(key, return_inverse=True)
            self._cache["coalesced"] = None if unique.numel() == key.numel() else (
                _ptr(unique // self.num_cols, self.num_rows), unique % self.num_cols, inverse)
        return self._cache["coalesced"]

    def values(self, dtype: torch.dtype, kind: str = "ones") -> Tensor:
        r"""Cached CSR values for unweighted graphs: ``"ones"`` or ``"mean"``
        (:math:`1 / \deg(i)`), and their transposed order (``"ones_t"``, ``"mean_t"``)."""
        key = ("values", kind, dtype)
        if key not in self._cache:
            if kind == "ones":
                val = torch.ones(self.num_edges, dtype=dtype, device=self.device)
            elif kind == "mean":
                val = self.deg.clamp(min=1).to(dtype).reciprocal()[self.row]
            else:  # "<kind>_t": the same values, in transposed order
                val = self.values(dtype, kind[:-2])[self.transpose()[2]]
            self._cache[key] = val
        return self._cache[key]

    def sparse(self, values: Tensor, transpose: bool = False) -> Tensor:
        """A ``torch.sparse_csr`` view of this adjacency (or its transpose) with ``values``."""
        if transpose:
            rowptr, col, _ = self.transpose()
            size = (self.num_cols, self.num_rows)
        else:
            rowptr, col, size = self.rowptr, self.col, (self.num_rows, self.num_cols)
        with warnings.catch_warnings():
            # Silence torch's one-time "sparse CSR support is in beta" notice:
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(rowptr, col, values, size, check_invariants=False)

    def to_edge_order(self, csr_values: Tensor) -> Tensor:
        """Permute values given in CSR order back to ``edge_index`` order."""
        out = torch.empty_like(csr_values)
        out[self.perm] = csr_values
        return out


def _ptr(index: Tensor, size: int) -> Tensor:
    ptr = index.new_zeros(size + 1)
    torch.cumsum(torch.bincount(index, minlength=size), 0, out=ptr[1:])
    return ptr


def check_edge_index(edge_index: Tensor, num_nodes: int | None = None) -> int:
    """Validate ``edge_index`` and return the number of nodes (``max + 1`` if not given)."""
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'edge_index' must be a torch.Tensor, got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, num_edges], got {list(edge_index.shape)}")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
        raise ValueError(f"'edge_index' must hold integers, got dtype {edge_index.dtype}")
    if num_nodes is not None and (not isinstance(num_nodes, int) or num_nodes < 0):
        raise ValueError(f"'num_nodes' must be a non-negative int, got {num_nodes!r}")
    if edge_index.numel() == 0:
        return 0 if num_nodes is None else num_nodes
    lo, hi = int(edge_index.min()), int(edge_index.max())
    if num_nodes is None:
        num_nodes = hi + 1
    if lo < 0 or hi >= num_nodes:
        raise ValueError(f"'edge_index' holds node indices in [{lo}, {hi}], outside "
                         f"[0, num_nodes={num_nodes})")
    return num_nodes


def build_csr(edge_index: Tensor, num_nodes: int | None = None) -> CSR:
    """Build the target-major CSR of ``edge_index`` without touching the cache."""
    num_nodes = check_edge_index(edge_index, num_nodes)
    src, dst = edge_index.long()
    # Sort by (target, source): rows become contiguous and, inside a row, sources increase,
    # which makes the SpMM gathers of x more cache friendly.
    perm = torch.argsort(dst * max(num_nodes, 1) + src)
    return CSR(_ptr(dst, num_nodes), src[perm], perm, num_nodes, num_nodes)


def _version(tensor: Tensor) -> int:
    try:
        return tensor._version
    except RuntimeError:
        # Inference tensors have no version counter; they can only change inside
        # `torch.inference_mode()`, where we trust the caller not to edit a graph in place.
        return -1


class _CSRCache:
    """LRU cache ``edge_index -> CSR``.

    Keys hold ``id(edge_index)``; each entry also keeps a weak reference to the tensor and is
    used only if it still points to the very same object, so a recycled ``id`` of a freed
    tensor never returns a stale CSR.  ``_version`` in the key invalidates the entry after any
    in-place change of ``edge_index`` (or of its base).  Entries of freed tensors are dropped
    on the next miss (not from a weakref callback: those may fire while the lock is held).
    """

    def __init__(self, maxsize: int = CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[tuple, tuple[weakref.ref, CSR]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, edge_index: Tensor, num_nodes: int | None) -> CSR:
        key = (id(edge_index), _version(edge_index), num_nodes, edge_index.device)
        with self._lock:
            entry = self._data.get(key)
            if entry is not None and entry[0]() is edge_index:
                self._data.move_to_end(key)
                self.hits += 1
                return entry[1]
        csr = build_csr(edge_index, num_nodes)
        with self._lock:
            self.misses += 1
            # Entries of freed tensors and of older versions of this one can never hit again:
            for old in [k for k, (ref, _) in self._data.items()
                        if ref() is None or (ref() is edge_index and k[1] != key[1])]:
                del self._data[old]
            self._data[key] = (weakref.ref(edge_index), csr)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return csr

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


_CACHE = _CSRCache()


def to_csr(edge_index: Tensor, num_nodes: int | None = None) -> CSR:
    r"""Target-major CSR of ``edge_index`` (row :math:`i` = sources :math:`j` of
    :math:`j \to i`), cached per tensor.

    Args:
        edge_index (torch.Tensor): Integer edge indices of shape ``[2, num_edges]``.
        num_nodes (int, optional): Number of nodes; defaults to ``edge_index.max() + 1``.

    The first call on a graph sorts the edges (:math:`O(E \log E)`) and validates them;
    later calls with the same, unmodified tensor return the cached :class:`CSR`.
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"'edge_index' must be a torch.Tensor, got {type(edge_index).__name__}")
    return _CACHE.get(edge_index, num_nodes)


def clear_csr_cache() -> None:
    """Forget every cached CSR (e.g. to free memory)."""
    _CACHE.clear()


def csr_cache_info() -> dict[str, int]:
    """Cache statistics: ``hits``, ``misses``, ``size`` and ``maxsize``."""
    return {"hits": _CACHE.hits, "misses": _CACHE.misses, "size": len(_CACHE),
            "maxsize": _CACHE.maxsize}
