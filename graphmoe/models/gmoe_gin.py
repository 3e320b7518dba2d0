r"""GMoE with hop-wise GIN experts (GMoE-GIN, Wang et al., NeurIPS 2023) for molecules."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.inits import glorot, zeros

from graphmoe.models._validation import check_graph
from graphmoe.models.gine import (
    check_edge_attr,
    make_edge_encoder,
    mlp,
    reset_edge_encoder,
)
from graphmoe.models.gmoe import GMoE, GMoEConv
from graphmoe.moe import MoEAux
from graphmoe.moe.routers import check_features
from graphmoe.moe.routing import Routing
from graphmoe.ops import aggregate
from graphmoe.ops.dispatch import combine_rows, grouped_linear, plan_dispatch

__all__ = ["GMoEGIN", "GMoEGINConv", "two_hop_paths"]

Paths = tuple[Tensor, Tensor]


def two_hop_paths(edge_index: Tensor, num_nodes: int) -> Paths:
    r"""All non-backtracking 2-walks :math:`k \to j \to i` (:math:`k \neq i`) as pairs of edge
    ids ``(first, second)``: ``edge_index[:, first[p]] = (k, j)``, ``edge_index[:, second[p]] =
    (j, i)``. For molecules (degree <= 4) there are at most ~3 per edge."""
    src, dst = edge_index
    order = torch.argsort(dst, stable=True)  # in-edges grouped by target
    in_deg = torch.bincount(dst, minlength=num_nodes)
    start = torch.cumsum(in_deg, 0) - in_deg
    count = in_deg.index_select(0, src)  # in-edges of j = src of each second edge
    second = torch.repeat_interleave(torch.arange(src.numel(), device=src.device), count)
    offset = torch.arange(second.numel(), device=src.device) - torch.repeat_interleave(
        torch.cumsum(count, 0) - count, count)
    first = order.index_select(0, start.index_select(0, src.index_select(0, second)) + offset)
    keep = src.index_select(0, first) != dst.index_select(0, second)
    return first[keep], second[keep]


class GMoEGINConv(GMoEConv):
    r"""GMoE layer with hop-wise GIN experts (GMoE-GIN of `"Graph Mixture of Experts"
    <https://arxiv.org/abs/2304.02806>`_, Wang et al., NeurIPS 2023), computed sparsely.

    Expert :math:`e` of hop :math:`h_e` is a GIN layer (Xu et al., ICLR 2019) with bond
    features added to its messages as in OGB's molecule ``GINConv`` (GINE, Hu et al. 2020):

    .. math::
        \mathbf{x}'_n = \sum_{j=1}^{k} g_{n,j}\, \mathrm{MLP}_{e_{n,j}}\big((1 + \epsilon_{e})
        \mathbf{x}_n + \mathbf{m}^{(h_e)}_n\big),
        \qquad \mathrm{MLP}_e(\mathbf{z}) = \mathrm{ReLU}(\mathbf{z}\mathbf{W}^{(1)}_e +
        \mathbf{b}^{(1)}_e)\mathbf{W}^{(2)}_e + \mathbf{b}^{(2)}_e,

    with the hop aggregations (:math:`\phi` an edge encoder, OGB's ``BondEncoder`` by default)

    .. math::
        \mathbf{m}^{(1)}_i = \sum_{j \to i} \mathrm{ReLU}(\mathbf{x}_j + \phi_1(\mathbf{e}_{ji})),
        \qquad
        \mathbf{m}^{(2)}_i = \sum_{k \to j \to i,\, k \neq i} \mathrm{ReLU}(\mathbf{x}_k +
        \phi_2(\mathbf{e}_{kj}) + \phi_2'(\mathbf{e}_{ji})),

    :math:`\mathbf{m}^{(0)} = \mathbf{0}`. The reference code gives hop-2 experts a precomputed
    graph with one edge per non-backtracking 2-walk (``construct_two_hops.py``) whose edge
    features are the two bonds' features, embedded by a ``TwoHopBondEncoder`` (the sum of two
    bond embeddings): :math:`\mathbf{m}^{(2)}` is that aggregation, with the walks enumerated
    per batch (:func:`two_hop_paths`). Without an edge
    encoder, messages are :math:`\mathbf{x}_j` (:math:`\mathbf{x}_k`): plain GIN.

    Sparse computation: the edge encoders belong to a *hop* (the reference gives each expert
    its own), so :math:`\mathbf{m}^{(h)}` is computed once per hop and shared by its experts;
    only the :math:`Nk` selected (node, expert) pairs then run their expert's MLP, as two
    grouped matmuls over pairs sorted by expert (:mod:`graphmoe.ops.dispatch`). Batch norm
    inside the expert MLP (reference: ``Linear -> BatchNorm -> ReLU -> Linear`` and a batch
    norm per expert) is left out, since each expert sees a different subset of nodes; the
    surrounding model's ``norm`` follows the layer. Routing, balancing losses and shared
    experts are those of :class:`~graphmoe.models.GMoEConv` (a shared expert is a GIN MLP too).

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        num_experts (int or tuple): Routed experts (total, or one count per hop).
        k (int): Experts per node.
        hops (tuple): Hop counts of the expert groups, each 0, 1 or 2. (default: ``(1, 2)``)
        hidden_channels (int, optional): Expert MLP hidden size. (default: ``2 * out_channels``)
        eps (float): Initial :math:`\epsilon_e`. (default: ``0.``)
        train_eps (bool): Learn :math:`\epsilon_e` (one per expert). (default: ``True``)
        edge_encoder (str, optional): ``"bond"`` (OGB bond features), ``"linear"`` or ``None``.
        edge_dim (int, optional): Edge feature size for ``edge_encoder="linear"``.
        **kwargs: The routing arguments of :class:`~graphmoe.models.GMoEConv` (``router``,
            ``router_kwargs``, ``num_shared_experts``, ``balance_loss``,
            ``balance_loss_weight``, ``z_loss_weight``, ``entropy_loss_weight``, ``bias``).

    Shapes:
        - **input:** node features :math:`(N, F_{in})`, edge indices :math:`(2, |\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, 3)` *(long, with the bond encoder)*
        - **output:** :math:`(N, F_{out})` and a :class:`~graphmoe.moe.MoEAux`
    """

    def __init__(self, in_channels: int, out_channels: int,
                 num_experts: int | Sequence[int] = 8, k: int = 2, hops: Sequence[int] = (1, 2),
                 hidden_channels: int | None = None, eps: float = 0.0, train_eps: bool = True,
                 edge_encoder: str | None = "bond", edge_dim: int | None = None,
                 **kwargs: Any) -> None:
        for key in ("improved", "cached", "backend"):
            if key in kwargs:  # GCN normalisation options; the experts have no Triton path yet
                raise TypeError(f"GMoEGINConv got unexpected argument {key!r} (a GMoEConv "
                                f"option that GIN experts do not have)")
        if not isinstance(hops, int) and any(isinstance(h, int) and h > 2 for h in hops):
            raise ValueError(f"GMoEGINConv supports hops 0, 1 and 2 (got hops={tuple(hops)})")
        self._gin_options = (hidden_channels or 2 * out_channels, eps, train_eps, edge_encoder,
                             edge_dim)
        super().__init__(in_channels, out_channels, num_experts, k, hops, **kwargs)

    # -- experts (hooks of GMoEConv) --------------------------------------------------------

    def init_experts(self, bias: bool) -> None:
        hidden, _, train_eps, edge_encoder, edge_dim = self._gin_options
        self.hidden_channels = hidden
        E, S = self.num_experts, self.num_shared_experts
        self.w1 = Parameter(torch.empty(E, self.in_channels, hidden))
        self.w2 = Parameter(torch.empty(E, hidden, self.out_channels))
        self.b1 = Parameter(torch.empty(E, hidden)) if bias else None
        self.b2 = Parameter(torch.empty(E, self.out_channels)) if bias else None
        if train_eps:  # routed experts first, then shared ones
            self.eps = Parameter(torch.empty(E + S))
        else:
            self.register_buffer("eps", torch.empty(E + S))
        self.shared = torch.nn.ModuleList([
            mlp(self.in_channels, hidden, self.out_channels, batch_norm=False) for _ in range(S)])
        self.edge_encoder_name = edge_encoder
        names = [str(h) for h in self.hops if h >= 1] + (["2b"] if 2 in self.hops else [])
        encoders = {n: make_edge_encoder(edge_encoder, self.in_channels, edge_dim) for n in names}
        self.edge_encoders = torch.nn.ModuleDict(
            {n: m for n, m in encoders.items() if m is not None})

    def reset_experts(self) -> None:
        for e in range(self.num_experts):
            glorot(self.w1[e])
            glorot(self.w2[e])
        zeros(self.b1)
        zeros(self.b2)
        self.eps.data.fill_(self._gin_options[1])
        for expert in self.shared:
            for module in expert:
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        for encoder in self.edge_encoders.values():
            reset_edge_encoder(encoder)

    # -- forward ----------------------------------------------------------------------------

    def propagate_hops(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                       paths: Paths | None = None) -> list[Tensor]:
        r"""``[m^(h) for h in hops]`` (the class docstring), each computed once."""
        src, dst = edge_index
        out = []
        for h in self.hops:
            if h == 0:
                out.append(torch.zeros_like(x))
            elif h == 1 and "1" not in self.edge_encoders:
                out.append(aggregate(x, edge_index, None, reduce="sum", num_nodes=x.size(0)))
            elif h == 1:
                msg = F.relu(x.index_select(0, src) + self.edge_encoders["1"](edge_attr))
                out.append(x.new_zeros(x.shape).index_add_(0, dst, msg))
            else:
                first, second = two_hop_paths(edge_index, x.size(0)) if paths is None else paths
                msg = x.index_select(0, src.index_select(0, first))
                if "2" in self.edge_encoders:
                    # embed each bond once, then gather per walk (~3 walks per bond)
                    msg = F.relu(msg + self.edge_encoders["2"](edge_attr).index_select(0, first)
                                 + self.edge_encoders["2b"](edge_attr).index_select(0, second))
                out.append(x.new_zeros(x.shape).index_add_(0, dst.index_select(0, second), msg))
        return out

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                paths: Paths | None = None) -> tuple[Tensor, MoEAux]:
        """Returns the layer output ``[N, out_channels]`` and its :class:`~graphmoe.moe.MoEAux`.
        ``paths``: :func:`two_hop_paths` of ``edge_index``, to share it between layers."""
        owner = type(self).__name__
        check_features(x, self.in_channels)
        check_graph(edge_index, None, x.size(0), owner)
        check_edge_attr(next(iter(self.edge_encoders.values()), None), edge_attr,
                        edge_index.size(1), owner)
        hop_x = self.propagate_hops(x, edge_index, edge_attr, paths)
        routing = self.router(x)
        out = self.routed_gin(x, hop_x, routing)
        for s, expert in enumerate(self.shared):
            h = s % len(self.hops)
            out = out + expert(hop_x[h] + (1 + self.eps[self.num_experts + s]) * x)
        return out, self.auxiliary(routing)

    def routed_gin(self, x: Tensor, hop_x: list[Tensor], routing: Routing) -> Tensor:
        r""":math:`\sum_j g_{n,j} \mathrm{MLP}_e((1+\epsilon_e)x_n + m^{(h_e)}_n)` over the
        selected pairs only (two grouped matmuls)."""
        plan = plan_dispatch(routing.expert_index, self.num_experts)
        expert = routing.expert_index.reshape(-1).index_select(0, plan.pair_index)
        scale = 1 + self.eps.index_select(0, expert).unsqueeze(1)
        rows = self._gather_pairs(hop_x, routing.expert_index, plan)
        rows = rows + scale * x.index_select(0, plan.node_index)
        hidden = F.relu(grouped_linear(rows, self.w1, self.b1, plan))
        return combine_rows(grouped_linear(hidden, self.w2, self.b2, plan),
                            routing.combine_weight, plan)

    def dense_forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                      routing: Routing | None = None) -> Tensor:
        """Reference path: every expert MLP on every node, masked by the gate matrix."""
        hop_x = self.propagate_hops(x, edge_index, edge_attr)
        routing = self.router(x) if routing is None else routing
        gates = routing.dense_weight()
        out = x.new_zeros(x.size(0), self.out_channels)
        for e in range(self.num_experts):
            z = hop_x[int(self.hop_of_expert[e])] + (1 + self.eps[e]) * x
            h = z @ self.w1[e] + (0 if self.b1 is None else self.b1[e])
            y = F.relu(h) @ self.w2[e] + (0 if self.b2 is None else self.b2[e])
            out = out + gates[:, e:e + 1] * y
        for s, expert in enumerate(self.shared):
            out = out + expert(hop_x[s % len(self.hops)] + (1 + self.eps[self.num_experts + s]) * x)
        return out

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", edge_encoder={self.edge_encoder_name!r})"


class GMoEGIN(GMoE):
    r"""GMoE-GIN (Wang et al., NeurIPS 2023): :class:`~graphmoe.models.GMoE` with
    :class:`GMoEGINConv` layers, ``forward(x, edge_index, edge_attr=None)`` (bond features go to
    every layer; the 2-walks of hop-2 experts are enumerated once per forward). As
    :class:`~graphmoe.models.GMoE`, :attr:`aux_loss` is the mean of the layers' balancing
    losses and :meth:`aux_metrics` the routing statistics. ``norm`` defaults to
    ``"batch_norm"`` (OGB's molecule GNNs).

    Args:
        in_channels, hidden_channels, num_layers, out_channels, dropout, act, norm, residual,
            jk: as :class:`~graphmoe.models.BasicGNN`.
        num_experts, k, hops: as :class:`GMoEGINConv`.
        **conv_kwargs: Further :class:`GMoEGINConv` arguments (``edge_encoder``, ``router``,
            ``balance_loss_weight``, ``num_shared_experts``, ...).
    """

    supports_edge_attr: bool = True

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int,
                 out_channels: int | None = None, dropout: float = 0.0,
                 act: str | Callable | None = "relu", norm: str | None = "batch_norm",
                 residual: bool = False, jk: str | None = None,
                 num_experts: int | Sequence[int] = 8, k: int = 2, hops: Sequence[int] = (1, 2),
                 **conv_kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, num_layers, out_channels, dropout, act,
                         norm, residual, jk, num_experts, k, hops, **conv_kwargs)
        self._paths: Paths | None = None
        self._edge_attr: Tensor | None = None

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        return GMoEGINConv(in_channels, out_channels, **kwargs)

    def apply_conv(self, i: int, x: Tensor, edge_index: Tensor | None,
                   edge_weight: Tensor | None) -> Tensor:
        out, aux = self.convs[i](x, edge_index, self._edge_attr, self._paths)
        self.aux.append(aux)
        return out

    def forward(self, x: Tensor, edge_index: Tensor | None = None,
                edge_attr: Tensor | None = None) -> Tensor:
        """Node representations ``[num_nodes, out_channels]``; sets :attr:`aux_loss`."""
        self.check_input(x, edge_index, None)
        if 2 in self.convs[0].hops:
            self._paths = two_hop_paths(edge_index, x.size(0))
        self._edge_attr = edge_attr
        try:
            return GMoE.forward(self, x, edge_index, None)
        finally:
            self._edge_attr, self._paths = None, None
