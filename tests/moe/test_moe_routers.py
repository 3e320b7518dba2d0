"""Routers: selection rules, capacity, expert choice, errors."""
from __future__ import annotations

import math

import pytest
import torch

from graphmoe.moe import (
    ExpertChoiceRouter,
    NoisyTopKRouter,
    SwitchRouter,
    TopKRouter,
    TopPRouter,
    apply_capacity,
)


def identity_gate(router):
    """Makes the router logits equal its input (in_channels == num_experts)."""
    with torch.no_grad():
        router.gate.weight.copy_(torch.eye(router.num_experts))
    return router


def logits_for(probs):
    return torch.tensor(probs).log()


def test_topk_picks_most_probable_and_renormalises():
    router = identity_gate(TopKRouter(4, 4, k=2))
    x = logits_for([[0.1, 0.5, 0.3, 0.1], [0.4, 0.05, 0.05, 0.5]])
    routing = router(x)
    assert routing.expert_index.tolist() == [[1, 2], [3, 0]]
    torch.testing.assert_close(routing.combine_weight, torch.tensor([[5 / 8, 3 / 8],
                                                                     [5 / 9, 4 / 9]]))
    torch.testing.assert_close(routing.router_probs, x.exp())
    raw = identity_gate(TopKRouter(4, 4, k=2, normalize=False))(x)
    torch.testing.assert_close(raw.combine_weight, torch.tensor([[0.5, 0.3], [0.5, 0.4]]))
    assert int(routing.num_dropped) == 0


def test_capacity_drops_lowest_gates_and_counts_them():
    router = identity_gate(SwitchRouter(2, 2, capacity_factor=1.0))  # capacity ceil(4/2) = 2
    x = logits_for([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    routing = router(x)
    assert routing.requested_index.view(-1).tolist() == [0, 0, 0, 1]
    # Expert 0 keeps its two most confident nodes (0.9 and 0.8) and drops node 1.
    assert routing.expert_index.view(-1).tolist() == [0, -1, 0, 1]
    assert routing.combine_weight[1, 0] == 0
    assert int(routing.num_dropped) == 1
    torch.testing.assert_close(routing.combine_weight.view(-1), torch.tensor([0.9, 0, 0.8, 0.7]))


def test_switch_is_dropless_by_default():
    router = SwitchRouter(8, 4)
    routing = router(torch.randn(100, 8))
    assert routing.k == 1 and bool((routing.expert_index >= 0).all())
    torch.testing.assert_close(routing.combine_weight[:, 0], routing.router_probs.max(-1).values)


def test_apply_capacity_respects_capacity_per_expert():
    index = torch.randint(0, 3, (50, 2))
    weight = torch.rand(50, 2)
    kept, kept_weight = apply_capacity(index, weight, 3, capacity=7)
    counts = torch.bincount(kept[kept >= 0], minlength=3)
    assert bool((counts <= 7).all())
    assert torch.equal(counts, torch.bincount(index.view(-1), minlength=3).clamp(max=7))
    assert bool((kept_weight[kept < 0] == 0).all())


def test_noisy_topk_eval_is_deterministic_topk():
    router = NoisyTopKRouter(6, 5, k=2).eval()
    x = torch.randn(30, 6)
    routing = router(x)
    assert torch.equal(routing.expert_index, router.gate(x).topk(2).indices)
    torch.testing.assert_close(routing.combine_weight.sum(-1), torch.ones(30))
    assert routing.load is None


def test_noisy_topk_load_through_normal_cdf():
    router = NoisyTopKRouter(6, 5, k=2).train()
    x = torch.randn(30, 6)
    torch.manual_seed(3)
    routing = router(x)
    torch.manual_seed(3)
    clean = router.gate(x)
    std = torch.nn.functional.softplus(router.noise(x)) + 1e-2
    noisy = clean + torch.randn_like(clean) * std
    top = noisy.topk(3).values
    normal = torch.distributions.Normal(0.0, 1.0)
    prob = torch.where(noisy > top[:, 2:3], normal.cdf((clean - top[:, 2:3]) / std),
                       normal.cdf((clean - top[:, 1:2]) / std))
    torch.testing.assert_close(routing.load, prob.sum(0))
    assert torch.equal(routing.expert_index, noisy.topk(2).indices)
    routing.load.sum().backward()
    assert router.noise.weight.grad is not None and router.gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("p,expected", [(0.5, [[1]]), (0.6, [[1, 2]]), (0.81, [[1, 2, 0]]),
                                        (1.0, [[1, 2, 0, 3]])])
def test_top_p_activates_until_cumulative_mass(p, expected):
    router = identity_gate(TopPRouter(4, 4, p=p))
    routing = router(logits_for([[0.15, 0.5, 0.3, 0.05]]))
    assert routing.expert_index.tolist() == expected
    probs = torch.tensor([0.15, 0.5, 0.3, 0.05])
    torch.testing.assert_close(routing.combine_weight[0], probs[expected[0]])


def test_top_p_variable_count_and_cap():
    x = logits_for([[0.7, 0.1, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2]])
    routing = identity_gate(TopPRouter(4, 4, p=0.6))(x)
    assert (routing.expert_index >= 0).sum(-1).tolist() == [1, 2]
    assert routing.expert_index[0, 1] == -1 and routing.combine_weight[0, 1] == 0
    capped = identity_gate(TopPRouter(4, 4, p=0.99, max_k=2))(x)
    assert capped.k == 2


def test_expert_choice_each_expert_takes_capacity_nodes():
    router = ExpertChoiceRouter(8, 4, capacity_factor=1.0)
    x = torch.randn(10, 8)
    routing = router(x)
    capacity = math.ceil(1.0 * 10 / 4)
    assert routing.expert_counts().tolist() == [capacity] * 4
    probs = routing.router_probs
    for e in range(4):
        nodes = (routing.expert_index == e).any(-1).nonzero().view(-1)
        assert set(nodes.tolist()) == set(probs[:, e].topk(capacity).indices.tolist())
    used = routing.expert_index >= 0
    picked = probs.gather(1, routing.expert_index.clamp(min=0))
    torch.testing.assert_close(routing.combine_weight, picked * used)


@pytest.mark.parametrize("make,match", [
    (lambda: TopKRouter(4, 3, k=4), "'k'"),
    (lambda: TopKRouter(0, 3), "'in_channels'"),
    (lambda: TopKRouter(4, 3, capacity_factor=0.0), "capacity_factor"),
    (lambda: TopPRouter(4, 3, p=0.0), "'p'"),
    (lambda: ExpertChoiceRouter(4, 3, capacity_factor=5.0), "capacity_factor"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    router = TopKRouter(4, 3)
    with pytest.raises(ValueError, match=r"\[num_nodes, 4\]"):
        router(torch.randn(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        router(torch.tensor([[0.0, float("nan"), 1.0, 2.0]]))
    with pytest.raises(ValueError, match="empty"):
        router(torch.randn(0, 4))
    with pytest.raises(TypeError, match="floating"):
        router(torch.ones(2, 4, dtype=torch.long))


def test_repr():
    assert repr(TopKRouter(16, 8, k=2)) == "TopKRouter(16, num_experts=8, k=2)"
    assert repr(SwitchRouter(16, 8)) == "SwitchRouter(16, num_experts=8)"
    assert repr(TopPRouter(16, 8, p=0.4)) == "TopPRouter(16, num_experts=8, p=0.4)"
    assert repr(ExpertChoiceRouter(16, 8)) == "ExpertChoiceRouter(16, num_experts=8, " \
                                              "capacity_factor=2.0)"
