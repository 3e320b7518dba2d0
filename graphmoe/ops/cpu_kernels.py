r"""Compiled CPU kernels for the CSR sum and max products, built on first use, with PyTorch
fallbacks.

:math:`\mathbf{O} = \mathbf{A}\mathbf{X}` over a CSR :math:`\mathbf{A}` is bound by the gather of
random rows of :math:`\mathbf{X}`. ATen's CSR kernels (``torch.sparse.mm`` and
``_sparse_mm_reduce_impl``) walk one entry at a time with one outstanding cache miss;
``csrc/spmm_cpu.cpp`` keeps a 256-byte slice of the output row in registers, prefetches the
rows of the entries ``distance`` positions ahead and splits rows into chunks of equal entry
counts (measured: ``benchmarks/message_passing.py``, docs/results.md). Results equal ATen's up
to float rounding order; the sum over a row is in entry order, deterministic.
``csrc/frontier_cpu.cpp`` (same extension) walks the graph: the sources of some rows, and the
levels of a frontier expansion (Mowst's receptive fields); ``csrc/rowwise_cpu.cpp`` holds the
softmax and variance of narrow rows (class scores, :mod:`graphmoe.ops.rowwise`).

The extension is compiled with :func:`torch.utils.cpp_extension.load` (ninja and a C++
compiler; ~30 s once, cached in ``$TORCH_EXTENSIONS_DIR``) the first time a CPU aggregation
runs. Where it cannot be built, :func:`load` warns once and returns ``None``, and graphmoe uses
ATen's kernel: same results, slower. ``GRAPHMOE_CPU_KERNELS=0`` disables it.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sysconfig
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

__all__ = ["load", "available", "spmm_sum", "spmm_sum_rows", "spmm_max", "mark_columns",
           "frontier_levels", "narrow_softmax", "narrow_variance",
           "PREFETCH_DISTANCE"]

SOURCES = [Path(__file__).with_name("csrc") / name
           for name in ("spmm_cpu.cpp", "frontier_cpu.cpp", "rowwise_cpu.cpp")]
"""One extension: products (``spmm_cpu.cpp``, which binds all), graph traversal, row-wise maps."""
PREFETCH_DISTANCE = 32
"""Entries ahead whose ``x`` rows are prefetched (measured best of 0, 4, 8, 16, 32 here)."""
_DTYPES = (torch.float32, torch.float64)


def _cpu_tag() -> str:
    """A short hash of the CPU's feature flags: ``-march=native`` builds are per CPU model."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha1(flags.encode()).hexdigest()[:8]


def _put_ninja_on_path() -> None:
    """The ``ninja`` wheel installs into the environment's scripts folder, which is not on
    ``PATH`` when the environment is used without activating it (``.venv/bin/python ...``)."""
    scripts = sysconfig.get_path("scripts")
    if shutil.which("ninja") is None and (Path(scripts) / "ninja").exists():
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


@functools.cache
def load() -> ModuleType | None:
    """The compiled extension, or ``None`` (disabled, or it could not be built: warned once)."""
    if os.environ.get("GRAPHMOE_CPU_KERNELS", "1") == "0":
        return None
    try:
        from torch.utils.cpp_extension import load as build

        _put_ninja_on_path()
        return build(name=f"graphmoe_spmm_cpu_{_cpu_tag()}", sources=[str(path) for path in SOURCES],
                     extra_cflags=["-O3", "-march=native", "-fopenmp"],
                     extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as error:  # no compiler, no ninja, a read-only cache: fall back to ATen
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        warnings.warn(f"graphmoe: the compiled CPU aggregation kernel is unavailable ({first_line}); "
                      f"using PyTorch's (same results, slower). Set GRAPHMOE_CPU_KERNELS=0 to "
                      f"skip the build.", RuntimeWarning, stacklevel=2)
        return None


def available() -> bool:
    """Whether the compiled kernel is (or can be) loaded."""
    return load() is not None


def spmm_sum(adj: Tensor, x: Tensor, self_weight: Tensor | None = None) -> Tensor | None:
    """``adj @ x`` for a CPU ``torch.sparse_csr`` ``adj`` with the compiled kernel, plus
    ``self_weight[i] * x[i]`` in row ``i`` (square ``adj``) when given; ``None`` when the kernel
    does not apply (not built, dtype other than float32/float64)."""
    module = load()
    if module is None or x.dtype not in _DTYPES or adj.dtype != x.dtype:
        return None
    return module.spmm_sum(adj, x.contiguous(), PREFETCH_DISTANCE, _self(self_weight, x))


def _self(self_weight: Tensor | None, x: Tensor) -> Tensor:
    return x.new_empty(0) if self_weight is None else self_weight.to(x.dtype).contiguous()


def spmm_max(adj: Tensor, x: Tensor, with_source: bool) -> tuple[Tensor, Tensor] | None:
    r""":math:`o_{if} = \max_k a_{ik} x_{kf}` over the entries of row :math:`i` (0 for rows
    without entries) and, with ``with_source``, the column :math:`k` of the first maximum per
    output entry, feature-major (``[F, num_rows]``, ``int32``, 0 for rows without entries);
    ``None`` when the kernel does not apply."""
    module = load()
    if module is None or x.dtype not in _DTYPES or adj.dtype != x.dtype or x.size(0) >= 2**31:
        return None
    return module.spmm_max(adj, x.contiguous(), with_source, PREFETCH_DISTANCE)


def spmm_sum_rows(adj: Tensor, x: Tensor, rows: Tensor, x_index: Tensor | None,
                  self_weight: Tensor | None = None) -> Tensor | None:
    """Rows ``rows`` (int64) of :func:`spmm_sum`, each computed as it computes them
    (bit-identical); with ``x_index`` (int64, one entry per column of ``adj``) node ``j`` reads
    row ``x_index[j]`` of ``x``. ``None`` when the kernel does not apply."""
    module = load()
    if module is None or x.dtype not in _DTYPES or adj.dtype != x.dtype:
        return None
    index = rows.new_empty(0) if x_index is None else x_index
    return module.spmm_sum_rows(adj, x.contiguous(), rows, index, PREFETCH_DISTANCE,
                                _self(self_weight, x))


def mark_columns(rowptr: Tensor, col: Tensor, rows: Tensor, num_cols: int) -> Tensor | None:
    """Bool ``[num_cols]``: the columns of the entries of rows ``rows`` (int64) of a CSR;
    ``None`` without the compiled kernel."""
    module = load()
    if module is None:
        return None
    return module.mark_columns(rowptr, col, rows, num_cols)


def frontier_levels(rowptr: Tensor, col: Tensor, seeds: Tensor, num_hops: int,
                    max_edges: float | None) -> tuple[Tensor, ...] | None:
    """``(nodes, sizes, in_edges, position)`` of the nodes within ``num_hops`` hops upstream of
    the bool mask ``seeds`` on a square CSR (see ``csrc/frontier_cpu.cpp``); ``()`` when the
    in-edges of a level reach ``max_edges``; ``None`` without the compiled kernel."""
    module = load()
    if module is None:
        return None
    limit = -1.0 if max_edges is None else float(max_edges)
    return tuple(module.frontier_levels(rowptr, col, seeds.contiguous(), num_hops, limit))


def _narrow(op: str, x: Tensor) -> Tensor | None:
    module = load()
    if module is None or x.dim() != 2 or x.dtype not in _DTYPES or x.device.type != "cpu":
        return None
    return getattr(module, op)(x.contiguous())


def narrow_softmax(x: Tensor) -> Tensor | None:
    """``torch.softmax(x, dim=-1)`` for a 2-D CPU float32/float64 ``x`` (no autograd), row by
    row; ``None`` where the kernel does not apply."""
    return _narrow("narrow_softmax", x)


def narrow_variance(x: Tensor) -> Tensor | None:
    """``x.var(dim=-1, unbiased=False)`` for a 2-D CPU float32/float64 ``x`` (no autograd);
    ``None`` where the kernel does not apply."""
    return _narrow("narrow_variance", x)
