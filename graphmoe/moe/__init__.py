"""Mixture-of-experts building blocks: routers, the sparse MoE layer, balancing losses
and routing statistics."""
from graphmoe.moe.experts import ExpertFFN
from graphmoe.moe.layer import MoE, MoEAux
from graphmoe.moe.losses import (
    balancing_loss,
    cv_squared,
    expert_balance_loss,
    importance_loss,
    load_loss,
    router_entropy_loss,
    router_z_loss,
    switch_loss,
)
from graphmoe.moe.routers import (
    ExpertChoiceRouter,
    NoisyTopKRouter,
    Router,
    SwitchRouter,
    TopKRouter,
    TopPRouter,
)
from graphmoe.moe.routing import Routing, apply_capacity, expert_capacity
from graphmoe.moe.stats import RoutingStats, routing_stats

__all__ = [
    "MoE",
    "MoEAux",
    "ExpertFFN",
    "Routing",
    "Router",
    "TopKRouter",
    "NoisyTopKRouter",
    "SwitchRouter",
    "TopPRouter",
    "ExpertChoiceRouter",
    "apply_capacity",
    "expert_capacity",
    "switch_loss",
    "importance_loss",
    "load_loss",
    "cv_squared",
    "expert_balance_loss",
    "router_z_loss",
    "router_entropy_loss",
    "balancing_loss",
    "RoutingStats",
    "routing_stats",
]
