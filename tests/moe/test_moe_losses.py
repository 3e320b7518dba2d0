"""Balancing losses and routing statistics against hand computations."""
from __future__ import annotations

import math

import pytest
import torch

from graphmoe.moe import (
    Routing,
    balancing_loss,
    cv_squared,
    expert_balance_loss,
    importance_loss,
    load_loss,
    router_entropy_loss,
    router_z_loss,
    routing_stats,
    switch_loss,
)


def make_routing(probs, index, weight, requested=None, load=None):
    probs = torch.tensor(probs)
    index = torch.tensor(index)
    return Routing(index, torch.tensor(weight), probs.log(), probs,
                   requested_index=index if requested is None else torch.tensor(requested),
                   load=load)


def test_cv_squared():
    # mean 2, population variance 2/3.
    torch.testing.assert_close(cv_squared(torch.tensor([1.0, 2.0, 3.0])),
                               torch.tensor(1 / 6), atol=1e-6, rtol=0)
    assert cv_squared(torch.tensor([4.0])) == 0
    assert cv_squared(torch.tensor([2.0, 2.0])) == 0


def test_switch_loss_by_hand():
    probs = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])
    index = torch.tensor([[0], [0], [1]])
    # f = (2/3, 1/3), P = (0.5, 0.5): 2 * (2/3 * 0.5 + 1/3 * 0.5) = 1.
    torch.testing.assert_close(switch_loss(probs, index), torch.tensor(1.0))
    index = torch.tensor([[0], [0], [0]])  # collapsed: f = (1, 0), P = (0.9, 0.1) -> 1.8
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    torch.testing.assert_close(switch_loss(probs, index), torch.tensor(1.8))


def test_switch_loss_ignores_unused_slots_and_is_one_when_uniform():
    probs = torch.full((4, 4), 0.25)
    index = torch.tensor([[0, 1], [2, 3], [1, -1], [-1, 0]])
    # f = (2, 2, 1, 1) / 6, P = 1/4 each -> 4 * 1/4 = 1.
    torch.testing.assert_close(switch_loss(probs, index), torch.tensor(1.0))


def test_expert_balance_loss_by_hand():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    index = torch.tensor([[0, 1], [1, -1]])
    # f_i = N'/(K'T) * count = 3/4 * (1, 2, 0); P = (0.3, 0.45, 0.25).
    expected = 0.75 * (1 * 0.3 + 2 * 0.45)
    torch.testing.assert_close(expert_balance_loss(probs, index), torch.tensor(expected))
    full = torch.tensor([[0, 1], [1, 2]])
    torch.testing.assert_close(expert_balance_loss(probs, full), switch_loss(probs, full))


def test_importance_and_load_losses():
    gates = torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5]])
    importance = torch.tensor([0.6, 0.9, 0.5])
    torch.testing.assert_close(importance_loss(gates), cv_squared(importance))
    mean = importance.mean()
    torch.testing.assert_close(importance_loss(gates),
                               ((importance - mean) ** 2).mean() / mean**2)
    torch.testing.assert_close(load_loss(torch.tensor([1.0, 2.0, 3.0])), torch.tensor(1 / 6))


def test_router_z_and_entropy_losses():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2
    torch.testing.assert_close(router_z_loss(logits), torch.tensor(expected))
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    torch.testing.assert_close(router_entropy_loss(probs), torch.tensor(math.log(2.0) / 2))


def test_balancing_loss_by_name():
    routing = make_routing([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]], [[0], [-1], [1]],
                           [[0.7], [0.0], [0.8]], requested=[[0], [0], [1]])
    # Switch counts the requested assignments, before the capacity drop.
    torch.testing.assert_close(balancing_loss(routing, "switch"), torch.tensor(1.0))
    # cv: importance (0.7, 0.8) + load counts (1, 1).
    torch.testing.assert_close(balancing_loss(routing, "cv"),
                               cv_squared(torch.tensor([0.7, 0.8])))
    smooth = torch.tensor([1.0, 2.0])
    routing.load = smooth
    torch.testing.assert_close(balancing_loss(routing, "cv"),
                               cv_squared(torch.tensor([0.7, 0.8])) + cv_squared(smooth))
    with pytest.raises(ValueError, match="unknown balancing loss"):
        balancing_loss(routing, "gshard")


def test_routing_stats():
    routing = make_routing([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]],
                           [[0, 1], [2, -1], [-1, -1]], [[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]],
                           requested=[[0, 1], [2, 0], [1, -1]])
    stats = routing_stats(routing)
    assert stats.load.tolist() == [1, 1, 1]
    torch.testing.assert_close(stats.load_balance, torch.tensor(1.0))
    torch.testing.assert_close(stats.experts_per_node, torch.tensor(1.0))
    torch.testing.assert_close(stats.dropped_fraction, torch.tensor(2 / 5))
    torch.testing.assert_close(stats.unrouted_fraction, torch.tensor(1 / 3))
    logged = stats.as_dict()
    assert set(logged) >= {"moe/load_balance", "moe/router_entropy", "moe/dropped_fraction",
                           "moe/load_fraction/0", "moe/load_fraction/2"}
    assert all(isinstance(v, float) for v in logged.values())
