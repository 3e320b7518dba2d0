"""Deep Adaptive Graph Neural Network (Liu et al., KDD 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, ModuleList

from graphmoe.models._validation import check_features, check_graph
from graphmoe.models.conv.gcn_conv import gcn_norm, gcn_propagate
from graphmoe.ops import dropout


class DAGNN(torch.nn.Module):
    r"""The Deep Adaptive Graph Neural Network from the `"Towards Deeper Graph Neural Networks"
    <https://arxiv.org/abs/2007.09296>`_ paper (Liu, Gao & Ji, KDD 2020).

    Transformation and propagation are decoupled. An MLP maps the features to class
    scores, which are propagated :math:`K` hops and combined with adaptive, per-node
    retention scores:

    .. math::
        \mathbf{Z} &= \mathrm{MLP}(\mathbf{X}) \in \mathbb{R}^{N \times c}, \qquad
        \mathbf{H}_k = \mathbf{\hat{A}}^k \mathbf{Z}, \quad k = 0, \dots, K,

        \mathbf{\hat{A}} &= \mathbf{\hat{D}}^{-1/2} (\mathbf{A} + \mathbf{I})
        \mathbf{\hat{D}}^{-1/2},

        s_{i,k} &= \sigma(\mathbf{H}_{k,i} \, \mathbf{w} + b), \qquad
        \mathbf{x}^{\prime}_i = \sum_{k=0}^{K} s_{i,k} \, \mathbf{H}_{k,i}.

    The MLP is ``Dropout -> Linear -> ReLU`` repeated, ending in ``Dropout -> Linear`` (as in
    the authors' code). The output is logits (no log-softmax). Paper settings for Cora:
    ``hidden_channels=64, K=10, dropout=0.8``, Adam with ``lr=0.01, weight_decay=0.005``.

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int): Hidden size of the MLP.
        out_channels (int): Output size :math:`c` (number of classes).
        K (int): Number of propagation hops. (default: ``10``)
        dropout (float): Dropout probability before each linear layer. (default: ``0.5``)
        num_layers (int): Number of linear layers of the MLP. (default: ``2``)
        cached (bool): Cache :math:`\mathbf{\hat{A}}` (graph and normalisation) on the first
            call and reuse it until :meth:`reset_parameters` (transductive settings only).
            (default: ``False``)
        add_self_loops (bool): Use :math:`\mathbf{A} + \mathbf{I}`. (default: ``True``)
        bias (bool): Learn the biases of the MLP and of the retention score.
            (default: ``True``)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        K: int = 10,
        dropout: float = 0.5,
        num_layers: int = 2,
        cached: bool = False,
        add_self_loops: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1),
                                 ("hidden_channels", hidden_channels, 1),
                                 ("out_channels", out_channels, 1), ("K", K, 0),
                                 ("num_layers", num_layers, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"DAGNN expects {name} to be an int >= {low}, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"DAGNN expects dropout in [0, 1), got {dropout!r}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.K = K
        self.dropout = dropout
        self.num_layers = num_layers
        self.cached = cached
        self.add_self_loops = add_self_loops
        self._cached: tuple[Tensor, Tensor, Tensor | None] | None = None
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lins = ModuleList([Linear(a, b, bias=bias) for a, b in zip(dims[:-1], dims[1:])])
        self.proj = Linear(out_channels, 1, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for lin in self.lins:
            lin.reset_parameters()
        self.proj.reset_parameters()
        self._cached = None

    def transform(self, x: Tensor) -> Tensor:
        r""":math:`\mathbf{Z} = \mathrm{MLP}(\mathbf{X})`."""
        for i, lin in enumerate(self.lins):
            x = lin(dropout(x, p=self.dropout, training=self.training))
            if i < len(self.lins) - 1:
                x = F.relu(x)
        return x

    def propagate(self, z: Tensor, edge_index: Tensor,
                  edge_weight: Tensor | None = None) -> Tensor:
        r"""The hops :math:`[\mathbf{H}_0, \dots, \mathbf{H}_K]` stacked as ``[N, K + 1, c]``."""
        if self._cached is not None:
            edge_index, norm, loop_norm = self._cached
        else:
            norm, loop_norm = gcn_norm(edge_index, edge_weight, z.size(0),
                                       add_self_loops=self.add_self_loops, dtype=z.dtype)
            if self.cached:
                self._cached = (edge_index, norm, loop_norm)
        hops = [z]
        for _ in range(self.K):
            hops.append(gcn_propagate(hops[-1], edge_index, norm, loop_norm))
        return torch.stack(hops, dim=1)

    def retention(self, hops: Tensor) -> Tensor:
        r"""Adaptive retention scores :math:`s_{i,k} = \sigma(\mathbf{H}_{k,i}\mathbf{w} + b)`,
        shape ``[N, K + 1]``."""
        return torch.sigmoid(self.proj(hops)).squeeze(-1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Logits ``[num_nodes, out_channels]``."""
        check_features(x, self.in_channels, type(self).__name__)
        check_graph(edge_index, edge_weight, x.size(0), type(self).__name__)
        hops = self.propagate(self.transform(x), edge_index, edge_weight)
        return (self.retention(hops).unsqueeze(-1) * hops).sum(dim=1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, K={self.K})")
