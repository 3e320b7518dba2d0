"""Graph isomorphism operator of Xu et al. (ICLR 2019), aggregated through :mod:`graphmoe.ops`."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.inits import reset

from graphmoe.ops import aggregate


class GINConv(MessagePassing):
    r"""The graph isomorphism operator from the `"How Powerful are Graph Neural Networks?"
    <https://arxiv.org/abs/1810.00826>`_ paper (Xu et al., ICLR 2019).

    .. math::
        \mathbf{x}^{\prime}_i = h_{\mathbf{\Theta}} \left( (1 + \epsilon) \cdot
        \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)} e_{j,i} \, \mathbf{x}_j \right)

    where :math:`h_{\mathbf{\Theta}}` is a neural network (an MLP) and :math:`e_{j,i}` optional
    edge weights (default ``1``, which gives :class:`torch_geometric.nn.conv.GINConv`).

    Args:
        nn (torch.nn.Module): :math:`h_{\mathbf{\Theta}}`, mapping ``[-1, in_channels]`` to
            ``[-1, out_channels]``.
        eps (float): Initial :math:`\epsilon`. (default: ``0.``)
        train_eps (bool): Learn :math:`\epsilon`. (default: ``False``)
        **kwargs: Further :class:`~torch_geometric.nn.conv.MessagePassing` arguments.
    """

    # Arguments of ``propagate`` (PyG reads them here since ``forward`` does not call it).
    propagate_type = {"x": Tensor, "edge_weight": Tensor | None}

    def __init__(self, nn: torch.nn.Module, eps: float = 0.0, train_eps: bool = False,
                 **kwargs) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.nn = nn
        self.initial_eps = eps
        if train_eps:
            self.eps = torch.nn.Parameter(torch.empty(1))
        else:
            self.register_buffer("eps", torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        reset(self.nn)
        self.eps.data.fill_(self.initial_eps)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        out = aggregate(x, edge_index, edge_weight, reduce="sum", num_nodes=x.size(0))
        return self.nn(out + (1 + self.eps) * x)

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nn={self.nn})"
