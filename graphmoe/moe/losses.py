r"""Auxiliary losses that keep routing balanced and stable.

All functions return a 0-dim tensor to be *added*, scaled by a small weight, to the task
loss. :func:`balancing_loss` picks one by name for :class:`~graphmoe.moe.MoE`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from graphmoe.moe.routing import Routing

__all__ = [
    "cv_squared",
    "switch_loss",
    "importance_loss",
    "load_loss",
    "expert_balance_loss",
    "router_z_loss",
    "router_entropy_loss",
    "balancing_loss",
    "BALANCING_LOSSES",
]

BALANCING_LOSSES = ("switch", "cv", "expert_balance")


def cv_squared(x: Tensor, eps: float = 1e-10) -> Tensor:
    r"""Squared coefficient of variation
    :math:`\mathrm{CV}^2(\mathbf{x}) = \mathrm{Var}(\mathbf{x}) / (\bar{x}^2 + \epsilon)`
    (population variance, as in Shazeer et al. 2017); ``0`` for fewer than two entries."""
    x = x.float()
    if x.numel() < 2:
        return x.new_zeros(())
    mean = x.mean()
    return ((x - mean) ** 2).mean() / (mean**2 + eps)


def _assignment_counts(expert_index: Tensor, num_experts: int) -> Tensor:
    index = expert_index[expert_index >= 0]
    return torch.bincount(index, minlength=num_experts).float()


def switch_loss(router_probs: Tensor, expert_index: Tensor) -> Tensor:
    r"""Switch Transformer load-balancing loss (Fedus et al. 2022, Eq. 4).

    .. math::
        \mathcal{L} = E \sum_{e=1}^{E} f_e P_e, \qquad
        f_e = \frac{|\{(n, j) : e_{n,j} = e\}|}{|\{(n, j) : e_{n,j} \ge 0\}|}, \qquad
        P_e = \frac{1}{N} \sum_n p_{n,e},

    :math:`f_e` being the fraction of (node, expert) assignments that go to :math:`e`
    (for :math:`k = 1`, the fraction of nodes). It equals :math:`1` under uniform routing;
    gradients flow through :math:`P_e` only.

    Args:
        router_probs (torch.Tensor): ``[N, E]`` router probabilities.
        expert_index (torch.Tensor): ``[N, k]`` chosen experts, ``-1`` = unused.
    """
    num_experts = router_probs.size(1)
    counts = _assignment_counts(expert_index, num_experts)
    fraction = counts / counts.sum().clamp(min=1.0)
    return num_experts * (fraction * router_probs.float().mean(dim=0)).sum()


def expert_balance_loss(router_probs: Tensor, expert_index: Tensor) -> Tensor:
    r"""Expert-level balance loss of DeepSeekMoE (Dai et al. 2024, Eq. 12-14).

    .. math::
        \mathcal{L}_{\text{ExpBal}} = \sum_{i=1}^{N'} f_i P_i, \qquad
        f_i = \frac{N'}{K' T} \sum_{t=1}^{T} \mathbb{1}(\text{node } t \text{ selects } i),
        \qquad P_i = \frac{1}{T} \sum_{t=1}^{T} s_{i,t},

    over the :math:`N'` *routed* experts with :math:`K'` active per node (shared experts
    take no part: every node uses them). It coincides with :func:`switch_loss` when every
    node fills all :math:`K'` slots.

    Args:
        router_probs (torch.Tensor): ``[T, N']`` router probabilities :math:`s_{i,t}`.
        expert_index (torch.Tensor): ``[T, K']`` chosen routed experts, ``-1`` = unused.
    """
    num_nodes, num_experts = router_probs.shape
    k = expert_index.size(1)
    counts = _assignment_counts(expert_index, num_experts)
    fraction = counts * num_experts / (k * num_nodes)
    return (fraction * router_probs.float().mean(dim=0)).sum()


def importance_loss(gates: Tensor) -> Tensor:
    r"""Importance loss of Shazeer et al. 2017:
    :math:`\mathrm{CV}^2(\sum_n G_{n,:})` of the ``[N, E]`` gate matrix :math:`G`."""
    return cv_squared(gates.sum(dim=0))


def load_loss(load: Tensor) -> Tensor:
    r"""Load loss of Shazeer et al. 2017: :math:`\mathrm{CV}^2(\mathrm{load})`.

    Pass the smooth estimate of :class:`~graphmoe.moe.NoisyTopKRouter`
    (:attr:`Routing.load`, differentiable through the normal CDF); with plain counts
    the loss carries no gradient.
    """
    return cv_squared(load)


def router_z_loss(router_logits: Tensor) -> Tensor:
    r"""Router z-loss (Zoph et al. 2022, "ST-MoE", Eq. 5):
    :math:`\frac{1}{N} \sum_n \big(\log \sum_e \exp h_{n,e}\big)^2`,
    which keeps router logits small for numerical stability."""
    return torch.logsumexp(router_logits.float(), dim=-1).pow(2).mean()


def router_entropy_loss(router_probs: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Mean router entropy :math:`-\frac{1}{N}\sum_n \sum_e p_{n,e} \log p_{n,e}`: the
    dynamic loss of Huang et al. 2024, which sharpens top-:math:`p` routing so that it
    does not activate every expert."""
    probs = router_probs.float()
    return -(probs * (probs + eps).log()).sum(dim=-1).mean()


def balancing_loss(routing: Routing, name: str) -> Tensor:
    r"""The balancing loss ``name`` of a routing.

    - ``"switch"``: :func:`switch_loss` on the requested (pre-capacity) assignments.
    - ``"cv"``: :func:`importance_loss` + :func:`load_loss` (Shazeer et al. 2017), with the
      smooth load of noisy gating where available, else the assignment counts.
    - ``"expert_balance"``: :func:`expert_balance_loss` (DeepSeekMoE).
    """
    if name == "switch":
        return switch_loss(routing.router_probs, routing.requested_index)
    if name == "expert_balance":
        return expert_balance_loss(routing.router_probs, routing.requested_index)
    if name == "cv":
        load = routing.load
        if load is None:
            load = _assignment_counts(routing.expert_index, routing.num_experts)
        return importance_loss(routing.dense_weight()) + load_loss(load)
    raise ValueError(f"unknown balancing loss {name!r}; expected one of {BALANCING_LOSSES}")
