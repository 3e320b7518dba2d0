r"""The generic sparse mixture-of-experts layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import Linear
from torch_geometric.nn.resolver import activation_resolver

from graphmoe.moe.experts import ExpertFFN
from graphmoe.moe.losses import (
    BALANCING_LOSSES,
    balancing_loss,
    router_entropy_loss,
    router_z_loss,
)
from graphmoe.moe.routers import (
    ExpertChoiceRouter,
    NoisyTopKRouter,
    Router,
    SwitchRouter,
    TopKRouter,
    TopPRouter,
)
from graphmoe.moe.routing import Routing
from graphmoe.moe.stats import RoutingStats, routing_stats

__all__ = ["MoE", "MoEAux", "ROUTERS", "resolve_balance_loss"]


def resolve_balance_loss(name: str | None, router: Router, num_shared_experts: int) -> str | None:
    """The balancing loss of a routed layer: ``name`` when given, or for ``"auto"`` none for
    expert choice (balanced by construction), ``"cv"`` for noisy top-k (Shazeer et al.),
    ``"expert_balance"`` with shared experts (DeepSeekMoE), else ``"switch"``."""
    if name == "auto":
        if isinstance(router, ExpertChoiceRouter):
            return None
        if isinstance(router, NoisyTopKRouter):
            return "cv"
        return "expert_balance" if num_shared_experts > 0 else "switch"
    if name is not None and name not in BALANCING_LOSSES:
        raise ValueError(f"'balance_loss' must be 'auto', None or one of "
                         f"{BALANCING_LOSSES} (got {name!r})")
    return name

ROUTERS = ("topk", "noisy_topk", "switch", "top_p", "expert_choice")


@dataclass
class MoEAux:
    r"""Everything a :class:`MoE` forward pass produces besides its output.

    Attributes:
        loss (torch.Tensor): 0-dim weighted sum of the auxiliary losses; add it to the
            task loss (it is ``0`` when no auxiliary loss is configured).
        losses (dict): The unweighted terms by name: ``"balance"`` (the configured
            balancing loss), ``"z"`` (router z-loss), ``"entropy"`` (router entropy), each
            present when configured.
        stats (RoutingStats): Load per expert, entropy, dropped fraction, ... for logging
            (``aux.stats.as_dict()``).
        routing (Routing): The routing decision itself.
    """

    loss: Tensor
    losses: dict[str, Tensor]
    stats: RoutingStats
    routing: Routing


class MoE(torch.nn.Module):
    r"""Sparse mixture-of-experts feed-forward layer with routed and shared experts.

    .. math::
        \mathbf{y}_n = \sum_{s=1}^{S} \mathrm{FFN}^{\text{shared}}_s(\mathbf{x}_n) +
        \sum_{j:\, e_{n,j} \ge 0} g_{n,j} \, \mathrm{FFN}_{e_{n,j}}(\mathbf{x}_n),
        \qquad \mathrm{FFN}_e(\mathbf{x}) = \sigma(\mathbf{x}\mathbf{W}^{(1)}_e +
        \mathbf{b}^{(1)}_e)\mathbf{W}^{(2)}_e + \mathbf{b}^{(2)}_e,

    where a router picks the experts :math:`e_{n,j}` and gates :math:`g_{n,j}` of every
    node (sparsely-gated MoE, Shazeer et al. 2017; GShard, Lepikhin et al. 2021; Switch,
    Fedus et al. 2022; dynamic top-:math:`p`, Huang et al. 2024; expert choice, Zhou et al.
    2022). The routed experts keep stacked weights and run as one grouped matmul
    (:func:`graphmoe.ops.dispatch.expert_ffn`), never all experts on all nodes.

    DeepSeekMoE (Dai et al. 2024) options: *fine-grained expert segmentation* with
    ``granularity`` :math:`m` splits every expert's hidden size by :math:`m` and uses
    :math:`mE` experts with :math:`mk` active per node (same compute, more combinations);
    ``num_shared_experts`` :math:`S` experts (of the segmented size) process every node
    without gating, isolating common knowledge from the routed ones.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        num_experts (int): Number of routed experts :math:`E` (before segmentation).
            (default: :obj:`8`)
        k (int): Experts per node for ``"topk"``/``"noisy_topk"``; the maximum for
            ``"top_p"`` (pass ``k=num_experts`` for none); the capacity factor (average
            experts per node) for ``"expert_choice"``; must be 1 for ``"switch"``.
            (default: :obj:`2`)
        hidden_channels (int, optional): Hidden size of an expert before segmentation.
            (default: :obj:`in_channels`)
        router (str or Router): ``"topk"``, ``"noisy_topk"``, ``"switch"``, ``"top_p"``,
            ``"expert_choice"``, or a :class:`~graphmoe.moe.routers.Router` over
            :math:`mE` experts. (default: :obj:`"topk"`)
        router_kwargs (dict, optional): Extra router arguments, e.g. ``{"p": 0.4}`` or
            ``{"capacity_factor": 1.25}``.
        num_shared_experts (int): Shared experts :math:`S`. (default: :obj:`0`)
        granularity (int): Fine-grained segmentation factor :math:`m`. (default: :obj:`1`)
        act (str or callable): Expert non-linearity. (default: :obj:`"gelu"`)
        bias (bool): Experts learn biases. (default: :obj:`True`)
        balance_loss (str, optional): ``"switch"``, ``"cv"`` (importance + load,
            Shazeer et al.), ``"expert_balance"`` (DeepSeekMoE) or ``None``; ``"auto"``
            picks ``"cv"`` for noisy top-k, ``None`` for expert choice (balanced by
            construction), ``"expert_balance"`` with shared experts, else ``"switch"``.
        balance_loss_weight (float): Weight of the balancing loss. (default: :obj:`0.01`)
        z_loss_weight (float): Weight of the router z-loss (ST-MoE suggests ``1e-3``).
            (default: :obj:`0.0`)
        entropy_loss_weight (float): Weight of the router entropy loss (the dynamic
            loss of top-:math:`p` routing, e.g. ``1e-4``). (default: :obj:`0.0`)
        backend (str): Dispatch backend, ``"auto"``, ``"torch"`` or ``"triton"``.

    Shapes:
        - **input:** node features :math:`(N, F_{in})`
        - **output:** :math:`(N, F_{out})` and a :class:`MoEAux`
    """

    def __init__(self, in_channels: int, out_channels: int, num_experts: int = 8, k: int = 2,
                 hidden_channels: int | None = None, router: str | Router = "topk",
                 router_kwargs: dict[str, Any] | None = None, num_shared_experts: int = 0,
                 granularity: int = 1, act: str = "gelu", bias: bool = True,
                 balance_loss: str | None = "auto", balance_loss_weight: float = 0.01,
                 z_loss_weight: float = 0.0, entropy_loss_weight: float = 0.0,
                 backend: str = "auto") -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("num_experts", num_experts), ("k", k),
                            ("granularity", granularity)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive int (got {value!r})")
        if k > num_experts:
            raise ValueError(f"'k' must be at most num_experts={num_experts} (got {k})")
        if num_shared_experts < 0:
            raise ValueError(f"'num_shared_experts' must be >= 0 (got {num_shared_experts})")
        hidden_channels = in_channels if hidden_channels is None else hidden_channels
        if hidden_channels % granularity != 0:
            raise ValueError(f"'hidden_channels'={hidden_channels} must be divisible by "
                             f"'granularity'={granularity}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_experts, self.k, self.granularity = num_experts, k, granularity
        self.hidden_channels = hidden_channels
        self.num_shared_experts = num_shared_experts
        expert_hidden = hidden_channels // granularity
        self.router_name = router if isinstance(router, str) else None
        self.router = self._make_router(router, dict(router_kwargs or {}))
        self.experts = ExpertFFN(num_experts * granularity, in_channels, expert_hidden,
                                 out_channels, act=act, bias=bias, backend=backend)
        self.shared: torch.nn.Sequential | None = None
        if num_shared_experts > 0:
            # S shared experts summed equal one FFN with S times the hidden units.
            width = num_shared_experts * expert_hidden
            self.shared = torch.nn.Sequential(Linear(in_channels, width, bias=bias),
                                              activation_resolver(act),
                                              Linear(width, out_channels, bias=bias))
        self.balance_loss = resolve_balance_loss(balance_loss, self.router, self.num_shared_experts)
        self.balance_loss_weight = balance_loss_weight
        self.z_loss_weight = z_loss_weight
        self.entropy_loss_weight = entropy_loss_weight

    def _make_router(self, router: str | Router, kwargs: dict[str, Any]) -> Router:
        total, m = self.num_experts * self.granularity, self.granularity
        if isinstance(router, Router):
            if router.in_channels != self.in_channels or router.num_experts != total:
                raise ValueError(f"'router' must map {self.in_channels} channels to "
                                 f"{total} experts (got {router!r})")
            return router
        if router == "topk":
            return TopKRouter(self.in_channels, total, self.k * m, **kwargs)
        if router == "noisy_topk":
            return NoisyTopKRouter(self.in_channels, total, self.k * m, **kwargs)
        if router == "switch":
            if self.k != 1 or m != 1:
                raise ValueError("router='switch' routes each node to one expert: it needs "
                                 f"k=1 and granularity=1 (got k={self.k}, granularity={m})")
            return SwitchRouter(self.in_channels, total, **kwargs)
        if router == "top_p":
            return TopPRouter(self.in_channels, total, max_k=self.k * m, **kwargs)
        if router == "expert_choice":
            factor = kwargs.pop("capacity_factor", self.k) * m
            return ExpertChoiceRouter(self.in_channels, total, factor, **kwargs)
        raise ValueError(f"'router' must be one of {ROUTERS} or a Router (got {router!r})")

    def reset_parameters(self) -> None:
        self.router.reset_parameters()
        self.experts.reset_parameters()
        if self.shared is not None:
            for layer in self.shared:
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()

    def forward(self, x: Tensor) -> tuple[Tensor, MoEAux]:
        """Returns the layer output ``[N, out_channels]`` and its :class:`MoEAux`."""
        routing = self.router(x)  # validates x: shape, emptiness, NaN
        out = self.experts(x, routing.expert_index, routing.combine_weight)
        if self.shared is not None:
            out = out + self.shared(x)
        return out, self.auxiliary(routing)

    def auxiliary(self, routing: Routing) -> MoEAux:
        """Auxiliary losses and statistics of a routing (see :class:`MoEAux`)."""
        losses: dict[str, Tensor] = {}
        total = routing.router_logits.new_zeros((), dtype=torch.float32)
        terms = (("balance", self.balance_loss is not None, self.balance_loss_weight),
                 ("z", self.z_loss_weight > 0, self.z_loss_weight),
                 ("entropy", self.entropy_loss_weight > 0, self.entropy_loss_weight))
        for name, active, weight in terms:
            if not active:
                continue
            if name == "balance":
                losses[name] = balancing_loss(routing, self.balance_loss)
            elif name == "z":
                losses[name] = router_z_loss(routing.router_logits)
            else:
                losses[name] = router_entropy_loss(routing.router_probs)
            total = total + weight * losses[name]
        return MoEAux(total, losses, routing_stats(routing), routing)

    def __repr__(self) -> str:
        args = [str(self.in_channels), str(self.out_channels),
                f"num_experts={self.num_experts}", f"k={self.k}"]
        if self.router_name is None:
            args.append(f"router={self.router!r}")
        elif self.router_name != "topk":
            args.append(f"router='{self.router_name}'")
        if self.num_shared_experts:
            args.append(f"num_shared_experts={self.num_shared_experts}")
        if self.granularity != 1:
            args.append(f"granularity={self.granularity}")
        return f"{self.__class__.__name__}({', '.join(args)})"
