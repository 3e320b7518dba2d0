r"""GIN with edge features for molecules (OGB's ``GINConv``; GINE of Hu et al., ICLR 2020)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from graphmoe.models._validation import check_graph
from graphmoe.models.basic_gnn import BasicGNN
from graphmoe.models.conv.gin_conv import GINConv
from graphmoe.ops import aggregate

__all__ = ["EDGE_ENCODERS", "GINE", "GINEConv", "EdgeAttrGNN", "check_edge_attr",
           "make_edge_encoder", "reset_edge_encoder"]

#: Edge encoders: OGB's ``BondEncoder`` over the 3 long bond features of ``smiles2graph``, a
#: linear map of ``edge_dim`` float features, or ``None`` (no edge features: plain GIN).
EDGE_ENCODERS = ("bond", "linear", None)


def make_edge_encoder(edge_encoder: str | None, channels: int,
                      edge_dim: int | None = None) -> torch.nn.Module | None:
    """The module embedding ``edge_attr`` into ``channels`` (see :data:`EDGE_ENCODERS`)."""
    if edge_encoder == "bond":
        from ogb.graphproppred.mol_encoder import BondEncoder

        return BondEncoder(channels)
    if edge_encoder == "linear":
        if not isinstance(edge_dim, int) or edge_dim < 1:
            raise ValueError(f"edge_encoder='linear' needs edge_dim, the number of edge "
                             f"features (got edge_dim={edge_dim!r})")
        return torch.nn.Linear(edge_dim, channels)
    if edge_encoder is None:
        return None
    raise ValueError(f"'edge_encoder' must be one of {EDGE_ENCODERS} (got {edge_encoder!r})")


def reset_edge_encoder(encoder: torch.nn.Module | None) -> None:
    """Re-initialise an encoder of :func:`make_edge_encoder` (OGB: Xavier-uniform embeddings)."""
    if encoder is None:
        return
    if isinstance(encoder, torch.nn.Linear):
        encoder.reset_parameters()
        return
    for emb in encoder.bond_embedding_list:
        torch.nn.init.xavier_uniform_(emb.weight.data)


def check_edge_attr(encoder: torch.nn.Module | None, edge_attr: Tensor | None, num_edges: int,
                    owner: str) -> None:
    """A one-sentence error when ``edge_attr`` does not fit the encoder (or is missing)."""
    if encoder is None:
        return
    if edge_attr is None:
        raise ValueError(f"{owner} embeds edge features (edge_encoder) but got no edge_attr: the "
                         f"dataset has none; pass edge_attr, or build it with edge_encoder=None")
    if edge_attr.dim() != 2 or edge_attr.size(0) != num_edges:
        raise ValueError(f"{owner} expects edge_attr of shape [num_edges={num_edges}, "
                         f"num_edge_features], got {tuple(edge_attr.shape)}")
    if isinstance(encoder, torch.nn.Linear):
        if not edge_attr.is_floating_point() or edge_attr.size(1) != encoder.in_features:
            raise ValueError(f"{owner} expects float edge_attr with {encoder.in_features} "
                             f"features, got {edge_attr.dtype} [{edge_attr.size(1)}]")
    else:
        dims = [emb.num_embeddings for emb in encoder.bond_embedding_list]
        if edge_attr.is_floating_point() or edge_attr.size(1) != len(dims):
            raise ValueError(f"{owner} expects long OGB bond features edge_attr "
                             f"[num_edges, {len(dims)}] (ogb.utils.smiles2graph), got "
                             f"{edge_attr.dtype} [{edge_attr.size(1)}]")
        if edge_attr.numel() and bool((edge_attr < 0).any() |
                                      (edge_attr >= torch.tensor(dims, device=edge_attr.device)).any()):
            raise ValueError(f"{owner}: edge_attr holds bond feature values outside OGB's "
                             f"vocabulary sizes {dims}")


def mlp(in_channels: int, hidden_channels: int, out_channels: int,
        batch_norm: bool) -> torch.nn.Sequential:
    """OGB's GIN MLP ``Linear -> BatchNorm -> ReLU -> Linear`` (no norm if ``batch_norm=False``)."""
    norm = torch.nn.BatchNorm1d(hidden_channels) if batch_norm else torch.nn.Identity()
    return torch.nn.Sequential(torch.nn.Linear(in_channels, hidden_channels), norm,
                               torch.nn.ReLU(), torch.nn.Linear(hidden_channels, out_channels))


class GINEConv(GINConv):
    r"""GIN with edge features, as OGB's molecule ``GINConv`` (`"Strategies for Pre-training
    Graph Neural Networks" <https://arxiv.org/abs/1905.12265>`_, Hu et al., ICLR 2020; OGB,
    Hu et al., NeurIPS 2020):

    .. math::
        \mathbf{x}'_i = h_{\mathbf{\Theta}}\Big((1 + \epsilon)\,\mathbf{x}_i +
        \sum_{j \in \mathcal{N}(i)} \mathrm{ReLU}(\mathbf{x}_j + \phi(\mathbf{e}_{j,i}))\Big)

    with :math:`\phi` the edge encoder (OGB's ``BondEncoder`` by default) and
    :math:`h_{\mathbf{\Theta}}` = ``Linear(in, hidden) -> BatchNorm -> ReLU -> Linear(hidden,
    out)`` (hidden = 2 out, as OGB). Without an edge encoder the message is :math:`\mathbf{x}_j`
    (Xu et al.'s GIN).

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        hidden_channels (int, optional): MLP hidden size. (default: ``2 * out_channels``)
        eps (float): Initial :math:`\epsilon`. (default: ``0.``)
        train_eps (bool): Learn :math:`\epsilon` (OGB does). (default: ``True``)
        edge_encoder (str, optional): ``"bond"``, ``"linear"`` or ``None``.
        edge_dim (int, optional): Edge feature size for ``edge_encoder="linear"``.
        batch_norm (bool): Batch norm inside the MLP. (default: ``True``)
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None,
                 eps: float = 0.0, train_eps: bool = True, edge_encoder: str | None = "bond",
                 edge_dim: int | None = None, batch_norm: bool = True, **kwargs) -> None:
        hidden_channels = hidden_channels or 2 * out_channels
        super().__init__(mlp(in_channels, hidden_channels, out_channels, batch_norm), eps,
                         train_eps, **kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels = hidden_channels
        self.edge_encoder = make_edge_encoder(edge_encoder, in_channels, edge_dim)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        reset_edge_encoder(getattr(self, "edge_encoder", None))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        owner = type(self).__name__
        check_graph(edge_index, None, x.size(0), owner)
        check_edge_attr(self.edge_encoder, edge_attr, edge_index.size(1), owner)
        if self.edge_encoder is None:
            out = aggregate(x, edge_index, None, reduce="sum", num_nodes=x.size(0))
        else:
            src, dst = edge_index
            msg = F.relu(x.index_select(0, src) + self.edge_encoder(edge_attr))
            out = x.new_zeros(x.shape).index_add_(0, dst, msg)
        return self.nn(out + (1 + self.eps) * x)

    def __repr__(self) -> str:
        encoder = "bond" if self.edge_encoder is not None and not isinstance(
            self.edge_encoder, torch.nn.Linear) else getattr(self.edge_encoder, "in_features", None)
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"edge_encoder={encoder!r})")


class EdgeAttrGNN(BasicGNN):
    r""":class:`~graphmoe.models.BasicGNN` whose layers also take ``edge_attr``:
    ``forward(x, edge_index, edge_attr=None)`` hands ``edge_attr`` to every layer.
    Graph-level task modules (:class:`~graphmoe.training.graph.GraphPredictor`) pass bond
    features to models whose ``supports_edge_attr`` is ``True``."""

    supports_edge_attr: bool = True

    def forward(self, x: Tensor, edge_index: Tensor | None = None,
                edge_attr: Tensor | None = None) -> Tensor:
        """Node representations ``[num_nodes, out_channels]``."""
        self._edge_attr = edge_attr
        try:
            return super().forward(x, edge_index, None)
        finally:
            self._edge_attr = None

    def apply_conv(self, i: int, x: Tensor, edge_index: Tensor | None,
                   edge_weight: Tensor | None) -> Tensor:
        return self.convs[i](x, edge_index, self._edge_attr)


class GINE(EdgeAttrGNN):
    r"""GIN with bond features, the ``gin`` baseline of OGB's molecule datasets and of the GMoE
    paper's ``ogbg-mol*`` tables: :class:`~graphmoe.models.BasicGNN` with :class:`GINEConv`
    layers (``norm="batch_norm"`` gives OGB's per-layer batch norm). ``**conv_kwargs`` go to
    :class:`GINEConv` (``edge_encoder``, ``edge_dim``, ``train_eps``, ``hidden_channels`` of the
    MLP is ``2 * out`` by default).

    Args:
        in_channels, hidden_channels, num_layers, out_channels, dropout, act, norm, residual,
            jk: as :class:`~graphmoe.models.BasicGNN`.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int,
                 out_channels: int | None = None, dropout: float = 0.0,
                 act: str | Callable | None = "relu", norm: str | None = "batch_norm",
                 residual: bool = False, jk: str | None = None, **conv_kwargs) -> None:
        super().__init__(in_channels, hidden_channels, num_layers, out_channels, dropout, act,
                         norm, residual, jk, **conv_kwargs)

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        return GINEConv(in_channels, out_channels, **kwargs)
