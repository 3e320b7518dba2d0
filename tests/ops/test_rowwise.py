"""Row-wise softmax, log-softmax and variance (graphmoe.ops.rowwise) against ATen."""
from __future__ import annotations

import pytest
import torch

from graphmoe.ops import cpu_kernels, row_log_softmax, row_softmax, row_variance


@pytest.fixture(params=["compiled", "composite"], autouse=True)
def implementation(request, monkeypatch):
    """Both implementations: the compiled row loops (no autograd, 2-D CPU) and the composite
    formulas they stand in for."""
    if request.param == "compiled" and not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    if request.param == "composite":
        monkeypatch.setattr(cpu_kernels, "narrow_softmax", lambda x: None)
        monkeypatch.setattr(cpu_kernels, "narrow_variance", lambda x: None)
    return request.param


@pytest.mark.parametrize("width", [1, 2, 5, 15, 16, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_match_aten(width, dtype):
    x = torch.randn(300, width, dtype=dtype) * 4.0
    x[0] = 1e4  # large equal logits: the shift by the row maximum keeps exp finite
    x[1, 0] = -1e4
    torch.testing.assert_close(row_softmax(x), x.softmax(-1))
    torch.testing.assert_close(row_log_softmax(x), x.log_softmax(-1))
    torch.testing.assert_close(row_variance(x), x.var(-1, unbiased=False))


def test_softmax_leaves_its_input_alone_and_handles_batches():
    x = torch.randn(4, 7, 3)
    before = x.clone()
    torch.testing.assert_close(row_softmax(x), x.softmax(-1))
    assert torch.equal(x, before)
    assert row_variance(x).shape == (4, 7)


@pytest.mark.parametrize("fn", [row_softmax, row_log_softmax, row_variance])
def test_gradients_match_aten(fn):
    reference = {row_softmax: lambda t: t.softmax(-1),
                 row_log_softmax: lambda t: t.log_softmax(-1),
                 row_variance: lambda t: t.var(-1, unbiased=False)}[fn]
    x = torch.randn(50, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn_like(reference(x))
    (grad,) = torch.autograd.grad((fn(x) * weights).sum(), x)
    (expected,) = torch.autograd.grad((reference(x) * weights).sum(), x)
    torch.testing.assert_close(grad, expected)
    assert torch.autograd.gradcheck(fn, (x[:6].detach().requires_grad_(),))


def test_nan_propagates_to_its_row_only():
    x = torch.randn(3, 4)
    x[1, 2] = float("nan")
    probs = row_softmax(x)
    assert probs[1].isnan().all() and not probs[[0, 2]].isnan().any()
    assert row_variance(x)[1].isnan() and not row_variance(x)[[0, 2]].isnan().any()


def test_no_columns_is_an_error():
    with pytest.raises(ValueError, match="at least one column"):
        row_softmax(torch.empty(3, 0))
    with pytest.raises(ValueError, match="at least one column"):
        row_variance(torch.empty(0))


def test_infinite_scores_and_strided_input():
    x = torch.randn(5, 6).t()  # [6, 5], not contiguous
    x[0, 1] = float("-inf")  # that class gets probability 0
    x[2, 3] = float("inf")  # inf - inf: the row is NaN, as in ATen
    probs, expected = row_softmax(x), x.softmax(-1)
    assert probs[0, 1] == 0 and probs[2].isnan().all()
    torch.testing.assert_close(probs[[0, 1, 3, 4, 5]], expected[[0, 1, 3, 4, 5]])
    torch.testing.assert_close(row_variance(x[[1, 3]]), x[[1, 3]].var(-1, unbiased=False))


def test_no_rows():
    assert row_softmax(torch.empty(0, 4)).shape == (0, 4)
    assert row_variance(torch.empty(0, 4)).shape == (0,)
