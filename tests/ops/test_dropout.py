"""graphmoe.ops.dropout / graphmoe.models.Dropout against torch's dropout semantics."""
from __future__ import annotations

import pytest
import torch

from graphmoe.models import Dropout
from graphmoe.ops import dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keeps_each_entry_with_probability_one_minus_p_and_rescales(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    out = dropout(x, p)
    kept = out != 0
    assert abs(float(kept.float().mean()) - (1 - p)) < 3e-3
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    assert abs(float(out.mean()) - 1.0) < 1e-2  # unbiased


def test_gradient_is_the_kept_mask_scaled():
    x = torch.randn(200, 7, dtype=torch.float64, requires_grad=True)
    out = dropout(x, 0.3)
    (grad,) = torch.autograd.grad(out.sum(), x)
    keep = (out.detach() != 0).to(x.dtype) / 0.7
    torch.testing.assert_close(grad, keep)
    torch.testing.assert_close(out, x * keep)


def test_seeded_and_not_in_place():
    x = torch.randn(50, 5)
    before = x.clone()
    torch.manual_seed(3)
    first = dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5), first)
    assert torch.equal(x, before)


def test_identity_and_edge_cases():
    x = torch.randn(10, 3)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(x, 1.5)


def test_module_follows_train_and_eval_modes():
    layer = Dropout(0.5)
    assert repr(layer) == "Dropout(p=0.5)"
    x = torch.ones(1000)
    assert (layer(x) == 0).any()
    assert torch.equal(layer.eval()(x), x)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(-0.1)
