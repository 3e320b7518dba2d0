r"""Graph mixture of experts with hop-wise experts (GMoE, Wang et al., NeurIPS 2023)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

from graphmoe.models._validation import check_graph
from graphmoe.models.basic_gnn import BasicGNN
from graphmoe.models.conv.gcn_conv import gcn_norm, gcn_propagate
from graphmoe.moe import (
    ExpertChoiceRouter,
    MoEAux,
    NoisyTopKRouter,
    Router,
    SwitchRouter,
    TopKRouter,
    TopPRouter,
    balancing_loss,
    router_entropy_loss,
    router_z_loss,
    routing_stats,
)
from graphmoe.moe.layer import ROUTERS, resolve_balance_loss
from graphmoe.moe.routers import check_features
from graphmoe.moe.routing import Routing
from graphmoe.ops.dispatch import (
    DispatchPlan,
    combine_rows,
    grouped_linear,
    plan_dispatch,
    resolve_backend,
)

__all__ = ["GMoEConv", "GMoE"]

_MESSAGE_PASSING_ARGS = frozenset({"aggr", "aggr_kwargs", "flow", "node_dim", "decomposed_layers"})
_GMOE_ARGS = frozenset({
    "num_experts", "k", "hops", "router", "router_kwargs", "num_shared_experts", "balance_loss",
    "balance_loss_weight", "z_loss_weight", "entropy_loss_weight", "improved", "cached", "bias",
    "backend"})


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"'{name}' must be a positive int (got {value!r})")
    return value


def _resolve_hops(hops: Sequence[int]) -> tuple[int, ...]:
    if isinstance(hops, int) or not isinstance(hops, Sequence) or len(hops) == 0:
        raise ValueError(f"'hops' must be a non-empty sequence of hop counts such as (1, 2) "
                         f"(got {hops!r})")
    out = tuple(hops)
    if any(not isinstance(h, int) or isinstance(h, bool) or h < 0 for h in out):
        raise ValueError(f"'hops' must hold non-negative ints (got {hops!r})")
    if len(set(out)) != len(out):
        raise ValueError(f"'hops' must not repeat a hop count (got {hops!r})")
    return out


def _resolve_experts(num_experts: int | Sequence[int], hops: tuple[int, ...]) -> tuple[int, ...]:
    """Experts per hop: an int is split evenly over the hops, a sequence is taken as is."""
    if isinstance(num_experts, int) and not isinstance(num_experts, bool):
        _positive_int("num_experts", num_experts)
        if num_experts % len(hops) != 0:
            raise ValueError(f"'num_experts'={num_experts} must be divisible by the number of "
                             f"hops {len(hops)} (hops={hops}); pass one count per hop, e.g. "
                             f"num_experts={(num_experts,) + (1,) * (len(hops) - 1)}, "
                             f"for an uneven split")
        return (num_experts // len(hops),) * len(hops)
    if not isinstance(num_experts, Sequence) or len(num_experts) != len(hops):
        raise ValueError(f"'num_experts' must be an int or one count per hop ({len(hops)} for "
                         f"hops={hops}) (got {num_experts!r})")
    for count in num_experts:
        _positive_int("num_experts", count)
    return tuple(num_experts)


class GMoEConv(MessagePassing):
    r"""The graph mixture-of-experts layer with hop-wise experts from the `"Graph Mixture of
    Experts: Learning on Large-Scale Graphs with Explicit Diversity Modeling"
    <https://arxiv.org/abs/2304.02806>`_ paper (Wang et al., NeurIPS 2023), computed sparsely.

    Each expert :math:`e` is a GCN layer over its own hop count :math:`h_e \in` ``hops``
    (by default half of the experts see 1-hop neighbourhoods and half 2-hop ones); a router
    on the node features :math:`\mathbf{x}_n` picks :math:`k` experts :math:`e_{n,j}` with
    gates :math:`g_{n,j}` per node (noisy top-:math:`k` gating by default, as in GMoE):

    .. math::
        \mathbf{x}'_n = \sum_{j=1}^{k} g_{n,j} \big( (\mathbf{\hat{A}}^{h_{e_{n,j}}}
        \mathbf{X})_n \mathbf{W}_{e_{n,j}} + \mathbf{b}_{e_{n,j}} \big)
        \; + \sum_{s=1}^{S} \big( (\mathbf{\hat{A}}^{h_s} \mathbf{X})_n \mathbf{W}^{\text{sh}}_s
        + \mathbf{b}^{\text{sh}}_s \big),

    with :math:`\mathbf{\hat{A}} = \mathbf{\hat{D}}^{-1/2}(\mathbf{A} + \mathbf{I})
    \mathbf{\hat{D}}^{-1/2}` the GCN propagation matrix (Kipf & Welling, ICLR 2017) and
    :math:`\mathbf{\hat{A}}^0 = \mathbf{I}` (a hop-0 expert is a node-wise linear map). The
    second sum is the optional DeepSeekMoE-style *shared* experts (Dai et al. 2024) that
    every node uses without gating; shared expert :math:`s` works on hop
    :math:`h_s` = ``hops[s % len(hops)]``.

    Sparse computation: since :math:`\mathbf{\hat{A}}^h(\mathbf{X}\mathbf{W}_e) =
    (\mathbf{\hat{A}}^h\mathbf{X})\mathbf{W}_e`, the neighbourhood aggregation is shared by all
    experts of a hop and computed once per hop (:math:`\mathbf{\hat{A}}^2\mathbf{X} =
    \mathbf{\hat{A}}(\mathbf{\hat{A}}\mathbf{X})`, through :func:`graphmoe.ops.aggregate`);
    only the :math:`Nk` selected (node, expert) pairs are then transformed, by one grouped
    matmul over pairs sorted by expert (:mod:`graphmoe.ops.dispatch`; Triton on CUDA). The
    reference code instead runs every expert on every node and averages the gated outputs.

    Differences from the reference implementation (VITA-Group/Graph-Mixture-of-Experts):
    gated outputs are summed (the reference takes their mean over all :math:`E` experts,
    i.e. divides by :math:`E`; a following norm undoes the scale either way), a hop-2 expert
    propagates with :math:`\mathbf{\hat{A}}^2` rather than over a precomputed graph of exact
    2-hop neighbours (which is :math:`O(N d^2)` edges), and per-expert batch norms are left to
    the surrounding model (:class:`GMoE`'s ``norm``).

    The forward pass returns the output and a :class:`~graphmoe.moe.MoEAux` whose ``loss``
    (the weighted balancing loss; for noisy top-:math:`k`, GMoE's importance + load
    :math:`\mathrm{CV}^2`, Shazeer et al. 2017) must be added to the task loss.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        num_experts (int or tuple): Routed experts: a total split evenly over ``hops``, or one
            count per hop, e.g. ``(6, 2)``. (default: :obj:`8`)
        k (int): Experts per node (the maximum for ``"top_p"``, the average for
            ``"expert_choice"``; must be 1 for ``"switch"``). (default: :obj:`2`)
        hops (tuple): Hop counts of the expert groups. (default: :obj:`(1, 2)`)
        router (str or Router): ``"noisy_topk"`` (GMoE), ``"topk"``, ``"switch"``, ``"top_p"``,
            ``"expert_choice"``, or a :class:`~graphmoe.moe.Router` over all routed experts.
            Its gate sees :math:`\mathbf{x}_n`. With ``"noisy_topk"`` the gate and noise
            weights start at zero, as in GMoE, so routing starts out random and balanced.
            (default: :obj:`"noisy_topk"`)
        router_kwargs (dict, optional): Extra router arguments, e.g. ``{"p": 0.4}``.
        num_shared_experts (int): Shared experts :math:`S`. (default: :obj:`0`)
        balance_loss (str, optional): ``"cv"``, ``"switch"``, ``"expert_balance"``, ``None`` or
            ``"auto"`` (``"cv"`` for noisy top-:math:`k`, none for expert choice, else
            ``"expert_balance"`` with shared experts and ``"switch"`` without).
        balance_loss_weight (float): Weight of the balancing loss. (default: :obj:`0.01`)
        z_loss_weight (float): Weight of the router z-loss. (default: :obj:`0.0`)
        entropy_loss_weight (float): Weight of the router entropy loss (for ``"top_p"``).
            (default: :obj:`0.0`)
        improved (bool): Use :math:`\mathbf{A} + 2\mathbf{I}`. (default: :obj:`False`)
        cached (bool): Cache the normalisation of the first graph (transductive only).
            (default: :obj:`False`)
        bias (bool): Learn expert biases. (default: :obj:`True`)
        backend (str): Dispatch backend, ``"auto"``, ``"torch"`` or ``"triton"``.
        **kwargs: Further :class:`~torch_geometric.nn.conv.MessagePassing` arguments.

    Shapes:
        - **input:** node features :math:`(N, F_{in})`, edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** :math:`(N, F_{out})` and a :class:`~graphmoe.moe.MoEAux`
    """

    propagate_type = {"x": Tensor, "edge_weight": Tensor | None}

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_experts: int | Sequence[int] = 8,
        k: int = 2,
        hops: Sequence[int] = (1, 2),
        router: str | Router = "noisy_topk",
        router_kwargs: dict[str, Any] | None = None,
        num_shared_experts: int = 0,
        balance_loss: str | None = "auto",
        balance_loss_weight: float = 0.01,
        z_loss_weight: float = 0.0,
        entropy_loss_weight: float = 0.0,
        improved: bool = False,
        cached: bool = False,
        bias: bool = True,
        backend: str = "auto",
        **kwargs,
    ) -> None:
        unknown = sorted(set(kwargs) - _MESSAGE_PASSING_ARGS)
        if unknown:
            raise TypeError(f"GMoEConv got unexpected argument(s) {unknown}; it accepts "
                            f"{sorted(_GMOE_ARGS)} and the MessagePassing arguments "
                            f"{sorted(_MESSAGE_PASSING_ARGS)}")
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        _positive_int("in_channels", in_channels)
        _positive_int("out_channels", out_channels)
        _positive_int("k", k)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hops = _resolve_hops(hops)
        self.experts_per_hop = _resolve_experts(num_experts, self.hops)
        self.num_experts = sum(self.experts_per_hop)
        if k > self.num_experts:
            raise ValueError(f"'k' must be at most num_experts={self.num_experts} (got {k})")
        if not isinstance(num_shared_experts, int) or num_shared_experts < 0:
            raise ValueError(f"'num_shared_experts' must be an int >= 0 "
                             f"(got {num_shared_experts!r})")
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"'backend' must be 'auto', 'torch' or 'triton' (got {backend!r})")
        self.k = k
        self.num_shared_experts = num_shared_experts
        self.improved = improved
        self.cached = cached
        self.backend = backend
        self._cached: tuple[Tensor, Tensor, Tensor] | None = None

        # Experts are numbered hop group by hop group; a pair's input row is looked up through
        # its expert's hop position.
        hop_of_expert = torch.repeat_interleave(torch.arange(len(self.hops)),
                                                torch.tensor(self.experts_per_hop))
        self.register_buffer("hop_of_expert", hop_of_expert, persistent=False)

        self.router_name = router if isinstance(router, str) else None
        self.router = self._make_router(router, dict(router_kwargs or {}))
        self.init_experts(bias)
        self.balance_loss = resolve_balance_loss(balance_loss, self.router,
                                                 self.num_shared_experts)
        self.balance_loss_weight = balance_loss_weight
        self.z_loss_weight = z_loss_weight
        self.entropy_loss_weight = entropy_loss_weight
        self.reset_parameters()

    # -- construction -----------------------------------------------------------------------

    def _make_router(self, router: str | Router, kwargs: dict[str, Any]) -> Router:
        num_experts, k = self.num_experts, self.k
        if isinstance(router, Router):
            if router.in_channels != self.in_channels or router.num_experts != num_experts:
                raise ValueError(f"'router' must map {self.in_channels} channels to "
                                 f"{num_experts} experts (got {router!r})")
            return router
        if router == "noisy_topk":
            return NoisyTopKRouter(self.in_channels, num_experts, k, **kwargs)
        if router == "topk":
            return TopKRouter(self.in_channels, num_experts, k, **kwargs)
        if router == "switch":
            if k != 1:
                raise ValueError(f"router='switch' routes each node to one expert: it needs "
                                 f"k=1 (got k={k})")
            return SwitchRouter(self.in_channels, num_experts, **kwargs)
        if router == "top_p":
            return TopPRouter(self.in_channels, num_experts, max_k=k, **kwargs)
        if router == "expert_choice":
            factor = kwargs.pop("capacity_factor", k)
            return ExpertChoiceRouter(self.in_channels, num_experts, factor, **kwargs)
        raise ValueError(f"'router' must be one of {ROUTERS} or a Router (got {router!r})")

    def init_experts(self, bias: bool) -> None:
        """Create the routed experts' stacked parameters and the shared experts (a hook for
        subclasses with other experts, e.g. :class:`~graphmoe.models.GMoEGINConv`)."""
        self.weight = Parameter(torch.empty(self.num_experts, self.in_channels, self.out_channels))
        if bias:
            self.bias = Parameter(torch.empty(self.num_experts, self.out_channels))
        else:
            self.register_parameter("bias", None)
        self.shared = torch.nn.ModuleList([
            Linear(self.in_channels, self.out_channels, bias=bias, weight_initializer="glorot",
                   bias_initializer="zeros")
            for _ in range(self.num_shared_experts)])

    def reset_experts(self) -> None:
        """Re-initialise the parameters made by :meth:`init_experts`."""
        for e in range(self.num_experts):
            glorot(self.weight[e])
        zeros(self.bias)
        for lin in self.shared:
            lin.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.router.reset_parameters()
        if self.router_name == "noisy_topk":
            # GMoE starts both gating matrices at zero: logits tie and the noise decides, so
            # every expert receives nodes (and gradients) from the first step.
            torch.nn.init.zeros_(self.router.gate.weight)
        self.reset_experts()
        self._cached = None

    # -- forward ----------------------------------------------------------------------------

    def _norm(self, x: Tensor, edge_index: Tensor,
              edge_weight: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if self._cached is not None:
            return self._cached
        norm, loop_norm = gcn_norm(edge_index, edge_weight, x.size(0), self.improved,
                                   True, x.dtype)
        if self.cached:
            self._cached = (edge_index, norm, loop_norm)
        return edge_index, norm, loop_norm

    def propagate_hops(self, x: Tensor, edge_index: Tensor,
                       edge_weight: Tensor | None = None) -> list[Tensor]:
        r"""``[Â^h X for h in hops]``, each power computed once from the previous one."""
        edge_index, norm, loop_norm = self._norm(x, edge_index, edge_weight)
        powers = {0: x}
        current = x
        for h in range(1, max(self.hops) + 1):
            current = gcn_propagate(current, edge_index, norm, loop_norm)
            powers[h] = current
        return [powers[h] for h in self.hops]

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: Tensor | None = None) -> tuple[Tensor, MoEAux]:
        """Returns the layer output ``[N, out_channels]`` and its :class:`~graphmoe.moe.MoEAux`."""
        check_features(x, self.in_channels)
        check_graph(edge_index, edge_weight, x.size(0), type(self).__name__)
        hop_x = self.propagate_hops(x, edge_index, edge_weight)
        routing = self.router(x)
        out = self.routed(hop_x, routing)
        for s, lin in enumerate(self.shared):
            out = out + lin(hop_x[s % len(self.hops)])
        return out, self.auxiliary(routing)

    def routed(self, hop_x: list[Tensor], routing: Routing) -> Tensor:
        r""":math:`\sum_j g_{n,j}((\hat{A}^{h_e} X)_n W_e + b_e)` over the selected pairs only."""
        plan = plan_dispatch(routing.expert_index, self.num_experts)
        rows = self._gather_pairs(hop_x, routing.expert_index, plan)
        if resolve_backend(rows, self.backend) == "triton":
            from graphmoe.ops.triton import scatter_linear

            slots = scatter_linear(rows, self.weight, self.bias, plan, gather=False, scatter=True)
            weight = routing.combine_weight.to(slots.dtype)
            if plan.slot_mask is not None:
                weight = weight.masked_fill(~plan.slot_mask, 0.0)
            return torch.bmm(weight.unsqueeze(1),
                             slots.view(plan.num_nodes, plan.k, -1)).squeeze(1)
        out = grouped_linear(rows, self.weight, self.bias, plan)
        return combine_rows(out, routing.combine_weight, plan)

    def _gather_pairs(self, hop_x: list[Tensor], expert_index: Tensor,
                      plan: DispatchPlan) -> Tensor:
        """``[P, F_in]``: for each sorted pair, its node's row of its expert's hop features."""
        if len(hop_x) == 1:
            return hop_x[0].index_select(0, plan.node_index)
        num_nodes = hop_x[0].size(0)
        expert = expert_index.reshape(-1).index_select(0, plan.pair_index)
        row = self.hop_of_expert.index_select(0, expert) * num_nodes + plan.node_index
        return torch.cat(hop_x, dim=0).index_select(0, row)

    def auxiliary(self, routing: Routing) -> MoEAux:
        """Weighted auxiliary loss, its terms and routing statistics (as :class:`~graphmoe.moe.MoE`)."""
        losses: dict[str, Tensor] = {}
        total = routing.router_logits.new_zeros((), dtype=torch.float32)
        if self.balance_loss is not None:
            losses["balance"] = balancing_loss(routing, self.balance_loss)
            total = total + self.balance_loss_weight * losses["balance"]
        if self.z_loss_weight > 0:
            losses["z"] = router_z_loss(routing.router_logits)
            total = total + self.z_loss_weight * losses["z"]
        if self.entropy_loss_weight > 0:
            losses["entropy"] = router_entropy_loss(routing.router_probs)
            total = total + self.entropy_loss_weight * losses["entropy"]
        return MoEAux(total, losses, routing_stats(routing), routing)

    def dense_forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None,
                      routing: Routing | None = None) -> Tensor:
        r"""Reference path: every expert on every node, masked by the gate matrix
        :math:`G` (``routing.dense_weight()``), as the GMoE code computes it (but summed).
        ``routing`` defaults to a fresh routing of ``x``."""
        hop_x = self.propagate_hops(x, edge_index, edge_weight)
        routing = self.router(x) if routing is None else routing
        gates = routing.dense_weight()
        out = x.new_zeros(x.size(0), self.out_channels)
        for e in range(self.num_experts):
            y = hop_x[int(self.hop_of_expert[e])] @ self.weight[e]
            if self.bias is not None:
                y = y + self.bias[e]
            out = out + gates[:, e:e + 1] * y
        for s, lin in enumerate(self.shared):
            out = out + lin(hop_x[s % len(self.hops)])
        return out

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        args = [str(self.in_channels), str(self.out_channels),
                f"num_experts={self.num_experts}", f"k={self.k}"]
        if self.hops != (1, 2):
            args.append(f"hops={self.hops}")
        if len(set(self.experts_per_hop)) > 1:
            args.append(f"experts_per_hop={self.experts_per_hop}")
        if self.router_name is None:
            args.append(f"router={self.router!r}")
        elif self.router_name != "noisy_topk":
            args.append(f"router='{self.router_name}'")
        if self.num_shared_experts:
            args.append(f"num_shared_experts={self.num_shared_experts}")
        return f"{self.__class__.__name__}({', '.join(args)})"


class GMoE(BasicGNN):
    r"""GMoE-GCN (Wang et al., NeurIPS 2023, `"Graph Mixture of Experts"
    <https://arxiv.org/abs/2304.02806>`_): :class:`~graphmoe.models.BasicGNN` with
    :class:`GMoEConv` layers (hop-wise experts, sparse routing, optional shared experts).

    Layer :math:`\ell` computes :math:`\mathbf{H}^{(\ell)} = \mathrm{Dropout}(\sigma(\mathrm{Norm}(
    \mathrm{GMoEConv}^{(\ell)}(\mathbf{H}^{(\ell-1)}) + \mathbf{P}^{(\ell)}\mathbf{H}^{(\ell-1)})))`
    as in :class:`~graphmoe.models.BasicGNN` (``norm``, ``residual``, ``jk``). ``forward``
    returns the node representations only; the auxiliary loss of the last forward pass is
    exposed as :attr:`aux_loss`, the mean of the layers' ``MoEAux.loss`` (GMoE averages its
    layers' balancing losses too), which :class:`~graphmoe.training.NodeClassifier` adds to
    the task loss. :attr:`aux` holds each layer's :class:`~graphmoe.moe.MoEAux` and
    :meth:`aux_metrics` the routing statistics the trainer logs.

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int): Size of each hidden sample.
        num_layers (int): Number of layers.
        out_channels (int, optional): Output size; defaults to ``hidden_channels``.
        dropout (float): Dropout probability after each hidden layer. (default: ``0.``)
        act (str or Callable, optional): Activation. (default: ``"relu"``)
        norm (str, optional): ``"batch_norm"``, ``"layer_norm"`` or ``None``.
        residual (bool): Skip connections. (default: ``False``)
        jk (str, optional): Jumping-knowledge mode, as in :class:`~graphmoe.models.BasicGNN`.
        num_experts (int or tuple): Routed experts per layer (total, or one count per hop).
            (default: :obj:`8`)
        k (int): Experts per node. (default: :obj:`2`)
        hops (tuple): Hop counts of the expert groups. (default: :obj:`(1, 2)`)
        **conv_kwargs: Further :class:`GMoEConv` arguments (``router``, ``num_shared_experts``,
            ``balance_loss_weight``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        act: str | Callable | None = "relu",
        norm: str | None = None,
        residual: bool = False,
        jk: str | None = None,
        num_experts: int | Sequence[int] = 8,
        k: int = 2,
        hops: Sequence[int] = (1, 2),
        **conv_kwargs,
    ) -> None:
        super().__init__(in_channels, hidden_channels, num_layers, out_channels, dropout, act,
                         norm, residual, jk, num_experts=num_experts, k=k, hops=tuple(hops),
                         **conv_kwargs)
        self.aux: list[MoEAux] = []
        self.aux_loss: Tensor | None = None

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        return GMoEConv(in_channels, out_channels, **kwargs)

    def apply_conv(self, i: int, x: Tensor, edge_index: Tensor | None,
                   edge_weight: Tensor | None) -> Tensor:
        out, aux = self.convs[i](x, edge_index, edge_weight)
        self.aux.append(aux)
        return out

    def forward(self, x: Tensor, edge_index: Tensor | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        """Node representations ``[num_nodes, out_channels]``; sets :attr:`aux` and
        :attr:`aux_loss`."""
        self.aux = []
        out = super().forward(x, edge_index, edge_weight)
        self.aux_loss = torch.stack([aux.loss for aux in self.aux]).mean()
        return out

    def aux_metrics(self) -> dict[str, Tensor]:
        """Routing statistics of the last forward pass, per layer ``i``:
        ``moe/{i}/load/{e}`` (fraction of the routed (node, expert) pairs that expert ``e``
        processed), ``moe/{i}/hop{h}`` (the fraction that went to hop-``h`` experts),
        ``moe/{i}/load_balance`` (normalised entropy of the load, 1 = balanced),
        ``moe/{i}/router_entropy`` and the terms of the auxiliary loss."""
        out: dict[str, Tensor] = {}
        for i, (conv, aux) in enumerate(zip(self.convs, self.aux)):
            stats = aux.stats
            fraction = stats.load_fraction.detach()
            for e, value in enumerate(fraction.unbind()):
                out[f"moe/{i}/load/{e}"] = value
            by_hop = torch.zeros(len(conv.hops), device=fraction.device,
                                 dtype=fraction.dtype).index_add(0, conv.hop_of_expert, fraction)
            for h, value in zip(conv.hops, by_hop.unbind()):
                out[f"moe/{i}/hop{h}"] = value
            out[f"moe/{i}/load_balance"] = stats.load_balance
            out[f"moe/{i}/router_entropy"] = stats.router_entropy
            for name, value in aux.losses.items():
                out[f"moe/{i}/{name}_loss"] = value.detach()
        return out

    def __repr__(self) -> str:
        conv = self.convs[0]
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"num_layers={self.num_layers}, num_experts={conv.num_experts}, k={conv.k})")
