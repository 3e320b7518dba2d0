r"""Routing statistics for logging (no gradients)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from graphmoe.moe.routing import Routing

__all__ = ["RoutingStats", "routing_stats"]


@dataclass
class RoutingStats:
    r"""Summary of one routing decision; tensors stay on the routing's device until
    :meth:`as_dict` is called.

    Attributes:
        load (torch.Tensor): ``[E]`` nodes each expert processed (after capacity).
        load_fraction (torch.Tensor): ``[E]`` ``load / load.sum()``.
        load_balance (torch.Tensor): Normalised entropy of ``load_fraction``,
            :math:`-\sum_e f_e \log f_e / \log E` (1 = perfectly balanced, 0 = collapsed).
        router_entropy (torch.Tensor): Mean entropy of the router distribution
            :math:`\mathbf{p}_n` in nats (:math:`\log E` = uniform).
        experts_per_node (torch.Tensor): Mean number of experts a node uses.
        dropped_fraction (torch.Tensor): Requested assignments dropped by capacity.
        unrouted_fraction (torch.Tensor): Nodes that reach no routed expert.
    """

    load: Tensor
    load_fraction: Tensor
    load_balance: Tensor
    router_entropy: Tensor
    experts_per_node: Tensor
    dropped_fraction: Tensor
    unrouted_fraction: Tensor

    def as_dict(self, prefix: str = "moe/") -> dict[str, float]:
        """Flat ``{name: float}`` for a logger, one ``load_fraction/<e>`` entry per expert."""
        out = {f"{prefix}{name}": float(getattr(self, name)) for name in (
            "load_balance", "router_entropy", "experts_per_node", "dropped_fraction",
            "unrouted_fraction")}
        for e, value in enumerate(self.load_fraction.tolist()):
            out[f"{prefix}load_fraction/{e}"] = value
        return out


@torch.no_grad()
def routing_stats(routing: Routing) -> RoutingStats:
    """Computes :class:`RoutingStats` of a :class:`~graphmoe.moe.routing.Routing`."""
    used = routing.expert_index >= 0
    load = routing.expert_counts().float()
    fraction = load / load.sum().clamp(min=1.0)
    entropy = -(fraction * fraction.clamp(min=1e-12).log()).sum()
    num_experts = routing.num_experts
    balance = entropy / math.log(num_experts) if num_experts > 1 else torch.ones_like(entropy)
    probs = routing.router_probs.float()
    router_entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1).mean()
    requested = (routing.requested_index >= 0).sum().float()
    return RoutingStats(
        load=load,
        load_fraction=fraction,
        load_balance=balance,
        router_entropy=router_entropy,
        experts_per_node=used.sum(dim=-1).float().mean(),
        dropped_fraction=routing.num_dropped.float() / requested.clamp(min=1.0),
        unrouted_fraction=(~used.any(dim=-1)).float().mean(),
    )
