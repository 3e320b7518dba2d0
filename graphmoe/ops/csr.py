r"""Compressed sparse row adjacency, built once per graph and cached.

For PyG's ``edge_index`` (``edge_index[0]`` = source :math:`j`, ``edge_index[1]`` = target
:math:`i`), the CSR is *target-major*: row :math:`i` lists the sources of the edges entering
:math:`i`, so that message passing is the sparse-dense product :math:`\mathbf{A} \mathbf{X}`
with :math:`A_{ij} = w_{ji}`.  Its transpose (source-major, used by the backward pass) is
built lazily on first use and kept on the same :class:`CSR` object.

:func:`to_csr` caches its result per ``edge_index`` tensor (identity, ``_version``,
``num_nodes`` and device), so layers may call it on every forward.

A CSR that is already known (e.g. sliced out of a bigger graph's CSR) is built with
:meth:`CSR.from_arrays`; it may be *rectangular* (``num_rows != num_cols``: the targets are
a subset of the sources, as in layer-wise or sampled message passing) and is passed to
:func:`~graphmoe.ops.aggregate` directly. :func:`register_csr` hands a square one to the
cache of an ``edge_index`` tensor, so that ``to_csr(edge_index)`` returns it without sorting.
"""
from __future__ import annotations

import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["CSR", "to_csr", "register_csr", "has_csr", "clear_csr_cache", "csr_cache_info"]

CACHE_SIZE = 16  # graphs kept alive at once; full-batch training touches 1-3


@dataclass(eq=False)  # identity semantics: tensors have no boolean ==
class CSR:
    r"""Adjacency of a directed graph in CSR form, rows are *targets*.

    Row :math:`i` holds ``col[rowptr[i]:rowptr[i + 1]]``, the sources :math:`j` of the edges
    :math:`j \to i`, sorted by :math:`j` when built by :func:`to_csr` (any order from
    :meth:`from_arrays`).  Rectangular (``num_rows != num_cols``) only from
    :meth:`from_arrays`.  ``perm[k]`` is the position in ``edge_index`` of
    the :math:`k`-th CSR entry, so ``edge_weight[perm]`` is the weight in CSR order.
    """

    rowptr: Tensor
    col: Tensor
    perm: Tensor
    num_rows: int
    num_cols: int
    # Derived data, filled lazily and shared by every call on this graph:
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_arrays(
        cls,
        rowptr: Tensor,
        col: Tensor,
        num_cols: int | None = None,
        perm: Tensor | None = None,
        *,
        validate: bool = True,
    ) -> CSR:
        r"""A :class:`CSR` from precomputed arrays, without sorting anything.

        Args:
            rowptr (torch.Tensor): Integer row pointers ``[num_rows + 1]``, non-decreasing,
                ``rowptr[0] = 0``, ``rowptr[-1] = num_edges``.
            col (torch.Tensor): Integer sources ``[num_edges]`` of the edges of each row, in
                ``[0, num_cols)``. Inside a row they may come in any order (:func:`to_csr`
                sorts them; the CPU kernels, forward and backward, accept any order).
            num_cols (int, optional): Number of source nodes (rows of the ``x`` it
                aggregates); defaults to ``num_rows`` (a square adjacency).
            perm (torch.Tensor, optional): ``perm[k]`` = position in the caller's edge order
                of the ``k``-th CSR entry; defaults to the identity (edge weights given to
                :func:`~graphmoe.ops.aggregate` are then in CSR order).
            validate (bool): Check shapes, dtypes, devices and ranges (a few
                :math:`O(E)` reductions); pass ``False`` for arrays known to be valid.
                (default: ``True``)

        Integer arrays are converted to ``torch.long``.
        """
        if validate:
            _check_arrays(rowptr, col, num_cols, perm)
        rowptr, col = rowptr.long(), col.long()
        num_rows = rowptr.numel() - 1
        num_cols = num_rows if num_cols is None else int(num_cols)
        if perm is None:
            perm = torch.arange(col.numel(), device=col.device)
        return cls(rowptr, col, perm.long(), num_rows, num_cols)

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

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per graph and ``key`` (derived data layers reuse at every call,
        e.g. a normalisation): kept as long as this CSR is. A value holding inference tensors
        (computed under ``torch.inference_mode``) is recomputed when needed outside it, where
        autograd could not save it for backward."""
        value = self._cache.get(key)
        if value is None or (not torch.is_inference_mode_enabled()
                             and _has_inference_tensor(value)):
            value = self._cache[key] = compute()
        return value

    def cached_for(self, source: Tensor, key: Hashable, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()``, derived from the tensor ``source`` (e.g. edge weights put in CSR order),
        kept in one slot per ``key`` while ``source`` is the same, unmodified tensor: a value
        reused at every step is computed once, and a new or edited ``source`` replaces it.
        Inference tensors are recomputed outside inference mode, as in :meth:`cached`."""
        version = _version(source)
        slot = self._cache.get(key)
        if (slot is None or slot[0]() is not source or slot[1] != version
                or (not torch.is_inference_mode_enabled() and slot[2].is_inference())):
            slot = self._cache[key] = (weakref.ref(source), version, compute())
        return slot[2]

    def values(self, dtype: torch.dtype, kind: str = "ones") -> Tensor:
        r"""Cached CSR values for unweighted graphs: ``"ones"`` or ``"mean"``
        (:math:`1 / \deg(i)`), and their transposed order (``"ones_t"``, ``"mean_t"``)."""
        key = ("values", kind, dtype)
        if key not in self._cache:
            if kind == "ones":
                val = torch.ones(self.num_edges, dtype=dtype, device=self.device)
            elif kind == "mean":  # one pass over the rows (no `row` array, no gather)
                val = torch.repeat_interleave(self.deg.clamp(min=1).to(dtype).reciprocal(),
                                              self.deg, output_size=self.num_edges)
            else:  # "<kind>_t": the same values, in transposed order
                val = self.values(dtype, kind[:-2]).index_select(0, self.transpose()[2])
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
        return torch.empty_like(csr_values).index_copy_(0, self.perm, csr_values)


def _has_inference_tensor(value: Any) -> bool:
    items = value if isinstance(value, (tuple, list)) else (value,)
    return any(isinstance(t, Tensor) and t.is_inference() for t in items)


def _is_index(tensor: object) -> bool:
    return (isinstance(tensor, Tensor) and tensor.dim() == 1 and not tensor.is_floating_point()
            and not tensor.is_complex() and tensor.dtype != torch.bool)


def _check_arrays(rowptr: Tensor, col: Tensor, num_cols: int | None,
                  perm: Tensor | None) -> None:
    """``ValueError``/``TypeError`` naming the argument of :meth:`CSR.from_arrays`."""
    for name, value in (("rowptr", rowptr), ("col", col), ("perm", perm)):
        if value is None and name == "perm":
            continue
        if not _is_index(value):
            raise TypeError(f"'{name}' must be a 1-D integer torch.Tensor, got "
                            f"{getattr(value, 'dtype', type(value).__name__)} "
                            f"{list(getattr(value, 'shape', []))}")
        if value.device != col.device:
            raise ValueError(f"'{name}' is on {value.device} but 'col' is on {col.device}")
    if rowptr.numel() == 0:
        raise ValueError("'rowptr' must have num_rows + 1 >= 1 entries, got 0")
    num_rows = rowptr.numel() - 1
    if num_cols is not None and (not isinstance(num_cols, int) or isinstance(num_cols, bool)
                                 or num_cols < 0):
        raise ValueError(f"'num_cols' must be a non-negative int, got {num_cols!r}")
    num_cols = num_rows if num_cols is None else num_cols
    if int(rowptr[0]) != 0 or int(rowptr[-1]) != col.numel():
        raise ValueError(f"'rowptr' must start at 0 and end at col.numel() = {col.numel()}, "
                         f"got {int(rowptr[0])} .. {int(rowptr[-1])}")
    if num_rows > 0 and bool((rowptr.diff() < 0).any()):
        raise ValueError("'rowptr' must be non-decreasing")
    if col.numel() > 0:
        lo, hi = int(col.min()), int(col.max())
        if lo < 0 or hi >= num_cols:
            raise ValueError(f"'col' holds indices in [{lo}, {hi}], outside "
                             f"[0, num_cols={num_cols})")
    if perm is not None and perm.numel() != col.numel():
        raise ValueError(f"'perm' must have col.numel() = {col.numel()} entries, "
                         f"got {perm.numel()}")


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

    def contains(self, edge_index: Tensor, num_nodes: int | None) -> bool:
        """Whether ``get(edge_index, num_nodes)`` would hit (without counting it)."""
        key = (id(edge_index), _version(edge_index), num_nodes, edge_index.device)
        with self._lock:
            entry = self._data.get(key)
            return entry is not None and entry[0]() is edge_index

    def put(self, edge_index: Tensor, csr: CSR) -> None:
        key = (id(edge_index), _version(edge_index), csr.num_rows, edge_index.device)
        with self._lock:
            self._data[key] = (weakref.ref(edge_index), csr)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

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


def has_csr(edge_index: Tensor, num_nodes: int) -> bool:
    """Whether ``to_csr(edge_index, num_nodes)`` is cached for this unmodified tensor: then its
    indices were checked to lie in ``[0, num_nodes)`` when it was built or registered, and a
    caller may skip that :math:`O(E)` pass."""
    return isinstance(edge_index, Tensor) and _CACHE.contains(edge_index, num_nodes)


def register_csr(edge_index: Tensor, csr: CSR, *, validate: bool = True) -> CSR:
    r"""Make ``to_csr(edge_index, csr.num_rows)`` return ``csr`` without building it.

    For graphs whose CSR is known when their ``edge_index`` is made (a subgraph sliced out of
    a cached CSR, edges emitted in CSR order): the first aggregation then skips the sort.
    The entry follows the cache's rules (same tensor object, unmodified; least recently used
    graphs are dropped first).

    Args:
        edge_index (torch.Tensor): The graph, ``[2, num_edges]``.
        csr (CSR): Its square target-major CSR, e.g. from :meth:`CSR.from_arrays`, with
            ``edge_index[:, csr.perm] == (csr.col, csr.row)``.
        validate (bool): Check that equality (:math:`O(E)`); shapes are always checked.
            (default: ``True``)

    Returns the registered ``csr``.
    """
    if not isinstance(csr, CSR):
        raise TypeError(f"'csr' must be a graphmoe.ops.CSR, got {type(csr).__name__}")
    check_edge_index(edge_index, csr.num_rows)
    if csr.num_rows != csr.num_cols:
        raise ValueError(f"'csr' must be square to stand for an edge_index, got "
                         f"{csr.num_rows} x {csr.num_cols}")
    if edge_index.size(1) != csr.num_edges or edge_index.device != csr.device:
        raise ValueError(f"'csr' has {csr.num_edges} edges on {csr.device}, 'edge_index' "
                         f"{edge_index.size(1)} on {edge_index.device}")
    if validate:
        src, dst = edge_index[:, csr.perm]
        if not (torch.equal(src, csr.col) and torch.equal(dst, csr.row)):
            raise ValueError("'csr' does not match 'edge_index': need "
                             "edge_index[:, csr.perm] == (csr.col, csr.row)")
    _CACHE.put(edge_index, csr)
    return csr


def clear_csr_cache() -> None:
    """Forget every cached CSR (e.g. to free memory)."""
    _CACHE.clear()


def csr_cache_info() -> dict[str, int]:
    """Cache statistics: ``hits``, ``misses``, ``size`` and ``maxsize``."""
    return {"hits": _CACHE.hits, "misses": _CACHE.misses, "size": len(_CACHE),
            "maxsize": _CACHE.maxsize}
