"""Stacked-layer backbones in the style of PyG's ``torch_geometric.nn.models.basic_gnn``."""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import Identity, Linear, ModuleList
from torch_geometric.nn.resolver import activation_resolver

from graphmoe.models._validation import check_features, check_graph
from graphmoe.models.conv import GATConv, GCNConv, GINConv, SAGEConv
from graphmoe.models.dropout import Dropout

NORMS = ("batch_norm", "layer_norm")
JK_MODES = ("cat", "max", "last")


def _check_args(in_channels: int, hidden_channels: int, num_layers: int,
                out_channels: int | None, dropout: float, norm: str | None,
                jk: str | None, owner: str) -> None:
    for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                        ("num_layers", num_layers), ("out_channels", out_channels)):
        if value is None and name == "out_channels":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner} expects {name} to be a positive int, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner} expects dropout in [0, 1), got {dropout!r}")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"{owner} expects norm to be one of {NORMS} or None, got {norm!r}")
    if jk is not None and jk not in JK_MODES:
        raise ValueError(f"{owner} expects jk to be one of {JK_MODES} or None, got {jk!r}")


def make_norm(norm: str | None, channels: int) -> torch.nn.Module:
    """``"batch_norm"`` / ``"layer_norm"`` (node-wise) / ``None`` (identity)."""
    if norm == "batch_norm":
        return torch.nn.BatchNorm1d(channels)
    if norm == "layer_norm":
        return torch.nn.LayerNorm(channels)
    return Identity()


class BasicGNN(torch.nn.Module):
    r"""Base class of the stacked backbones (:class:`GCN`, :class:`GraphSAGE`, :class:`GAT`,
    :class:`GIN`, :class:`~graphmoe.models.MLP`), following PyG's ``BasicGNN``.

    Layer :math:`\ell = 1, \dots, L` computes

    .. math::
        \mathbf{H}^{(\ell)} = \mathrm{Dropout}\Big(\sigma\Big(\mathrm{Norm}\big(
        \mathrm{Conv}^{(\ell)}(\mathbf{H}^{(\ell-1)}) + \mathbf{P}^{(\ell)} \mathbf{H}^{(\ell-1)}
        \big)\Big)\Big), \qquad \mathbf{H}^{(0)} = \mathbf{X},

    where the skip term :math:`\mathbf{P}^{(\ell)}` (``residual=True``) is the identity when
    the shapes agree and a learned projection otherwise, as in the residual GNNs of
    `"A critical look at the evaluation of GNNs under heterophily"
    <https://arxiv.org/abs/2302.11640>`_ (Platonov et al., ICLR 2023; combine with
    ``norm="layer_norm"``). The last layer skips norm, activation and dropout unless ``jk``
    is set, in which case the layer outputs are combined (``"cat"``, ``"max"`` or ``"last"``,
    `Xu et al., ICML 2018 <https://arxiv.org/abs/1806.03536>`_) and mapped to
    ``out_channels`` by a linear layer.

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int): Size of each hidden sample.
        num_layers (int): Number of layers :math:`L`.
        out_channels (int, optional): Output size; defaults to ``hidden_channels``.
        dropout (float): Dropout probability after each hidden layer. (default: ``0.``)
        act (str or Callable, optional): Activation :math:`\sigma`. (default: ``"relu"``)
        norm (str, optional): ``"batch_norm"``, ``"layer_norm"`` or ``None``.
        residual (bool): Add the skip connections :math:`\mathbf{P}^{(\ell)}`.
            (default: ``False``)
        jk (str, optional): Jumping-knowledge mode ``"cat"``, ``"max"``, ``"last"`` or ``None``.
        **conv_kwargs: Further arguments of the layer class.
    """

    uses_graph: bool = True
    supports_sparse_features: bool = False
    """Whether ``x`` may be a 2-D ``torch.sparse_csr`` tensor (MLP, GCN, GraphSAGE); the
    others raise a ``ValueError`` for one."""

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
        **conv_kwargs,
    ) -> None:
        super().__init__()
        _check_args(in_channels, hidden_channels, num_layers, out_channels, dropout, norm, jk,
                    type(self).__name__)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.out_channels = out_channels if out_channels is not None else hidden_channels
        self.dropout = Dropout(p=dropout)
        self.act = activation_resolver(act) if act is not None else None
        self.norm = norm
        self.residual = residual
        self.jk_mode = jk

        self.convs = ModuleList()
        self.skips = ModuleList()
        dims = [in_channels] + [hidden_channels] * num_layers
        if out_channels is not None and jk is None:
            dims[-1] = out_channels
        for i in range(num_layers):
            self._is_conv_to_out = i == num_layers - 1 and out_channels is not None and jk is None
            self.convs.append(self.init_conv(dims[i], dims[i + 1], **conv_kwargs))
            if residual:
                self.skips.append(Identity() if dims[i] == dims[i + 1]
                                  else Linear(dims[i], dims[i + 1], bias=False))
        num_norms = num_layers if jk is not None else num_layers - 1
        self.norms = ModuleList([make_norm(norm, hidden_channels) for _ in range(num_norms)])
        if jk is not None:
            jk_channels = num_layers * hidden_channels if jk == "cat" else hidden_channels
            self.lin = Linear(jk_channels, self.out_channels)

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for module in [*self.convs, *self.skips, *self.norms]:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if hasattr(self, "lin"):
            self.lin.reset_parameters()

    def check_input(self, x: Tensor, edge_index: Tensor | None,
                    edge_weight: Tensor | None) -> None:
        """Raise a ``ValueError``/``TypeError`` naming the bad argument."""
        check_features(x, self.in_channels, type(self).__name__,
                       sparse=self.supports_sparse_features)
        if self.uses_graph:
            check_graph(edge_index, edge_weight, x.size(0), type(self).__name__)

    def apply_conv(self, i: int, x: Tensor, edge_index: Tensor | None,
                   edge_weight: Tensor | None) -> Tensor:
        return self.convs[i](x, edge_index, edge_weight)

    def forward(self, x: Tensor, edge_index: Tensor | None = None,
                edge_weight: Tensor | None = None) -> Tensor:
        """Node representations ``[num_nodes, out_channels]``."""
        self.check_input(x, edge_index, edge_weight)
        xs: list[Tensor] = []
        for i in range(self.num_layers):
            h = self.apply_conv(i, x, edge_index, edge_weight)
            if self.residual:
                h = h + self.skips[i](x)
            if i < self.num_layers - 1 or self.jk_mode is not None:
                h = self.norms[i](h)
                if self.act is not None:
                    h = self.act(h)
                h = self.dropout(h)
                xs.append(h)
            x = h
        if self.jk_mode is None:
            return x
        if self.jk_mode == "cat":
            x = torch.cat(xs, dim=-1)
        elif self.jk_mode == "max":
            x = torch.stack(xs, dim=-1).amax(dim=-1)
        return self.lin(x)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"num_layers={self.num_layers})")


class GCN(BasicGNN):
    r"""The graph convolutional network from the `"Semi-supervised Classification with Graph
    Convolutional Networks" <https://arxiv.org/abs/1609.02907>`_ paper (Kipf & Welling,
    ICLR 2017): :class:`BasicGNN` with :class:`~graphmoe.models.conv.GCNConv` layers,
    :math:`\mathrm{Conv}(\mathbf{H}) = \mathbf{\hat{D}}^{-1/2}\mathbf{\hat{A}}
    \mathbf{\hat{D}}^{-1/2}\mathbf{H}\mathbf{\Theta}`. ``**conv_kwargs`` go to ``GCNConv``
    (``improved``, ``cached``, ``add_self_loops``, ``normalize``, ``bias``).
    ``x`` may be sparse (a ``torch.sparse_csr`` tensor, e.g. bag-of-words features): the first
    layer multiplies it by its weight before aggregating.
    """

    supports_sparse_features = True

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        return GCNConv(in_channels, out_channels, **kwargs)


class GraphSAGE(BasicGNN):
    r"""GraphSAGE from the `"Inductive Representation Learning on Large Graphs"
    <https://arxiv.org/abs/1706.02216>`_ paper (Hamilton et al., NeurIPS 2017):
    :class:`BasicGNN` with :class:`~graphmoe.models.conv.SAGEConv` layers,
    :math:`\mathrm{Conv}(\mathbf{H})_i = \mathbf{W}_1\mathbf{h}_i + \mathbf{W}_2
    \bigoplus_{j \in \mathcal{N}(i)} \mathbf{h}_j`. ``**conv_kwargs`` go to ``SAGEConv``
    (``aggr``, ``normalize``, ``root_weight``, ``bias``). ``x`` may be sparse (a
    ``torch.sparse_csr`` tensor): the first layer multiplies it by its weights before
    aggregating (``mean``, ``sum``) or aggregates it densified (``max``).
    """

    supports_sparse_features = True

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        return SAGEConv(in_channels, out_channels, **kwargs)


class GIN(BasicGNN):
    r"""The graph isomorphism network from the `"How Powerful are Graph Neural Networks?"
    <https://arxiv.org/abs/1810.00826>`_ paper (Xu et al., ICLR 2019): :class:`BasicGNN`
    with :class:`~graphmoe.models.conv.GINConv` layers whose
    :math:`h_{\mathbf{\Theta}}` is a two-layer MLP
    ``Linear(in, out) -> act -> Linear(out, out)``. ``**conv_kwargs`` go to ``GINConv``
    (``eps``, ``train_eps``).
    """

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        act = copy.deepcopy(self.act) if self.act is not None else Identity()
        mlp = torch.nn.Sequential(Linear(in_channels, out_channels), act,
                                  Linear(out_channels, out_channels))
        return GINConv(mlp, **kwargs)


class GAT(BasicGNN):
    r"""The graph attention network from the `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ paper (Veličković et al., ICLR 2018):
    :class:`BasicGNN` with :class:`~graphmoe.models.conv.GATConv` layers.

    As in PyG, hidden layers concatenate ``heads`` heads of ``hidden_channels // heads``
    channels each (``hidden_channels`` must be divisible by ``heads``), and a last layer
    that maps to ``out_channels`` averages its heads. The attention dropout is
    ``attn_dropout`` (default: the model's ``dropout``). Other ``**conv_kwargs``
    (``heads``, ``concat``, ``negative_slope``, ``add_self_loops``, ``bias``) go to
    ``GATConv``.
    """

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        kwargs = dict(kwargs)
        heads = kwargs.pop("heads", 1)
        concat = kwargs.pop("concat", True) and not self._is_conv_to_out
        attn_dropout = kwargs.pop("attn_dropout", self.dropout.p)
        if concat:
            if out_channels % heads != 0:
                raise ValueError(f"GAT expects hidden_channels={out_channels} to be divisible "
                                 f"by heads={heads} (the heads are concatenated)")
            out_channels //= heads
        return GATConv(in_channels, out_channels, heads=heads, concat=concat,
                       dropout=attn_dropout, **kwargs)
