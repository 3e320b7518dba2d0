r"""Row-wise softmax, log-softmax and variance, fast for the few columns of class scores.

ATen's CPU softmax kernels vectorise *along* a row; rows narrower than one vector register
(16 floats) take a scalar path that costs 5-10 ms per call on ``[100000, 5]`` logits, and
``torch.var(dim=-1)`` about as much at any width. Written as whole-tensor operations
(a row reduction, then element-wise maps over the tensor) the same formulas run 3-8x faster
there (``docs/results.md``, "Row-wise softmax"):

.. math::
    \mathrm{softmax}(z)_c = \frac{e^{z_c - m}}{\sum_k e^{z_k - m}}, \qquad
    \log\mathrm{softmax}(z)_c = (z_c - m) - \log \sum_k e^{z_k - m}, \qquad
    m = \max_k z_k,

and the biased variance :math:`\frac{1}{n}\sum_c (p_c - \bar{p})^2` in two passes (no
cancellation). Values agree with ``torch.softmax`` / ``torch.var`` to rounding (~1e-7); they
are differentiable (autograd through the composite operations). Rows of 16 columns or more go
to ATen's kernels, which are faster there.

Without autograd, 2-D CPU float tensors go to compiled row loops (``csrc/rowwise_cpu.cpp``:
the shift and the normalisation row by row around ATen's vectorised ``exp``; the variance in
two passes over each row), another 5-15x faster on ``[100000, 5]`` (docs/results.md).
"""
from __future__ import annotations

import torch
from torch import Tensor

from graphmoe.ops import cpu_kernels

__all__ = ["row_softmax", "row_log_softmax", "row_variance"]

NARROW = 16
"""Softmaxes of rows narrower than this use the compiled row loops or the composite formulas
(wider ones ATen's kernel)."""


def _check(x: Tensor) -> None:
    if x.dim() < 1 or x.size(-1) == 0:
        raise ValueError(f"expected a tensor with at least one column, got shape "
                         f"{tuple(x.shape)}")


def _compiled(x: Tensor) -> bool:
    """Whether the compiled row loops may take ``x``: no gradient to record (the kernels
    themselves decline other shapes, dtypes and devices)."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def row_softmax(x: Tensor) -> Tensor:
    """``torch.softmax(x, dim=-1)``, faster for rows of fewer than 16 entries."""
    _check(x)
    if x.size(-1) >= NARROW or not x.is_floating_point():
        return x.softmax(dim=-1)
    if _compiled(x):
        out = cpu_kernels.narrow_softmax(x)
        if out is not None:
            return out
    shifted = x - x.amax(dim=-1, keepdim=True)
    if torch.is_grad_enabled() and x.requires_grad:
        exp = shifted.exp()
        return exp / exp.sum(dim=-1, keepdim=True)
    exp = shifted.exp_()  # no autograd: reuse the buffers
    return exp.div_(exp.sum(dim=-1, keepdim=True))


def row_log_softmax(x: Tensor) -> Tensor:
    """``torch.log_softmax(x, dim=-1)``, faster for rows of fewer than 16 entries."""
    _check(x)
    if x.size(-1) >= NARROW or not x.is_floating_point():
        return x.log_softmax(dim=-1)
    shifted = x - x.amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def row_variance(x: Tensor) -> Tensor:
    """Biased variance of every row, ``torch.var(x, dim=-1, unbiased=False)``; shape
    ``x.shape[:-1]``."""
    _check(x)
    if _compiled(x):
        out = cpu_kernels.narrow_variance(x)
        if out is not None:
            return out
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred.square().mean(dim=-1)
