"""The MoE layer against a dense reference (every expert on every node)."""
from __future__ import annotations

import pytest
import torch

from graphmoe.moe import MoE, TopKRouter


def dense_reference(moe: MoE, x: torch.Tensor, routing) -> torch.Tensor:
    """All routed experts on all nodes, masked by the routing, plus the shared experts."""
    outputs = torch.stack([moe.experts.expert(x, e) for e in range(moe.experts.num_experts)], 1)
    index = routing.expert_index
    used = (index >= 0).to(x.dtype)
    picked = outputs.gather(1, index.clamp(min=0).unsqueeze(-1).expand(-1, -1, outputs.size(2)))
    out = (picked * (routing.combine_weight * used).unsqueeze(-1)).sum(1)
    return out + moe.shared(x) if moe.shared is not None else out


def check_against_dense(moe: MoE, x: torch.Tensor) -> None:
    x = x.requires_grad_(True)
    params = [x] + [p for p in moe.parameters() if p.requires_grad]
    torch.manual_seed(0)
    out, aux = moe(x)
    ref = dense_reference(moe, x, aux.routing)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, params, grad, allow_unused=True, retain_graph=True)
    want = torch.autograd.grad(ref, params, grad, allow_unused=True)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(router="noisy_topk", k=3),
    dict(router="switch", k=1, router_kwargs={"capacity_factor": 1.0}),
    dict(router="top_p", k=6, router_kwargs={"p": 0.5}),
    dict(router="expert_choice", k=2),
    dict(router="topk", router_kwargs={"capacity_factor": 0.5}),
])
def test_matches_dense_reference(kwargs):
    torch.manual_seed(1)
    moe = MoE(12, 7, num_experts=6, hidden_channels=10, **kwargs)
    check_against_dense(moe, torch.randn(40, 12))


def test_shared_experts_and_segmentation():
    torch.manual_seed(2)
    moe = MoE(12, 12, num_experts=4, k=2, hidden_channels=16, num_shared_experts=2,
              granularity=4)
    assert moe.router.num_experts == 16 and moe.router.k == 8
    assert moe.experts.hidden_channels == 4
    assert moe.shared[0].out_features == 2 * 4
    # Segmentation keeps the routed parameter count of the coarse layer.
    coarse = MoE(12, 12, num_experts=4, k=2, hidden_channels=16)
    assert moe.experts.w1.numel() == coarse.experts.w1.numel()
    check_against_dense(moe, torch.randn(30, 12))
    out, aux = moe(torch.randn(30, 12))
    assert "balance" in aux.losses and moe.balance_loss == "expert_balance"


def test_single_node_and_unaligned_sizes():
    moe = MoE(5, 3, num_experts=3, k=3, hidden_channels=7)
    check_against_dense(moe, torch.randn(1, 5))


def test_aux_loss_is_weighted_sum_and_trains_router():
    torch.manual_seed(3)
    moe = MoE(8, 8, num_experts=4, k=2, balance_loss="cv", balance_loss_weight=0.5,
              z_loss_weight=0.1, entropy_loss_weight=0.2)
    out, aux = moe(torch.randn(25, 8))
    assert set(aux.losses) == {"balance", "z", "entropy"}
    expected = 0.5 * aux.losses["balance"] + 0.1 * aux.losses["z"] + 0.2 * aux.losses["entropy"]
    torch.testing.assert_close(aux.loss, expected)
    aux.loss.backward()
    assert moe.router.gate.weight.grad.abs().sum() > 0
    assert aux.stats.load.sum() == 50


def test_no_aux_loss():
    moe = MoE(8, 8, num_experts=4, balance_loss=None)
    out, aux = moe(torch.randn(5, 8))
    assert aux.losses == {} and aux.loss == 0
    assert MoE(8, 8, router="expert_choice").balance_loss is None
    assert MoE(8, 8, router="noisy_topk").balance_loss == "cv"
    assert MoE(8, 8).balance_loss == "switch"


def test_custom_router_and_reset_parameters():
    router = TopKRouter(8, 4, k=1)
    moe = MoE(8, 4, num_experts=4, k=1, router=router)
    assert moe.router is router
    before = moe.experts.w1.detach().clone()
    moe.reset_parameters()
    assert not torch.equal(before, moe.experts.w1)
    with pytest.raises(ValueError, match="'router' must map"):
        MoE(8, 4, num_experts=5, router=router)


def test_repr():
    assert repr(MoE(64, 64, num_experts=8, k=2)) == "MoE(64, 64, num_experts=8, k=2)"
    assert repr(MoE(64, 32, router="switch", k=1, num_shared_experts=1)) == \
        "MoE(64, 32, num_experts=8, k=1, router='switch', num_shared_experts=1)"
    assert "granularity=2" in repr(MoE(64, 64, granularity=2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_experts=4, k=5), "'k' must be at most"),
    (dict(router="switch", k=2), "router='switch'"),
    (dict(router="gating"), "'router' must be one of"),
    (dict(hidden_channels=10, granularity=4), "divisible"),
    (dict(balance_loss="gshard"), "'balance_loss'"),
    (dict(num_experts=0), "'num_experts'"),
    (dict(num_shared_experts=-1), "'num_shared_experts'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MoE(8, 8, **kwargs)


def test_bad_inputs():
    moe = MoE(8, 8, num_experts=4)
    with pytest.raises(ValueError, match=r"'x' must have shape \[num_nodes, 8\]"):
        moe(torch.randn(5, 7))
    with pytest.raises(ValueError, match=r"'x' must have shape"):
        moe(torch.randn(2, 5, 8))
    x = torch.randn(5, 8)
    x[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        moe(x)
