"""Sorted expert dispatch (PyTorch path) against dense references."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from graphmoe.ops.dispatch import (
    combine_rows,
    expert_ffn,
    gather_rows,
    grouped_linear,
    plan_dispatch,
)


def dense_ffn(x, expert_index, combine_weight, w1, w2, b1, b2, act=F.gelu):
    """Every expert on every node, masked by the routing."""
    hidden = torch.einsum("nf,efh->neh", x, w1)
    hidden = act(hidden + b1 if b1 is not None else hidden)
    out = torch.einsum("neh,eho->neo", hidden, w2)
    out = out + b2 if b2 is not None else out
    used = expert_index >= 0
    picked = out.gather(1, expert_index.clamp(min=0).unsqueeze(-1).expand(-1, -1, out.size(2)))
    return (picked * (combine_weight * used).unsqueeze(-1)).sum(1)


def make_case(n, f_in, hidden, f_out, num_experts, k, unused=0.2, empty=(1,), seed=0,
              dtype=torch.float32, bias=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f_in, generator=gen, dtype=dtype)
    index = torch.stack([torch.randperm(num_experts, generator=gen)[:k] for _ in range(n)])
    index[torch.rand(n, k, generator=gen) < unused] = -1
    for e in empty:
        index[index == e] = -1
    weight = torch.rand(n, k, generator=gen, dtype=dtype)
    w1 = torch.randn(num_experts, f_in, hidden, generator=gen, dtype=dtype)
    w2 = torch.randn(num_experts, hidden, f_out, generator=gen, dtype=dtype)
    b1 = torch.randn(num_experts, hidden, generator=gen, dtype=dtype) if bias else None
    b2 = torch.randn(num_experts, f_out, generator=gen, dtype=dtype) if bias else None
    tensors = [x, weight, w1, w2] + ([b1, b2] if bias else [])
    for t in tensors:
        t.requires_grad_(True)
    return x, index, weight, w1, w2, b1, b2, tensors


def test_plan_sorts_pairs_by_expert():
    index = torch.tensor([[2, 0], [-1, 2], [0, -1], [3, 2]])
    plan = plan_dispatch(index, num_experts=4)
    assert plan.offsets.tolist() == [0, 2, 2, 5, 6]  # expert 1 is empty
    assert plan.counts == [2, 0, 3, 1]
    flat = index.view(-1)
    assert flat[plan.pair_index].tolist() == [0, 0, 2, 2, 2, 3]
    assert plan.node_index.tolist() == (plan.pair_index // 2).tolist()
    assert plan.slot_mask.tolist() == (index >= 0).tolist()
    used = index >= 0
    assert torch.equal(plan.pair_index[plan.slot_position[used]], torch.nonzero(
        used.view(-1)).view(-1))


@pytest.mark.parametrize("bad,error", [
    (torch.tensor([[0, 4]]), ValueError),
    (torch.tensor([[-2, 0]]), ValueError),
    (torch.tensor([0, 1]), ValueError),
    (torch.tensor([[0.0, 1.0]]), TypeError),
])
def test_plan_rejects_bad_index(bad, error):
    with pytest.raises(error, match="expert_index"):
        plan_dispatch(bad, num_experts=4)


@pytest.mark.parametrize("shape", [
    (37, 13, 19, 7, 5, 2),   # non-power-of-two, unaligned: per-segment loop
    (64, 16, 32, 8, 4, 2),   # aligned float32: grouped_mm
    (1, 4, 8, 4, 3, 3),      # one node, k = E
    (50, 8, 16, 12, 6, 1),   # k = 1
])
def test_expert_ffn_matches_dense(shape):
    x, index, weight, w1, w2, b1, b2, tensors = make_case(*shape)
    ref = dense_ffn(x, index, weight, w1, w2, b1, b2)
    out = expert_ffn(x, index, weight, w1, w2, b1, b2, backend="torch")
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, tensors, grad),
                         torch.autograd.grad(ref, tensors, grad)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_expert_ffn_without_bias_and_relu():
    x, index, weight, w1, w2, _, _, tensors = make_case(20, 8, 12, 4, 4, 2, bias=False)
    ref = dense_ffn(x, index, weight, w1, w2, None, None, act=torch.relu)
    out = expert_ffn(x, index, weight, w1, w2, activation=torch.relu)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_expert_ffn_all_slots_unused():
    x, index, weight, w1, w2, b1, b2, tensors = make_case(6, 4, 8, 4, 3, 2)
    index = torch.full_like(index, -1)
    out = expert_ffn(x, index, weight, w1, w2, b1, b2)
    assert torch.equal(out, torch.zeros(6, 4))
    out.sum().backward()
    assert all(t.grad is None or not t.grad.any() for t in tensors)


def test_gradcheck_float64():
    x, index, weight, w1, w2, b1, b2, tensors = make_case(9, 3, 5, 2, 4, 2, dtype=torch.float64)
    plan = plan_dispatch(index, 4)

    def fn(x, weight, w1, w2, b1, b2):
        hidden = torch.tanh(grouped_linear(gather_rows(x, plan), w1, b1, plan))
        return combine_rows(grouped_linear(hidden, w2, b2, plan), weight, plan)

    assert torch.autograd.gradcheck(fn, tuple(tensors))


def test_expert_ffn_rejects_bad_shapes():
    x, index, weight, w1, w2, b1, b2, _ = make_case(5, 4, 8, 4, 3, 2)
    with pytest.raises(ValueError, match="'x'"):
        expert_ffn(x[0], index, weight, w1, w2)
    with pytest.raises(ValueError, match="'expert_index'"):
        expert_ffn(x, index[:3], weight, w1, w2)
    with pytest.raises(ValueError, match="'combine_weight'"):
        expert_ffn(x, index, weight[:, :1], w1, w2)
    with pytest.raises(ValueError, match="'w1'"):
        expert_ffn(x, index, weight, w1[:, :2], w2)
    with pytest.raises(ValueError, match="'w2'"):
        expert_ffn(x, index, weight, w1, w2[:, :3])
    with pytest.raises(ValueError, match="'b2'"):
        expert_ffn(x, index, weight, w1, w2, b1, b2[:, :1])
    with pytest.raises(ValueError, match="backend"):
        expert_ffn(x, index, weight, w1, w2, backend="cuda")


def test_backend_resolution_on_cpu():
    from graphmoe.ops.dispatch import resolve_backend

    assert resolve_backend(torch.zeros(1), "auto") == "torch"
    assert resolve_backend(torch.zeros(1), "triton") == "triton"
