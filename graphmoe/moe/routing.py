r"""The result of routing nodes to experts, and expert capacity."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Routing", "apply_capacity", "expert_capacity"]


@dataclass
class Routing:
    r"""Which experts process each node, and with which weight.

    Attributes:
        expert_index (torch.Tensor): ``[N, k]`` long; the experts of each node, ``-1``
            marking an unused slot (a node routed to fewer than :math:`k` experts, or an
            assignment dropped by capacity).
        combine_weight (torch.Tensor): ``[N, k]`` gate values :math:`g_{n,j}` (zero in
            unused slots); the layer output is :math:`\sum_j g_{n,j} E_{e_{n,j}}(\mathbf{x}_n)`.
        router_logits (torch.Tensor): ``[N, E]`` logits the decision was based on.
        router_probs (torch.Tensor): ``[N, E]`` their softmax :math:`\mathbf{p}_n`.
        requested_index (torch.Tensor): ``[N, k]`` the router's choice before capacity
            limits (equal to ``expert_index`` for dropless routing); balancing losses count
            these, as in Switch Transformers.
        load (torch.Tensor, optional): ``[E]`` differentiable load estimate (noisy top-k
            gating, through the normal CDF); ``None`` where the load is the count.
    """

    expert_index: Tensor
    combine_weight: Tensor
    router_logits: Tensor
    router_probs: Tensor
    requested_index: Tensor
    load: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return self.router_logits.size(0)

    @property
    def num_experts(self) -> int:
        return self.router_logits.size(1)

    @property
    def k(self) -> int:
        """Slots per node (the maximum number of experts a node uses)."""
        return self.expert_index.size(1)

    def expert_counts(self, requested: bool = False) -> Tensor:
        """``[E]`` number of nodes each expert processes (or was requested for)."""
        index = self.requested_index if requested else self.expert_index
        index = index[index >= 0]
        return torch.bincount(index, minlength=self.num_experts)

    @property
    def num_dropped(self) -> Tensor:
        """Assignments the router requested but capacity dropped (a 0-dim tensor)."""
        return (self.requested_index >= 0).sum() - (self.expert_index >= 0).sum()

    def dense_weight(self) -> Tensor:
        r"""``[N, E]`` gate matrix :math:`G` with :math:`G_{n,e_{n,j}} = g_{n,j}`."""
        gates = self.combine_weight.new_zeros(self.num_nodes, self.num_experts + 1)
        index = self.expert_index.masked_fill(self.expert_index < 0, self.num_experts)
        return gates.scatter_add(1, index, self.combine_weight)[:, :-1]


def expert_capacity(num_nodes: int, num_experts: int, k: int, capacity_factor: float) -> int:
    r"""Switch/GShard capacity :math:`C = \lceil c \cdot N k / E \rceil` (at least 1)."""
    if capacity_factor <= 0:
        raise ValueError(f"'capacity_factor' must be positive (got {capacity_factor})")
    return max(1, math.ceil(capacity_factor * num_nodes * k / num_experts))


def apply_capacity(expert_index: Tensor, combine_weight: Tensor, num_experts: int,
                   capacity: int) -> tuple[Tensor, Tensor]:
    r"""Keeps at most ``capacity`` nodes per expert, dropping the rest.

    An expert keeps the nodes with the largest gate values (batch prioritized routing,
    Riquelme et al. 2021, "Scaling Vision with Sparse Mixture of Experts"): node order in
    a graph carries no meaning, unlike token order in a sequence. Dropped slots get
    index ``-1`` and weight ``0``.
    """
    flat_e = expert_index.reshape(-1)
    flat_w = combine_weight.detach().reshape(-1)
    # Two stable sorts: by weight (descending), then by expert.
    by_weight = torch.argsort(flat_w, descending=True, stable=True)
    key = torch.where(flat_e >= 0, flat_e, num_experts)[by_weight]
    order = by_weight[torch.argsort(key, stable=True)]
    sorted_e = torch.where(flat_e >= 0, flat_e, num_experts)[order]
    counts = torch.bincount(sorted_e, minlength=num_experts + 1)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=order.device) - starts[sorted_e]
    keep = torch.empty_like(flat_e, dtype=torch.bool)
    keep[order] = rank < capacity
    keep = keep.view_as(expert_index) & (expert_index >= 0)
    return (expert_index.masked_fill(~keep, -1),
            combine_weight.masked_fill(~keep, 0.0))
