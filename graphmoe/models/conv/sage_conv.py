"""GraphSAGE operator of Hamilton et al. (NeurIPS 2017), aggregated through :mod:`graphmoe.ops`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parameter import UninitializedParameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear

from graphmoe.ops.aggregate import aggregate, aggregate_linear

_REDUCE = {"mean": "mean", "sum": "sum", "add": "sum", "max": "max"}


class SAGEConv(MessagePassing):
    r"""The GraphSAGE operator from the `"Inductive Representation Learning on Large Graphs"
    <https://arxiv.org/abs/1706.02216>`_ paper (Hamilton et al., NeurIPS 2017).

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{W}_1 \mathbf{x}_i + \mathbf{W}_2 \cdot
        \bigoplus_{j \in \mathcal{N}(i)} e_{j,i} \, \mathbf{h}_j + \mathbf{b}

    with :math:`\bigoplus \in \{\mathrm{mean}, \mathrm{sum}, \mathrm{max}\}` and optional
    edge weights :math:`e_{j,i}` (default ``1``; ``mean`` divides by the in-degree).
    :math:`\mathbf{h}_j = \mathbf{x}_j`, or with ``project=True``
    :math:`\mathbf{h}_j = \operatorname{ReLU}(\mathbf{W}_3 \mathbf{x}_j + \mathbf{b}_3)`.
    With ``normalize=True`` the output is :math:`\ell_2`-normalised:
    :math:`\mathbf{x}^{\prime}_i / \| \mathbf{x}^{\prime}_i \|_2`.

    Same parameters (``lin_l`` for :math:`\mathbf{W}_2, \mathbf{b}`; ``lin_r`` for
    :math:`\mathbf{W}_1`; ``lin`` for :math:`\mathbf{W}_3, \mathbf{b}_3`) and, without edge
    weights, same outputs as :class:`torch_geometric.nn.conv.SAGEConv`. The aggregation and
    both linear maps run as one :func:`graphmoe.ops.aggregate.aggregate_linear` call: for ``mean`` and
    ``sum``, which commute with :math:`\mathbf{W}_2`, it aggregates at the narrower of the
    input and output widths and accumulates the root term in place. ``x`` may be a 2-D
    ``torch.sparse_csr`` tensor without grad (sparse features): it is then multiplied by the
    weights before the aggregation (``mean``, ``sum``) or densified (``max``).

    Args:
        in_channels (int): Size of each input sample (``-1``: lazy).
        out_channels (int): Size of each output sample.
        aggr (str): ``"mean"``, ``"sum"`` (or ``"add"``) or ``"max"``. (default: ``"mean"``)
        normalize (bool): :math:`\ell_2`-normalise the output. (default: ``False``)
        root_weight (bool): Add the root term :math:`\mathbf{W}_1 \mathbf{x}_i`.
            (default: ``True``)
        project (bool): Project the neighbours' features first, as above.
            (default: ``False``)
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
        project: bool = False,
        bias: bool = True,
        **kwargs,
    ) -> None:
        if aggr not in _REDUCE:
            raise ValueError(f"SAGEConv aggr must be one of {sorted(_REDUCE)}, got {aggr!r}")
        if project and in_channels <= 0:
            raise ValueError("SAGEConv does not support lazy initialization with "
                             "'project=True': give 'in_channels'")
        super().__init__(aggr=aggr, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reduce = _REDUCE[aggr]
        self.normalize = normalize
        self.root_weight = root_weight
        self.project = project
        self.lin = Linear(in_channels, in_channels, bias=True) if project else None
        self.lin_l = Linear(in_channels, out_channels, bias=bias)
        self.lin_r = Linear(in_channels, out_channels, bias=False) if root_weight else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.lin is not None:
            self.lin.reset_parameters()
        self.lin_l.reset_parameters()
        if self.lin_r is not None:
            self.lin_r.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        h = x if self.lin is None else self.lin(x).relu()
        if isinstance(self.lin_l.weight, UninitializedParameter):
            out = self._lazy_forward(x, h, edge_index, edge_weight)
        else:
            root = self.lin_r is not None
            out = aggregate_linear(
                h, edge_index, self.lin_l.weight, self.lin_l.bias, edge_weight, self.reduce,
                x_root=x if root and h is not x else None,
                weight_root=self.lin_r.weight if root else None, num_nodes=x.size(0))
        if self.normalize:
            out = F.normalize(out, p=2.0, dim=-1)
        return out

    def _lazy_forward(self, x: Tensor, h: Tensor, edge_index: Tensor,
                      edge_weight: Tensor | None) -> Tensor:
        # The first call of a lazy layer: the `Linear` modules infer their input size.
        if x.layout != torch.strided:
            raise ValueError("SAGEConv with lazy in_channels=-1 does not accept sparse node "
                             "features: give in_channels")
        out = self.lin_l(aggregate(h, edge_index, edge_weight, self.reduce, x.size(0)))
        return out if self.lin_r is None else out + self.lin_r(x)

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, aggr={self.aggr})"
