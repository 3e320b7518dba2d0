"""GraphSAGE operator of Hamilton et al. (NeurIPS 2017), aggregated through :mod:`graphmoe.ops`."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear

from graphmoe.ops import aggregate

_REDUCE = {"mean": "mean", "sum": "sum", "add": "sum", "max": "max"}


class SAGEConv(MessagePassing):
    r"""The GraphSAGE operator from the `"Inductive Representation Learning on Large Graphs"
    <https://arxiv.org/abs/1706.02216>`_ paper (Hamilton et al., NeurIPS 2017).

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{W}_1 \mathbf{x}_i + \mathbf{W}_2 \cdot
        \bigoplus_{j \in \mathcal{N}(i)} e_{j,i} \, \mathbf{x}_j + \mathbf{b}

    with :math:`\bigoplus \in \{\mathrm{mean}, \mathrm{sum}, \mathrm{max}\}` and optional
    edge weights :math:`e_{j,i}` (default ``1``; ``mean`` divides by the in-degree). With
    ``normalize=True`` the output is :math:`\ell_2`-normalised:
    :math:`\mathbf{x}^{\prime}_i / \| \mathbf{x}^{\prime}_i \|_2`.

    Same parameters (``lin_l`` for :math:`\mathbf{W}_2, \mathbf{b}`; ``lin_r`` for
    :math:`\mathbf{W}_1`) and, without edge weights, same outputs as
    :class:`torch_geometric.nn.conv.SAGEConv`. For ``mean``/``sum`` the projection commutes
    with the aggregation, so it is applied first when that shrinks the features.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        aggr (str): ``"mean"``, ``"sum"`` (or ``"add"``) or ``"max"``. (default: ``"mean"``)
        normalize (bool): :math:`\ell_2`-normalise the output. (default: ``False``)
        root_weight (bool): Add the root term :math:`\mathbf{W}_1 \mathbf{x}_i`.
            (default: ``True``)
        bias (bool): Learn an additive bias. (default: ``True``)
        **kwargs: Further :class:`~torch_geometric.nn.conv.MessagePassing` arguments.
    """

    # Arguments of ``propagate`` (PyG reads them here since ``forward`` does not call it).
    propagate_type = {"x": Tensor, "edge_weight": Tensor | None}

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        aggr: str = "mean",
        normalize: bool = False,
        root_weight: bool = True,
        bias: bool = True,
        **kwargs,
    ) -> None:
        if aggr not in _REDUCE:
            raise ValueError(f"SAGEConv aggr must be one of {sorted(_REDUCE)}, got {aggr!r}")
        super().__init__(aggr=aggr, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reduce = _REDUCE[aggr]
        self.normalize = normalize
        self.root_weight = root_weight
        self.lin_l = Linear(in_channels, out_channels, bias=bias)
        self.lin_r = Linear(in_channels, out_channels, bias=False) if root_weight else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_l.reset_parameters()
        if self.lin_r is not None:
            self.lin_r.reset_parameters()

    def _neighbours(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None) -> Tensor:
        lin = self.lin_l
        if self.reduce != "max" and self.out_channels < self.in_channels:
            # Linear maps commute with sums and means; the bias must not be averaged in.
            out = aggregate(F.linear(x, lin.weight), edge_index, edge_weight, self.reduce, x.size(0))
            return out if lin.bias is None else out + lin.bias
        return lin(aggregate(x, edge_index, edge_weight, self.reduce, x.size(0)))

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        out = self._neighbours(x, edge_index, edge_weight)
        if self.lin_r is not None:
            out = out + self.lin_r(x)
        if self.normalize:
            out = F.normalize(out, p=2.0, dim=-1)
        return out

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, aggr={self.aggr})"
