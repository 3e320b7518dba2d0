"""Triton scatter kernels against the PyTorch dispatch path, on CPU via the interpreter.

``TRITON_INTERPRET=1`` must be set before ``triton`` is first imported, so in a normal
``pytest`` run :func:`test_triton_kernels_in_interpreter` re-runs this module in a
subprocess with the variable set; the cases below only run inside that subprocess.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
HAS_TRITON = __import__("importlib").util.find_spec("triton") is not None


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def _test_triton_kernels_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
        timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary


if not INTERPRETED:
    test_triton_kernels_in_interpreter = _test_triton_kernels_in_interpreter
else:  # the cases below exist only in the subprocess
    def _case(n, f_in, hidden, f_out, num_experts, k, seed=0, unused=0.2, empty=(1,)):
        sys.path.insert(0, str(Path(__file__).parent))
        from test_dispatch import make_case

        return make_case(n, f_in, hidden, f_out, num_experts, k, unused=unused, empty=empty,
                         seed=seed)


    @pytest.mark.parametrize("shape,blocks", [
        ((37, 13, 19, 7, 5, 2), (16, 16, 16)),  # ragged, non-power-of-two, empty expert 1
        ((37, 13, 19, 7, 5, 2), None),          # default tiles larger than every size
        ((1, 4, 8, 4, 3, 3), (16, 16, 16)),     # one node
        ((90, 20, 24, 12, 4, 2), (16, 16, 16)),  # segments spanning several row tiles
        ((40, 16, 16, 16, 6, 1), None),         # k = 1, every slot used
    ])
    def test_expert_ffn_triton_matches_torch(shape, blocks, monkeypatch):
        from graphmoe.ops.dispatch import expert_ffn
        from graphmoe.ops.triton import scatter_mm

        if blocks is not None:
            monkeypatch.setattr(scatter_mm, "BLOCK_SIZES", blocks)
        unused = 0.0 if shape[-1] == 1 else 0.2
        x, index, weight, w1, w2, b1, b2, tensors = _case(*shape, unused=unused,
                                                          empty=() if unused == 0 else (1,))
        ref = expert_ffn(x, index, weight, w1, w2, b1, b2, backend="torch")
        out = expert_ffn(x, index, weight, w1, w2, b1, b2, backend="triton")
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        grad = torch.randn_like(ref)
        for got, want in zip(torch.autograd.grad(out, tensors, grad),
                             torch.autograd.grad(ref, tensors, grad)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


    @pytest.mark.parametrize("gather,scatter", [(True, False), (False, True), (True, True),
                                                (False, False)])
    def test_scatter_linear_modes(gather, scatter):
        from graphmoe.ops.dispatch import gather_rows, grouped_linear, plan_dispatch
        from graphmoe.ops.triton import scatter_linear

        x, index, _, w1, _, b1, _, _ = _case(29, 11, 18, 5, 4, 2)
        plan = plan_dispatch(index, 4)
        rows = x if gather else gather_rows(x, plan).detach().requires_grad_(True)
        out = scatter_linear(rows, w1, b1, plan, gather=gather, scatter=scatter, blocks=(16, 16, 16))
        ref = grouped_linear(gather_rows(rows, plan) if gather else rows, w1, b1, plan)
        if scatter:
            slots = torch.zeros(plan.num_nodes * plan.k, ref.size(1))
            slots[plan.pair_index] = ref
            ref = slots
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        grad = torch.randn_like(ref)
        inputs = (rows, w1, b1)
        for got, want in zip(torch.autograd.grad(out, inputs, grad),
                             torch.autograd.grad(ref, inputs, grad)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


    def test_triton_all_slots_unused_and_small_blocks_rejected():
        from graphmoe.ops.dispatch import expert_ffn, plan_dispatch
        from graphmoe.ops.triton import scatter_linear

        x, index, weight, w1, w2, b1, b2, tensors = _case(6, 4, 8, 4, 3, 2)
        index = torch.full_like(index, -1)
        out = expert_ffn(x, index, weight, w1, w2, b1, b2, backend="triton")
        assert torch.equal(out, torch.zeros(6, 4))
        out.sum().backward()
        assert not w1.grad.any() and not x.grad.any()
        with pytest.raises(ValueError, match="blocks"):
            scatter_linear(x, w1, b1, plan_dispatch(index, 3), True, False, blocks=(8, 16, 16))
