r"""Scattered grouped matmul for sorted expert dispatch (Triton).

One kernel computes, for every sorted (node, expert) pair :math:`p` of a
:class:`~graphmoe.ops.dispatch.DispatchPlan` with expert :math:`e_p`,

.. math::
    \mathbf{Y}_{\mathrm{dst}(p)} = \mathbf{X}_{\mathrm{src}(p)} \mathbf{W}_{e_p} + \mathbf{b}_{e_p},

where :math:`\mathrm{src}(p)` is the node of the pair (``gather=True``) or :math:`p`, and
:math:`\mathrm{dst}(p)` is its slot :math:`nk+j` (``scatter=True``) or :math:`p`. Each tile
of rows belongs to one expert and loads its rows by index, so activations are never
copied into expert order nor padded to a capacity (ScatterMoE, Tan et al. 2024,
"Scattered Mixture-of-Experts Implementation"). The backward pass reuses the kernel with
:math:`\mathbf{W}^\top` for the input gradient, and a second kernel accumulates
:math:`\mathbf{X}_e^\top \mathbf{G}_e` (and the bias gradient) per expert, again reading rows
by index.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from graphmoe.ops.dispatch import DispatchPlan
from graphmoe.ops.triton import is_interpreted

__all__ = ["scatter_linear"]

BLOCK_SIZES = (64, 64, 32)  # (rows, output columns, reduction) per tile


@triton.jit
def _scatter_mm_kernel(
    x_ptr, stride_xm, stride_xk,
    w_ptr, stride_we, stride_wk, stride_wn,
    b_ptr, stride_be, stride_bn,
    y_ptr, stride_ym, stride_yn,
    src_ptr, dst_ptr, block_expert_ptr, block_start_ptr, offsets_ptr,
    K, N,
    HAS_BIAS: tl.constexpr, GATHER: tl.constexpr, SCATTER: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m)
    start = tl.load(block_start_ptr + pid_m)
    end = tl.load(offsets_ptr + expert + 1)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < end
    if GATHER:
        src = tl.load(src_ptr + rows, mask=row_mask, other=0)
    else:
        src = rows
    if SCATTER:
        dst = tl.load(dst_ptr + rows, mask=row_mask, other=0)
    else:
        dst = rows
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    red = tl.arange(0, BLOCK_K)
    w_base = w_ptr + expert * stride_we
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + red
        k_mask = ks < K
        a = tl.load(x_ptr + src[:, None] * stride_xm + ks[None, :] * stride_xk,
                    mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        b = tl.load(w_base + ks[:, None] * stride_wk + cols[None, :] * stride_wn,
                    mask=k_mask[:, None] & col_mask[None, :], other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION)
    if HAS_BIAS:
        bias = tl.load(b_ptr + expert * stride_be + cols * stride_bn, mask=col_mask, other=0.0)
        acc += bias.to(tl.float32)[None, :]
    tl.store(y_ptr + dst[:, None] * stride_ym + cols[None, :] * stride_yn,
             acc.to(y_ptr.dtype.element_ty), mask=row_mask[:, None] & col_mask[None, :])


@triton.jit
def _scatter_xty_kernel(
    x_ptr, stride_xm, stride_xk,
    g_ptr, stride_gm, stride_gn,
    dw_ptr, stride_de, stride_dk, stride_dn,
    db_ptr, stride_dbe, stride_dbn,
    src_ptr, dst_ptr, offsets_ptr,
    K, N,
    HAS_BIAS: tl.constexpr, GATHER: tl.constexpr, SCATTER: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    expert = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_n = tl.program_id(2)
    start = tl.load(offsets_ptr + expert)
    end = tl.load(offsets_ptr + expert + 1)
    ks = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    k_mask = ks < K
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    bias_acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for m0 in range(start, end, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_mask = rows < end
        if GATHER:
            src = tl.load(src_ptr + rows, mask=row_mask, other=0)
        else:
            src = rows
        if SCATTER:
            dst = tl.load(dst_ptr + rows, mask=row_mask, other=0)
        else:
            dst = rows
        xt = tl.load(x_ptr + src[None, :] * stride_xm + ks[:, None] * stride_xk,
                     mask=k_mask[:, None] & row_mask[None, :], other=0.0)
        g = tl.load(g_ptr + dst[:, None] * stride_gm + cols[None, :] * stride_gn,
                    mask=row_mask[:, None] & col_mask[None, :], other=0.0)
        acc += tl.dot(xt, g, input_precision=PRECISION)
        if HAS_BIAS:
            bias_acc += tl.sum(g.to(tl.float32), axis=0)
    tl.store(dw_ptr + expert * stride_de + ks[:, None] * stride_dk + cols[None, :] * stride_dn,
             acc.to(dw_ptr.dtype.element_ty), mask=k_mask[:, None] & col_mask[None, :])
    if HAS_BIAS:
        if pid_k == 0:
            tl.store(db_ptr + expert * stride_dbe + cols * stride_dbn,
                     bias_acc.to(db_ptr.dtype.element_ty), mask=col_mask)


def _precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and not is_interpreted() and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def _row_blocks(plan: DispatchPlan, block_m: int) -> tuple[Tensor, Tensor]:
    """Tiles of at most ``block_m`` rows that never straddle two experts, without a sync.

    There are at most ``ceil(P / block_m) + E`` tiles; surplus tiles start at ``P`` and
    are fully masked.
    """
    num_experts, num_pairs = plan.num_experts, plan.num_pairs
    counts = plan.offsets.diff()
    tiles = torch.div(counts + block_m - 1, block_m, rounding_mode="floor")
    ends = tiles.cumsum(0)
    max_tiles = triton.cdiv(num_pairs, block_m) + num_experts
    tile = torch.arange(max_tiles, device=counts.device)
    expert = torch.searchsorted(ends, tile, right=True)
    valid = expert < num_experts
    expert = expert.clamp(max=num_experts - 1)
    start = plan.offsets[expert] + (tile - (ends[expert] - tiles[expert])) * block_m
    start = torch.where(valid, start, torch.full_like(start, num_pairs))
    return expert.contiguous(), start.contiguous()


def _scatter_mm(x: Tensor, w_strides: tuple[int, int, int], w: Tensor, bias: Tensor | None,
                out: Tensor, plan: DispatchPlan, src: Tensor, dst: Tensor, gather: bool,
                scatter: bool, k_dim: int, n_dim: int, blocks: tuple[int, int, int]) -> None:
    block_m, block_n, block_k = blocks
    expert, start = _row_blocks(plan, block_m)
    grid = (expert.numel(), triton.cdiv(n_dim, block_n))
    bias_arg = bias if bias is not None else out
    bias_strides = bias.stride() if bias is not None else (0, 0)
    _scatter_mm_kernel[grid](
        x, x.stride(0), x.stride(1), w, *w_strides, bias_arg, *bias_strides,
        out, out.stride(0), out.stride(1), src, dst, expert, start, plan.offsets,
        k_dim, n_dim, HAS_BIAS=bias is not None, GATHER=gather, SCATTER=scatter,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, PRECISION=_precision(x.dtype))


def _scatter_xty(x: Tensor, grad: Tensor, plan: DispatchPlan, gather: bool, scatter: bool,
                 with_bias: bool, blocks: tuple[int, int, int],
                 dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    block_m, block_n, block_k = blocks
    k_dim, n_dim = x.size(1), grad.size(1)
    grad_w = torch.empty(plan.num_experts, k_dim, n_dim, device=x.device, dtype=dtype)
    grad_b = torch.empty(plan.num_experts, n_dim, device=x.device, dtype=dtype) \
        if with_bias else None
    db_arg = grad_b if grad_b is not None else grad_w
    db_strides = grad_b.stride() if grad_b is not None else (0, 0)
    grid = (plan.num_experts, triton.cdiv(k_dim, block_k), triton.cdiv(n_dim, block_n))
    _scatter_xty_kernel[grid](
        x, x.stride(0), x.stride(1), grad, grad.stride(0), grad.stride(1),
        grad_w, *grad_w.stride(), db_arg, *db_strides,
        plan.node_index, plan.pair_index, plan.offsets, k_dim, n_dim,
        HAS_BIAS=with_bias, GATHER=gather, SCATTER=scatter,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, PRECISION=_precision(x.dtype))
    return grad_w, grad_b


def _output(plan: DispatchPlan, scatter: bool, cols: int, like: Tensor) -> Tensor:
    if not scatter:
        return like.new_empty(plan.num_pairs, cols)
    # Unused slots are never written and must read as zero.
    alloc = like.new_zeros if plan.slot_mask is not None else like.new_empty
    return alloc(plan.num_nodes * plan.k, cols)


class _ScatterLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, plan: DispatchPlan,
                gather: bool, scatter: bool, blocks: tuple[int, int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.plan, ctx.gather, ctx.scatter, ctx.blocks = plan, gather, scatter, blocks
        ctx.has_bias = bias is not None
        out = _output(plan, scatter, weight.size(2), x)
        if plan.num_pairs > 0:
            _scatter_mm(x, weight.stride(), weight, bias, out, plan, plan.node_index,
                        plan.pair_index, gather, scatter, weight.size(1), weight.size(2), blocks)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        plan, gather, scatter, blocks = ctx.plan, ctx.gather, ctx.scatter, ctx.blocks
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _output(plan, gather, weight.size(1), grad)
            if plan.num_pairs > 0:
                # dX = dY W^T: the roles of gather and scatter swap.
                w_t = (weight.stride(0), weight.stride(2), weight.stride(1))
                _scatter_mm(grad, w_t, weight, None, grad_x, plan, plan.pair_index,
                            plan.pair_index, scatter, gather, weight.size(2),
                            weight.size(1), blocks)
            if gather:
                grad_x = grad_x.view(plan.num_nodes, plan.k, -1).sum(1)
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1] or need_b:
            grad_w, grad_b = _scatter_xty(x, grad, plan, gather, scatter, need_b, blocks,
                                          weight.dtype)
        return grad_x, grad_w, grad_b, None, None, None, None


def scatter_linear(x: Tensor, weight: Tensor, bias: Tensor | None, plan: DispatchPlan,
                   gather: bool, scatter: bool,
                   blocks: tuple[int, int, int] | None = None) -> Tensor:
    r"""Grouped expert linear map reading and writing rows by index (see module doc).

    Args:
        x (torch.Tensor): ``[N, K]`` node rows (``gather=True``) or ``[P, K]`` rows in
            expert order.
        weight (torch.Tensor): ``[E, K, M]`` stacked expert weights.
        bias (torch.Tensor, optional): ``[E, M]`` stacked expert biases.
        plan (DispatchPlan): The sorted routing.
        gather (bool): Read row ``plan.node_index[p]`` of ``x`` for pair ``p``.
        scatter (bool): Write pair ``p`` to slot row ``plan.pair_index[p]`` of an
            ``[N * k, M]`` output (zeros in unused slots) instead of row ``p``.
        blocks (tuple, optional): Tile sizes ``(rows, columns, reduction)``, each >= 16.
    """
    blocks = blocks or BLOCK_SIZES
    if min(blocks) < 16:
        raise ValueError(f"'blocks' must all be >= 16 for tl.dot (got {blocks})")
    return _ScatterLinear.apply(x.contiguous(), weight, bias, plan, gather, scatter, blocks)
