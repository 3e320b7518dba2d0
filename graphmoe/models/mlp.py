"""A graph-agnostic MLP with the backbones' constructor and forward signature."""
from __future__ import annotations

import torch
from torch import Tensor

from graphmoe.models.basic_gnn import BasicGNN


class MLP(BasicGNN):
    r"""A multi-layer perceptron that ignores the graph, interchangeable with the GNN backbones.

    .. math::
        \mathbf{H}^{(\ell)} = \mathrm{Dropout}\Big(\sigma\Big(\mathrm{Norm}\big(
        \mathbf{H}^{(\ell-1)}\mathbf{W}^{(\ell)} + \mathbf{b}^{(\ell)} +
        \mathbf{P}^{(\ell)} \mathbf{H}^{(\ell-1)}\big)\Big)\Big)

    i.e. :class:`~graphmoe.models.basic_gnn.BasicGNN` with linear layers, the graph-free
    baseline of e.g. `Platonov et al., ICLR 2023 <https://arxiv.org/abs/2302.11640>`_
    ("ResNet" with ``residual=True, norm="layer_norm"``). ``forward(x, edge_index=None,
    edge_weight=None)`` accepts and ignores the graph so it can replace a GNN anywhere.
    Same arguments as :class:`~graphmoe.models.GCN` (``**kwargs`` go to
    :class:`torch.nn.Linear`, e.g. ``bias``). ``x`` may be a sparse ``torch.sparse_csr``
    tensor (e.g. bag-of-words features; it must not require grad).
    """

    uses_graph = False
    supports_sparse_features = True

    def init_conv(self, in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
        return torch.nn.Linear(in_channels, out_channels, **kwargs)

    def apply_conv(self, i: int, x: Tensor, edge_index: Tensor | None,
                   edge_weight: Tensor | None) -> Tensor:
        return self.convs[i](x)

    @property
    def lins(self) -> torch.nn.ModuleList:
        """The linear layers (an alias of ``convs``)."""
        return self.convs
