r"""Sorted expert dispatch: route node features to experts with one grouped matmul.

A routing assigns each node :math:`n` up to :math:`k` experts :math:`e_{n,j}` with combine
weights :math:`g_{n,j}` (slot :math:`j` unused when :math:`e_{n,j} = -1`). An expert
feed-forward layer computes

.. math::
    \mathbf{y}_n = \sum_{j:\, e_{n,j} \geq 0} g_{n,j} \,
    \big(\sigma(\mathbf{x}_n \mathbf{W}^{(1)}_{e_{n,j}} + \mathbf{b}^{(1)}_{e_{n,j}})
    \mathbf{W}^{(2)}_{e_{n,j}} + \mathbf{b}^{(2)}_{e_{n,j}}\big).

Instead of running every expert on every node (GMoE, Wang et al. 2023) or looping over
experts in Python, the :math:`P \le Nk` (node, expert) pairs are flattened and sorted by
expert (:func:`plan_dispatch`), so that each expert's rows form one contiguous segment and
the whole layer is a *grouped* matmul over segments (ScatterMoE, Tan et al. 2024,
"Scattered Mixture-of-Experts Implementation"). On CPU the segments run as a loop of
:func:`torch.addmm` over experts (what :func:`torch.nn.functional.grouped_mm` does on CPU
too, minus the fused bias). On CUDA a Triton kernel (:mod:`graphmoe.ops.triton`) gathers
rows by index inside its tile and scatters results back, so activations are never
padded or copied into expert order; without Triton, CUDA uses
:func:`~torch.nn.functional.grouped_mm` where the shapes allow it.

Gradients are first order (the autograd functions are ``once_differentiable``). This
module imports nothing else from graphmoe except :mod:`graphmoe.ops.triton`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "DispatchPlan",
    "plan_dispatch",
    "gather_rows",
    "grouped_linear",
    "combine_rows",
    "expert_ffn",
]

_GROUPED_MM = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)
_GROUPED_MM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass
class DispatchPlan:
    r"""(node, expert) pairs sorted by expert, as built by :func:`plan_dispatch`.

    Sorted position :math:`p \in [0, P)` holds slot ``pair_index[p]`` (a flat index
    :math:`n k + j` into the ``[N, k]`` routing), i.e. node ``node_index[p]``; expert
    :math:`e` owns the segment ``offsets[e]:offsets[e + 1]``.
    """

    num_nodes: int
    k: int
    num_experts: int
    pair_index: Tensor  # [P] long
    node_index: Tensor  # [P] long
    offsets: Tensor  # [E + 1] long
    slot_position: Tensor  # [N, k] long: sorted position of each slot (0 where unused)
    slot_mask: Tensor | None  # [N, k] bool: used slots, None when every slot is used
    _counts: list[int] | None = field(default=None, repr=False)

    @property
    def num_pairs(self) -> int:
        return self.pair_index.numel()

    @property
    def counts(self) -> list[int]:
        """Rows per expert, on the host (one device sync, cached)."""
        if self._counts is None:
            self._counts = self.offsets.diff().tolist()
        return self._counts

    def segments(self):
        """Yields ``(expert, start, end)`` for every non-empty segment."""
        start = 0
        for e, count in enumerate(self.counts):
            if count > 0:
                yield e, start, start + count
            start += count


def plan_dispatch(expert_index: Tensor, num_experts: int) -> DispatchPlan:
    r"""Sorts the (node, expert) pairs of a routing by expert.

    Args:
        expert_index (torch.Tensor): ``[N, k]`` long tensor of experts per node,
            ``-1`` marking an unused slot.
        num_experts (int): The number of experts :math:`E`.
    """
    if not isinstance(expert_index, Tensor) or expert_index.dim() != 2:
        raise ValueError(f"'expert_index' must be a [num_nodes, k] tensor "
                         f"(got {getattr(expert_index, 'shape', type(expert_index))})")
    if expert_index.dtype != torch.long:
        raise TypeError(f"'expert_index' must be torch.long (got {expert_index.dtype})")
    if num_experts < 1:
        raise ValueError(f"'num_experts' must be positive (got {num_experts})")
    num_nodes, k = expert_index.shape
    flat = expert_index.reshape(-1)
    if flat.numel() > 0 and (int(flat.min()) < -1 or int(flat.max()) >= num_experts):
        raise ValueError(f"'expert_index' must hold values in [-1, {num_experts - 1}] "
                         f"(got [{int(flat.min())}, {int(flat.max())}])")
    used = flat >= 0
    # Unused slots sort behind every expert and are cut off.
    key = torch.where(used, flat, num_experts)
    # Narrow keys sort many times faster (a radix sort for uint8 on CPU).
    narrow = torch.uint8 if num_experts < 255 else torch.int32
    _, order = torch.sort(key.to(narrow), stable=True)
    counts = torch.bincount(key, minlength=num_experts + 1)[:num_experts]
    offsets = torch.zeros(num_experts + 1, dtype=torch.long, device=flat.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    num_pairs = int(offsets[-1])
    pair_index = order[:num_pairs]
    position = torch.zeros_like(flat)
    position[pair_index] = torch.arange(num_pairs, device=flat.device)
    all_used = num_pairs == flat.numel()
    return DispatchPlan(
        num_nodes=num_nodes, k=k, num_experts=num_experts, pair_index=pair_index,
        node_index=torch.div(pair_index, k, rounding_mode="floor"), offsets=offsets,
        slot_position=position.view(num_nodes, k),
        slot_mask=None if all_used else used.view(num_nodes, k))


def _sum_slots(rows: Tensor, plan: DispatchPlan, weight: Tensor | None) -> Tensor:
    r""":math:`\mathbf{o}_n = \sum_j w_{n,j} \mathbf{r}_{\mathrm{pos}(n,j)}` with k row gathers."""
    if weight is None and plan.slot_mask is not None:
        weight = plan.slot_mask.to(rows.dtype)
    if plan.num_pairs == 0:
        return rows.new_zeros(plan.num_nodes, rows.size(1))
    out = rows.index_select(0, plan.slot_position[:, 0])
    if weight is not None:
        out.mul_(weight[:, :1])
    for j in range(1, plan.k):
        picked = rows.index_select(0, plan.slot_position[:, j])
        if weight is None:
            out.add_(picked)
        else:
            out.addcmul_(picked, weight[:, j:j + 1])
    return out


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, plan: DispatchPlan) -> Tensor:
        ctx.plan = plan
        return x.index_select(0, plan.node_index)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        # Each node receives the sum of its k slots: k gathers instead of an index_add.
        return _sum_slots(grad.contiguous(), ctx.plan, None), None


def gather_rows(x: Tensor, plan: DispatchPlan) -> Tensor:
    """Copies node rows into expert order: ``x[plan.node_index]``, shape ``[P, F]``."""
    return _GatherRows.apply(x, plan)


def _can_grouped_mm(*tensors: Tensor) -> bool:
    if _GROUPED_MM is None:
        return False
    for t in tensors:
        if t.dtype not in _GROUPED_MM_DTYPES or t.data_ptr() % 16 != 0 or 1 not in t.stride():
            return False
        if any((s * t.element_size()) % 16 for s in t.stride() if s != 1):
            return False
    return True


def _grouped_mm(a: Tensor, b: Tensor, plan: DispatchPlan,
                bias: Tensor | None = None) -> Tensor:
    """``out[s:e] = a[s:e] @ b[expert] (+ bias[expert])`` per segment; ``b`` is ``[E, K, M]``.

    On CPU, ``grouped_mm`` itself loops over groups, so a loop of ``addmm`` that also
    fuses the bias is as fast and saves a pass over the output.
    """
    if a.is_cuda and a.numel() > 0 and _can_grouped_mm(a, b):
        out = _GROUPED_MM(a, b, offs=plan.offsets[1:].to(torch.int32))
        if bias is not None:
            counts = plan.offsets.diff()
            out += bias.repeat_interleave(counts, dim=0, output_size=a.size(0))
        return out
    out = a.new_empty(a.size(0), b.size(-1))
    for e, start, end in plan.segments():
        if bias is None:
            torch.mm(a[start:end], b[e], out=out[start:end])
        else:
            torch.addmm(bias[e], a[start:end], b[e], out=out[start:end])
    return out


def _grouped_mm_weight(a: Tensor, g: Tensor, plan: DispatchPlan) -> Tensor:
    """``out[e] = a[s:e].T @ g[s:e]`` per segment (the weight gradient), ``[E, K, M]``."""
    a_t = a.t()
    if a.is_cuda and a.numel() > 0 and _can_grouped_mm(a_t, g):
        return _GROUPED_MM(a_t, g, offs=plan.offsets[1:].to(torch.int32))
    out = a.new_zeros(plan.num_experts, a.size(1), g.size(1))
    for e, start, end in plan.segments():
        torch.mm(a_t[:, start:end], g[start:end], out=out[e])
    return out


def _segment_sum(g: Tensor, plan: DispatchPlan) -> Tensor:
    out = g.new_zeros(plan.num_experts, g.size(1))
    for e, start, end in plan.segments():
        torch.sum(g[start:end], dim=0, out=out[e])
    return out


class _GroupedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None,
                plan: DispatchPlan) -> Tensor:
        ctx.plan = plan
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return _grouped_mm(x, weight, plan, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        plan = ctx.plan
        # grouped_mm rejects the stride-0 gradients that .sum() hands back.
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _grouped_mm(grad, weight.transpose(1, 2), plan)
        if ctx.needs_input_grad[1]:
            grad_w = _grouped_mm_weight(x, grad, plan)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = _segment_sum(grad, plan)
        return grad_x, grad_w, grad_b, None


def grouped_linear(x: Tensor, weight: Tensor, bias: Tensor | None,
                   plan: DispatchPlan) -> Tensor:
    r"""Segment-wise linear map on rows in expert order.

    .. math::
        \mathbf{Y}_{s_e:s_{e+1}} = \mathbf{X}_{s_e:s_{e+1}} \mathbf{W}_e + \mathbf{b}_e

    Args:
        x (torch.Tensor): ``[P, K]`` rows sorted by expert (:func:`gather_rows`).
        weight (torch.Tensor): Stacked expert weights ``[E, K, M]``.
        bias (torch.Tensor, optional): Stacked expert biases ``[E, M]``.
        plan (DispatchPlan): The sorted routing.
    """
    return _GroupedLinear.apply(x.contiguous(), weight, bias, plan)


class _CombineRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: Tensor, weight: Tensor, plan: DispatchPlan) -> Tensor:
        ctx.plan = plan
        ctx.save_for_backward(rows, weight)
        return _sum_slots(rows, plan, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        rows, weight = ctx.saved_tensors
        plan = ctx.plan
        grad_sorted = grad.contiguous().index_select(0, plan.node_index)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = weight.new_zeros(plan.num_nodes * plan.k)
            grad_weight[plan.pair_index] = torch.linalg.vecdot(grad_sorted, rows)
            grad_weight = grad_weight.view_as(weight)
        weight_sorted = weight.reshape(-1).index_select(0, plan.pair_index)
        return grad_sorted.mul_(weight_sorted.unsqueeze(1)), grad_weight, None


def combine_rows(rows: Tensor, combine_weight: Tensor, plan: DispatchPlan) -> Tensor:
    r"""Weighted sum of each node's expert outputs, back in node order.

    .. math::
        \mathbf{o}_n = \sum_{j:\, e_{n,j} \ge 0} g_{n,j} \, \mathbf{y}_{\mathrm{pos}(n, j)}

    Args:
        rows (torch.Tensor): ``[P, M]`` expert outputs in expert order.
        combine_weight (torch.Tensor): ``[N, k]`` gate values (ignored where unused).
        plan (DispatchPlan): The sorted routing.
    """
    if plan.slot_mask is not None:
        combine_weight = combine_weight.masked_fill(~plan.slot_mask, 0.0)
    return _CombineRows.apply(rows.contiguous(), combine_weight.to(rows.dtype), plan)


def _check_ffn(x: Tensor, expert_index: Tensor, combine_weight: Tensor, w1: Tensor,
               w2: Tensor, b1: Tensor | None, b2: Tensor | None) -> None:
    if x.dim() != 2:
        raise ValueError(f"'x' must be a [num_nodes, channels] tensor (got {tuple(x.shape)})")
    if expert_index.dim() != 2 or expert_index.size(0) != x.size(0):
        raise ValueError(f"'expert_index' must have shape [{x.size(0)}, k] "
                         f"(got {tuple(expert_index.shape)})")
    if combine_weight.shape != expert_index.shape:
        raise ValueError(f"'combine_weight' must have shape {tuple(expert_index.shape)} "
                         f"(got {tuple(combine_weight.shape)})")
    if w1.dim() != 3 or w1.size(1) != x.size(1):
        raise ValueError(f"'w1' must have shape [E, {x.size(1)}, hidden] (got {tuple(w1.shape)})")
    if w2.shape[:2] != (w1.size(0), w1.size(2)):
        raise ValueError(f"'w2' must have shape [{w1.size(0)}, {w1.size(2)}, out] "
                         f"(got {tuple(w2.shape)})")
    for name, b, w in (("b1", b1, w1), ("b2", b2, w2)):
        if b is not None and b.shape != (w.size(0), w.size(2)):
            raise ValueError(f"'{name}' must have shape [{w.size(0)}, {w.size(2)}] "
                             f"(got {tuple(b.shape)})")


def resolve_backend(x: Tensor, backend: str = "auto") -> str:
    """``"triton"`` for CUDA tensors when Triton is installed, else ``"torch"``."""
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"'backend' must be 'auto', 'torch' or 'triton' (got {backend!r})")
    if backend != "auto":
        return backend
    from graphmoe.ops import triton as triton_ops

    return "triton" if x.is_cuda and triton_ops.is_available() else "torch"


def expert_ffn(
    x: Tensor,
    expert_index: Tensor,
    combine_weight: Tensor,
    w1: Tensor,
    w2: Tensor,
    b1: Tensor | None = None,
    b2: Tensor | None = None,
    activation: Callable[[Tensor], Tensor] = F.gelu,
    backend: str = "auto",
) -> Tensor:
    r"""Routed expert feed-forward layer by sorted dispatch (see module docstring).

    Args:
        x (torch.Tensor): Node features ``[N, F_in]``.
        expert_index (torch.Tensor): ``[N, k]`` experts per node, ``-1`` = unused slot.
        combine_weight (torch.Tensor): ``[N, k]`` gate values.
        w1 (torch.Tensor): ``[E, F_in, H]`` stacked first-layer weights.
        w2 (torch.Tensor): ``[E, H, F_out]`` stacked second-layer weights.
        b1, b2 (torch.Tensor, optional): ``[E, H]`` and ``[E, F_out]`` biases.
        activation (callable): Elementwise non-linearity :math:`\sigma`.
        backend (str): ``"auto"`` (Triton on CUDA, PyTorch otherwise), ``"torch"`` or
            ``"triton"`` (on CPU only under ``TRITON_INTERPRET=1``).

    Returns:
        ``[N, F_out]``; nodes without any used slot get zeros.
    """
    _check_ffn(x, expert_index, combine_weight, w1, w2, b1, b2)
    plan = plan_dispatch(expert_index, w1.size(0))
    if resolve_backend(x, backend) == "triton":
        from graphmoe.ops.triton import scatter_linear

        hidden = activation(scatter_linear(x, w1, b1, plan, gather=True, scatter=False))
        slots = scatter_linear(hidden, w2, b2, plan, gather=False, scatter=True)
        weight = combine_weight.to(slots.dtype)
        if plan.slot_mask is not None:
            weight = weight.masked_fill(~plan.slot_mask, 0.0)
        return torch.bmm(weight.unsqueeze(1), slots.view(plan.num_nodes, plan.k, -1)).squeeze(1)
    hidden = activation(grouped_linear(gather_rows(x, plan), w1, b1, plan))
    return combine_rows(grouped_linear(hidden, w2, b2, plan), combine_weight, plan)
