r"""Sparse-dense products over a cached :class:`~graphmoe.ops.csr.CSR`, with autograd.

With :math:`A_{ij} = w_{ji}` (target-major CSR) the kernels compute

.. math::
    \text{sum:}\quad \mathbf{o}_i = \sum_{j \to i} w_{ji} \mathbf{x}_j, \qquad
    \text{mean:}\quad \mathbf{o}_i = \frac{1}{\deg(i)} \sum_{j \to i} w_{ji} \mathbf{x}_j, \qquad
    \text{max:}\quad o_{if} = \max_{j \to i} w_{ji} x_{jf},

(:math:`\mathbf{o}_i = \mathbf{0}` when :math:`i` has no in-edge) and their gradients

.. math::
    \frac{\partial L}{\partial \mathbf{X}} = \mathbf{A}^\top \frac{\partial L}{\partial \mathbf{O}},
    \qquad
    \frac{\partial L}{\partial w_{ji}} = \Big\langle \frac{\partial L}{\partial \mathbf{o}_i},
    \mathbf{x}_j \Big\rangle

(with :math:`\mathbf{A}` scaled by :math:`1/\deg(i)` for mean; for max, only the arg-max
source of each :math:`(i, f)` receives :math:`\partial L / \partial o_{if}`).  None of them
materialises the :math:`E \times F` message matrix: the backward reuses the cached transpose
and the edge-weight gradient is a sampled dense-dense product (SDDMM).

One dispatch function, :func:`select_kernel`, picks the kernel per device type, reduction and
dtype; :func:`register_kernel` is the hook for device-specific kernels (``ops/triton``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from graphmoe.ops import cpu_kernels
from graphmoe.ops.csr import CSR

__all__ = ["Kernel", "select_kernel", "select_linear_kernel", "register_kernel", "gather_scatter",
           "spmm_sum_self"]

Kernel = Callable[[Tensor, CSR, "Tensor | None"], Tensor]
"""``kernel(x, csr, edge_weight) -> out``; ``edge_weight`` in ``edge_index`` order."""

_REDUCE_IMPL = torch.ops.aten._sparse_mm_reduce_impl
_REDUCE_IMPL_BACKWARD = torch.ops.aten._sparse_mm_reduce_impl_backward


# ---------------------------------------------------------------------------------------------
# Building blocks

def _spmm_cpu(adj: Tensor, x: Tensor) -> Tensor:
    # The compiled kernel (`cpu_kernels`, 2.5-5x faster here) when it is built; else ATen's
    # vectorised CSR kernel, a little faster than `torch.sparse.mm` (MKL) and free of its
    # autograd wrapper.
    out = cpu_kernels.spmm_sum(adj, x)
    return _spmm_aten(adj, x) if out is None else out


def spmm_sum_self(x: Tensor, csr: CSR, edge_weight: Tensor | None,
                  self_weight: Tensor) -> Tensor | None:
    r""":math:`\mathbf{o}_i = \sum_{j \to i} w_{ji}\mathbf{x}_j + s_i \mathbf{x}_i` in one
    pass of the compiled CPU kernel, when it applies: CPU, the default sum kernel (none
    registered in its place), no gradient to compute, float32/float64; else ``None``."""
    if (x.device.type != "cpu" or _KERNELS.get(("cpu", "sum")) is not _CPU_SUM
            or csr.num_edges == 0 or x.dtype not in _FAST_DTYPES
            or (torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (x, edge_weight, self_weight)))):
        return None
    return cpu_kernels.spmm_sum(_adjacency(csr, edge_weight, x.dtype, False), x, self_weight)


def _spmm_aten(adj: Tensor, x: Tensor) -> Tensor:
    return _REDUCE_IMPL(adj, x, "sum")[0]


def _spmm_generic(adj: Tensor, x: Tensor) -> Tensor:
    return torch.sparse.mm(adj, x)  # cuSPARSE on CUDA


def _csr_values(csr: CSR, edge_weight: Tensor | None, dtype: torch.dtype, mean: bool) -> Tensor:
    """Values of the (row-normalised for mean) adjacency, in CSR order."""
    if edge_weight is None:
        return csr.values(dtype, "mean" if mean else "ones")
    val = edge_weight.index_select(0, csr.perm)  # ~4x faster than `edge_weight[csr.perm]`
    return val * csr.values(dtype, "mean") if mean else val


def _weighted_values(csr: CSR, edge_weight: Tensor, dtype: torch.dtype, mean: bool,
                     transpose: bool) -> Tensor:
    """:func:`_csr_values` (in transposed order with ``transpose``), kept on the CSR for the
    last weight tensor seen while it is alive and unmodified and needs no gradient: a weight
    reused at every step (a cached GCN normalisation, fixed edge weights) is permuted once."""
    def compute() -> Tensor:
        val = _csr_values(csr, edge_weight, dtype, mean)
        return val.index_select(0, csr.transpose()[2]) if transpose else val

    if edge_weight.requires_grad:  # a learned weight changes at every step
        return compute()
    return csr.cached_for(edge_weight, ("weighted", dtype, mean, transpose), compute)


def _adjacency(csr: CSR, edge_weight: Tensor | None, dtype: torch.dtype, mean: bool,
               transpose: bool = False) -> Tensor:
    r""":math:`\mathbf{A}` (or :math:`\mathbf{A}^\top`) as a ``torch.sparse_csr`` tensor."""
    if edge_weight is None:  # cached values, no per-call work
        kind = "mean" if mean else "ones"
        return csr.sparse(csr.values(dtype, kind + "_t" if transpose else kind), transpose)
    return csr.sparse(_weighted_values(csr, edge_weight, dtype, mean, transpose), transpose)


def _sddmm(csr: CSR, grad_out: Tensor, x: Tensor) -> Tensor:
    r""":math:`\langle \mathbf{g}_i, \mathbf{x}_j \rangle` for every CSR entry :math:`(i, j)`."""
    coalesced = csr.coalesced()
    if coalesced is None:
        pattern = csr.sparse(csr.values(x.dtype, "ones"))
        return torch.sparse.sampled_addmm(pattern, grad_out, x.t(), beta=0.0).values()
    # `sampled_addmm` rejects duplicate entries: compute each distinct (i, j) once, then copy.
    rowptr, col, inverse = coalesced
    ones = torch.ones(col.numel(), dtype=x.dtype, device=x.device)
    pattern = torch.sparse_csr_tensor(rowptr, col, ones, (csr.num_rows, csr.num_cols),
                                      check_invariants=False)
    return torch.sparse.sampled_addmm(pattern, grad_out, x.t(), beta=0.0).values()[inverse]


# ---------------------------------------------------------------------------------------------
# sum / mean

class _SpMMSum(Function):
    r"""Differentiable :math:`\mathbf{O} = \mathbf{A}\mathbf{X}` (``mean``: rows of
    :math:`\mathbf{A}` pre-scaled by :math:`1/\deg(i)`)."""

    @staticmethod
    def forward(ctx, x: Tensor, edge_weight: Tensor | None, csr: CSR, mean: bool,
                spmm: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        ctx.csr, ctx.mean, ctx.spmm = csr, mean, spmm
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, edge_weight)
        if csr.num_edges == 0:
            return x.new_zeros(csr.num_rows, x.size(1))
        return spmm(_adjacency(csr, edge_weight, x.dtype, mean), x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        csr, mean = ctx.csr, ctx.mean
        x, edge_weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = grad_w = None
        if csr.num_edges == 0:
            if ctx.needs_input_grad[0]:
                grad_x = grad_out.new_zeros(csr.num_cols, grad_out.size(1))
            if ctx.needs_input_grad[1]:
                grad_w = torch.zeros_like(edge_weight)
            return grad_x, grad_w, None, None, None
        if ctx.needs_input_grad[0]:
            grad_x = ctx.spmm(_adjacency(csr, edge_weight, grad_out.dtype, mean, True), grad_out)
        if ctx.needs_input_grad[1]:
            dot = _sddmm(csr, grad_out, x)
            if mean:
                dot = dot * csr.values(dot.dtype, "mean")
            grad_w = csr.to_edge_order(dot)
        return grad_x, grad_w, None, None, None


def _sum_kernel(spmm: Callable[[Tensor, Tensor], Tensor], mean: bool) -> Kernel:
    def kernel(x: Tensor, csr: CSR, edge_weight: Tensor | None) -> Tensor:
        return _SpMMSum.apply(x, edge_weight, csr, mean, spmm)
    kernel.__name__ = f"spmm_{'mean' if mean else 'sum'}_{spmm.__name__}"
    # Read by `select_linear_kernel`: the fused linear layer reuses this SpMM.
    kernel.spmm, kernel.mean = spmm, mean  # type: ignore[attr-defined]
    return kernel


# ---------------------------------------------------------------------------------------------
# sum / mean fused with the linear maps of a SAGE-like layer

class _SpMMLinear(Function):
    r"""Differentiable :math:`\mathbf{O} = \mathbf{A}\mathbf{X}\mathbf{W}^\top + \mathbf{b}
    + \mathbf{R}\mathbf{W}_r^\top` (``mean``: rows of :math:`\mathbf{A}` scaled by
    :math:`1/\deg(i)`; :math:`\mathbf{R}` = the first ``num_rows`` rows of
    :math:`\mathbf{X}` when ``x_root`` is ``None``).

    As :math:`\mathbf{A}` is linear, :math:`(\mathbf{A}\mathbf{X})\mathbf{W}^\top =
    \mathbf{A}(\mathbf{X}\mathbf{W}^\top)`: the SpMMs (forward, and backward for
    :math:`\partial L/\partial \mathbf{X}`, or for :math:`\partial L/\partial \mathbf{W}`
    after transforming) run at the width that costs least.  The root term and the bias
    accumulate in place, and the gradients of the two paths to :math:`\mathbf{X}` are summed
    in one buffer: no separate additions, no extra full-size temporaries.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, x_root: Tensor | None,
                weight_root: Tensor | None, edge_weight: Tensor | None, csr: CSR, mean: bool,
                spmm: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.transform_first = _transform_first(weight.shape, need_x, need_w, csr)
        ctx.csr, ctx.mean, ctx.spmm = csr, mean, spmm
        adj = _adjacency(csr, edge_weight, x.dtype, mean) if csr.num_edges else None
        agg = None
        if ctx.transform_first:
            out = _spmm_or_zeros(spmm, adj, x @ weight.t(), csr.num_rows)
        else:
            agg = _spmm_or_zeros(spmm, adj, x, csr.num_rows)
            out = agg @ weight.t()
        root = x[:csr.num_rows] if x_root is None else x_root
        if weight_root is not None:
            out.addmm_(root, weight_root.t())
        if bias is not None:
            out.add_(bias)
        ctx.save_for_backward(x, weight, x_root, weight_root, edge_weight,
                              agg if need_w else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, weight, x_root, weight_root, edge_weight, agg = ctx.saved_tensors
        csr, needs = ctx.csr, ctx.needs_input_grad
        grad_out = grad_out.contiguous()
        root = x[:csr.num_rows] if x_root is None else x_root
        grad_x = grad_w = grad_b = grad_xr = grad_wr = None
        if needs[0] or (needs[1] and ctx.transform_first):
            adj_t = (_adjacency(csr, edge_weight, grad_out.dtype, ctx.mean, transpose=True)
                     if csr.num_edges else None)
            if ctx.transform_first:  # dL/d(XW^T) = A^T G
                grad_h = _spmm_or_zeros(ctx.spmm, adj_t, grad_out, csr.num_cols)
                grad_w = grad_h.t() @ x if needs[1] else None
                grad_x = grad_h @ weight if needs[0] else None
            else:  # dL/dX = A^T (G W)
                grad_x = _spmm_or_zeros(ctx.spmm, adj_t, grad_out @ weight, csr.num_cols)
        if needs[1] and not ctx.transform_first:
            grad_w = grad_out.t() @ agg
        if needs[2]:
            grad_b = grad_out.sum(0)
        if weight_root is not None:
            if needs[4]:
                grad_wr = grad_out.t() @ root
            if x_root is None and needs[0]:
                grad_x[:csr.num_rows].addmm_(grad_out, weight_root)
            elif x_root is not None and needs[3]:
                grad_xr = grad_out @ weight_root
        return grad_x, grad_w, grad_b, grad_xr, grad_wr, None, None, None, None


SPMM_COST = 5.0
"""Cost of one SpMM multiply-add (an edge times a channel; a random row gather) in units of one
GEMM multiply-add on CPU: ~0.16 ns against ~0.03 ns here (docs/results.md)."""


def _transform_first(weight_shape: torch.Size, need_x: bool, need_w: bool,
                     csr: CSR) -> bool:
    r"""Whether :math:`\mathbf{A}(\mathbf{X}\mathbf{W}^\top)` costs less than
    :math:`(\mathbf{A}\mathbf{X})\mathbf{W}^\top`: the SpMMs (backward ones included) at
    the output or input width, plus the forward GEMM over the source rows (all of
    :math:`\mathbf{X}`) or the target rows only. On a square graph the GEMMs cost the same
    and the SpMM widths decide; on a rectangular one (a layer-wise field: fewer targets than
    sources) aggregating first also saves the GEMM of the rows no target needs."""
    out_channels, in_channels = weight_shape
    spmm = SPMM_COST * csr.num_edges
    transformed = (spmm * out_channels * (1 + (need_x or need_w))
                   + csr.num_cols * in_channels * out_channels)
    aggregated = spmm * in_channels * (1 + need_x) + csr.num_rows * in_channels * out_channels
    return transformed <= aggregated


def _spmm_or_zeros(spmm: Callable[[Tensor, Tensor], Tensor], adj: Tensor | None, x: Tensor,
                   num_rows: int) -> Tensor:
    return x.new_zeros(num_rows, x.size(1)) if adj is None else spmm(adj, x)


LinearKernel = Callable[..., Tensor]


def select_linear_kernel(device: torch.device, reduce: str, dtype: torch.dtype
                         ) -> LinearKernel | None:
    r"""The fused kernel ``(x, weight, bias, x_root, weight_root, edge_weight, csr) -> out`` for
    :math:`\mathbf{A}\mathbf{X}\mathbf{W}^\top + \mathbf{b} + \mathbf{R}\mathbf{W}_r^\top`,
    or ``None`` where the aggregation is not linear (max) or a custom kernel is registered
    for it (then aggregate with :func:`select_kernel` and apply the linear maps after)."""
    kernel = select_kernel(device, reduce, dtype)
    spmm = getattr(kernel, "spmm", None)
    if spmm is None:
        return None
    mean = kernel.mean  # type: ignore[attr-defined]

    def linear_kernel(x: Tensor, weight: Tensor, bias: Tensor | None, x_root: Tensor | None,
                      weight_root: Tensor | None, edge_weight: Tensor | None,
                      csr: CSR) -> Tensor:
        return _SpMMLinear.apply(x, weight, bias, x_root, weight_root, edge_weight, csr, mean,
                                 spmm)
    return linear_kernel


# ---------------------------------------------------------------------------------------------
# max (CPU)

# A float32 has 24 significant bits, a float64 53: widened to float64, the low 29 mantissa bits
# of every float32 are zero.  We store the source index j in the low 28 of them.  The tag is
# below half a float32 ulp, so (a) it never reorders two different float32 values, i.e. the
# float64 max is the float32 max, (b) rounding the max back to float32 drops it exactly, and
# (c) the winning j can be read back from the bits.  This turns ATen's fast, vectorised
# `amax` SpMM (no arg-max) into an arg-max kernel, ~2x faster than its scalar arg-max path.
_TAG_BITS = 28
_TAG_MASK = (1 << _TAG_BITS) - 1
# Work on column blocks below glibc's 32 MiB mmap ceiling: smaller blocks come back from the
# heap, bigger ones are mmap-ed and page-faulted in on every call (~20 ms per 50 MB, as much
# as the SpMM itself).  Widths are multiples of 8 doubles (one cache line per row and block).
_BLOCK_BYTES = 30 * 2**20


def _can_pack(x: Tensor, csr: CSR, edge_weight: Tensor | None) -> bool:
    # Weights would multiply (and smear) the tag; inf/nan have no spare mantissa bits.  A
    # finite sum proves all entries finite (an overflowing one only costs the fast path).
    return (edge_weight is None and x.dtype == torch.float32 and csr.num_cols <= _TAG_MASK
            and math.isfinite(float(x.sum())))


def _column_blocks(num_rows: int, num_cols: int) -> list[slice]:
    width = max(8, _BLOCK_BYTES // (8 * max(num_rows, 1)) // 8 * 8)
    return [slice(start, start + width) for start in range(0, num_cols, width)]


def _packed_argmax(x: Tensor, csr: CSR) -> tuple[Tensor, Tensor]:
    """Float32 max and its arg-max source, see above.

    The sources come back feature-major (``[F, num_rows]``, ``int32``, 0 for empty rows):
    the backward scatter along contiguous rows is ~2x faster than along columns.
    """
    adj = csr.sparse(csr.values(torch.float64))
    tag = torch.arange(x.size(0), device=x.device).unsqueeze(1)
    out = x.new_empty(csr.num_rows, x.size(1))
    src_t = torch.empty(x.size(1), csr.num_rows, dtype=torch.int32, device=x.device)
    for cols in _column_blocks(max(x.size(0), csr.num_rows), x.size(1)):
        tagged = x[:, cols].to(torch.float64, memory_format=torch.contiguous_format)
        tagged.view(torch.int64).bitwise_or_(tag)
        out64 = _REDUCE_IMPL(adj, tagged, "amax")[0]
        out[:, cols] = out64  # exact: rounds the tag away
        src_t[cols] = (out64.view(torch.int64) & _TAG_MASK).t()
    return out, src_t


def _scatter_to_sources(grad_out: Tensor, src_t: Tensor, csr: CSR) -> Tensor:
    r""":math:`\partial L / \partial x_{jf} = \sum_{i:\, \arg\max_{if} = j} g_{if}`."""
    src_t = src_t.long()
    if csr.has_empty_rows:  # no arg-max: send their gradient to a dummy column
        src_t[:, csr.deg == 0] = csr.num_cols
    grad_t = grad_out.new_zeros(grad_out.size(1), csr.num_cols + 1)
    grad_t.scatter_add_(1, src_t, grad_out.t().contiguous())
    return grad_t[:, :-1].t().contiguous()


class _SpMMMax(Function):
    r"""Differentiable :math:`o_{if} = \max_{j \to i} w_{ji} x_{jf}` on CPU."""

    @staticmethod
    def forward(ctx, x: Tensor, edge_weight: Tensor | None, csr: CSR) -> Tensor:
        ctx.csr = csr
        ctx.mode = "none"
        if csr.num_edges == 0:
            return x.new_zeros(csr.num_rows, x.size(1))
        val = _csr_values(csr, edge_weight, x.dtype, mean=False)
        adj = csr.sparse(val)
        if not any(ctx.needs_input_grad[:2]):
            compiled = cpu_kernels.spmm_max(adj, x, with_source=False)
            return _REDUCE_IMPL(adj, x, "amax")[0] if compiled is None else compiled[0]
        # Unweighted, gradient for x only: the max and its source row (the compiled kernel, or
        # ATen's through the packed float64 trick); the backward scatters to the sources.
        compiled = (cpu_kernels.spmm_max(adj, x, with_source=True)
                    if not ctx.needs_input_grad[1] and edge_weight is None else None)
        if compiled is not None:
            ctx.mode = "packed"
            ctx.save_for_backward(compiled[1])
            return compiled[0]
        if not ctx.needs_input_grad[1] and _can_pack(x, csr, edge_weight):
            ctx.mode = "packed"
            out, src = _packed_argmax(x, csr)
            ctx.save_for_backward(src)
            return out
        # ATen computes the arg-max (a CSR position per output entry, `nnz` for empty rows)
        # only when grad mode is on and `x` requires grad:
        ctx.mode = "arg"
        with torch.enable_grad():
            out, arg = _REDUCE_IMPL(adj, x.detach().requires_grad_(), "amax")
        ctx.save_for_backward(x, val, arg)
        return out.detach()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        csr = ctx.csr
        grad_out = grad_out.contiguous()
        grad_x = grad_w = None
        if ctx.mode == "none":  # no edges
            if ctx.needs_input_grad[0]:
                grad_x = grad_out.new_zeros(csr.num_cols, grad_out.size(1))
            if ctx.needs_input_grad[1]:
                grad_w = grad_out.new_zeros(0)
        elif ctx.mode == "packed":
            grad_x = _scatter_to_sources(grad_out, ctx.saved_tensors[0], csr)
        else:
            x, val, arg = ctx.saved_tensors
            grad_adj, grad_x = _REDUCE_IMPL_BACKWARD(
                csr.sparse(val), grad_out, x, "amax", arg,
                [ctx.needs_input_grad[1], ctx.needs_input_grad[0]])
            if ctx.needs_input_grad[1]:
                grad_w = csr.to_edge_order(grad_adj.values())
        return grad_x, grad_w, None


def _max_cpu(x: Tensor, csr: CSR, edge_weight: Tensor | None) -> Tensor:
    return _SpMMMax.apply(x, edge_weight, csr)


# ---------------------------------------------------------------------------------------------
# Reference gather-scatter (any device, any dtype): materialises the E x F messages.

def gather_scatter(x: Tensor, csr: CSR, edge_weight: Tensor | None, reduce: str) -> Tensor:
    r"""Plain PyTorch :math:`\mathbf{o}_i = \bigoplus_{j \to i} w_{ji}\mathbf{x}_j`; autograd
    by PyTorch (for max, ties share the gradient evenly)."""
    msg = x.index_select(0, csr.col)
    if edge_weight is not None:
        msg = msg * edge_weight[csr.perm].unsqueeze(-1)
    out = x.new_zeros(csr.num_rows, x.size(1))
    if reduce == "max":
        index = csr.row.unsqueeze(-1).expand_as(msg)
        return out.scatter_reduce(0, index, msg, "amax", include_self=False)
    out = out.index_add(0, csr.row, msg)
    if reduce == "mean":
        out = out / csr.deg.clamp(min=1).unsqueeze(-1).to(x.dtype)
    return out


def _reference(reduce: str) -> Kernel:
    def kernel(x: Tensor, csr: CSR, edge_weight: Tensor | None) -> Tensor:
        return gather_scatter(x, csr, edge_weight, reduce)
    kernel.__name__ = f"gather_scatter_{reduce}"
    return kernel


# ---------------------------------------------------------------------------------------------
# Dispatch

_CPU_SUM = _sum_kernel(_spmm_cpu, mean=False)
_KERNELS: dict[tuple[str, str], Kernel] = {
    ("cpu", "sum"): _CPU_SUM,
    ("cpu", "mean"): _sum_kernel(_spmm_cpu, mean=True),
    ("cpu", "max"): _max_cpu,
    ("cuda", "sum"): _sum_kernel(_spmm_generic, mean=False),
    ("cuda", "mean"): _sum_kernel(_spmm_generic, mean=True),
    # cuSPARSE has no max semiring; ops/triton registers a fused kernel here.
    ("cuda", "max"): _reference("max"),
}
_FAST_DTYPES = (torch.float32, torch.float64)
REDUCTIONS = ("sum", "mean", "max")


def register_kernel(device_type: str, reduce: str, kernel: Kernel) -> None:
    """Use ``kernel(x, csr, edge_weight)`` for ``reduce`` on ``device_type`` (e.g. a Triton
    kernel for ``"cuda"``).  It must follow the semantics above, including autograd."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"'reduce' must be one of {REDUCTIONS}, got {reduce!r}")
    _KERNELS[(device_type, reduce)] = kernel


def select_kernel(device: torch.device, reduce: str, dtype: torch.dtype) -> Kernel:
    """The fastest correct kernel for this device type, reduction and dtype."""
    if dtype in _FAST_DTYPES:
        kernel = _KERNELS.get((device.type, reduce))
        if kernel is not None:
            return kernel
    # Half precision on CPU, or devices without a sparse backend (MPS, XPU, ...):
    return _reference(reduce)
