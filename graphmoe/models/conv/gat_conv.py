"""Graph attention operator of Veličković et al. (ICLR 2018), aggregated through :mod:`graphmoe.ops`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.utils import softmax

from graphmoe.ops import aggregate, dropout


class GATConv(MessagePassing):
    r"""The graph attentional operator from the `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ paper (Veličković et al., ICLR 2018).

    .. math::
        \mathbf{x}^{\prime}_i = \mathop{\Big\Vert}_{h=1}^{H} \sum_{j \in \mathcal{N}(i) \cup
        \{ i \}} e_{j,i} \, \alpha^{h}_{i,j} \mathbf{\Theta}^{h} \mathbf{x}_{j} + \mathbf{b},
        \qquad
        \alpha^{h}_{i,j} = \frac{\exp\left(\mathrm{LeakyReLU}\left(
        \mathbf{a}^{h\top}_{s} \mathbf{\Theta}^{h} \mathbf{x}_j +
        \mathbf{a}^{h\top}_{t} \mathbf{\Theta}^{h} \mathbf{x}_i \right)\right)}
        {\sum_{k \in \mathcal{N}(i) \cup \{ i \}} \exp\left(\mathrm{LeakyReLU}\left(
        \mathbf{a}^{h\top}_{s} \mathbf{\Theta}^{h} \mathbf{x}_k +
        \mathbf{a}^{h\top}_{t} \mathbf{\Theta}^{h} \mathbf{x}_i \right)\right)},

    where :math:`\Vert` concatenates the :math:`H` heads (or averages them when
    ``concat=False``). The softmax runs per target node and head; dropout is applied to
    :math:`\alpha`. Optional edge weights :math:`e_{j,i}` (a graphmoe extension; PyG's
    ``GATConv`` has none) rescale the normalised attention of each edge; self-loops
    get :math:`e_{i,i} = 1`. Without edge weights the outputs equal
    :class:`torch_geometric.nn.conv.GATConv` with the same parameters.

    With ``add_self_loops=True``, existing self-loops are ignored and one self-loop per node
    is added, as in PyG; the loop term is computed densely so that the aggregation runs on
    the caller's ``edge_index`` (whose CSR :mod:`graphmoe.ops` caches).

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample per head.
        heads (int): Number of attention heads :math:`H`. (default: ``1``)
        concat (bool): Concatenate the heads; otherwise average them. (default: ``True``)
        negative_slope (float): LeakyReLU slope. (default: ``0.2``)
        dropout (float): Dropout probability of the attention coefficients. (default: ``0.``)
        add_self_loops (bool): Attend to each node itself. (default: ``True``)
        bias (bool): Learn an additive bias. (default: ``True``)
        **kwargs: Further :class:`~torch_geometric.nn.conv.MessagePassing` arguments.
    """

    # Arguments of ``propagate`` (PyG reads them here since ``forward`` does not call it).
    propagate_type = {"x": Tensor, "alpha": Tensor}

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        bias: bool = True,
        **kwargs,
    ) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.add_self_loops = add_self_loops
        self.lin = Linear(in_channels, heads * out_channels, bias=False,
                          weight_initializer="glorot")
        self.att_src = Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = Parameter(torch.empty(1, heads, out_channels))
        if bias:
            self.bias = Parameter(torch.empty(out_channels * (heads if concat else 1)))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin.reset_parameters()
        glorot(self.att_src)
        glorot(self.att_dst)
        zeros(self.bias)

    def attention(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor | None]:
        """Normalised attention ``([E, H] in edge_index order, [N, H] self-loops or None)``.

        ``x`` is the projected ``[N, H, C]`` input. Edges that are self-loops get zero weight
        when ``add_self_loops`` is set (the dense loop term replaces them).
        """
        num_nodes = x.size(0)
        a_src = (x * self.att_src).sum(-1)
        a_dst = (x * self.att_dst).sum(-1)
        src, dst = edge_index[0], edge_index[1]
        alpha = a_src[src] + a_dst[dst]
        index = dst
        if self.add_self_loops:
            is_loop = src == dst
            # Existing loops go to a dummy segment ``num_nodes`` and are zeroed below.
            index = torch.where(is_loop, num_nodes, dst)
            alpha = torch.cat([alpha, a_src + a_dst], dim=0)
            index = torch.cat([index, torch.arange(num_nodes, device=dst.device)])
        alpha = F.leaky_relu(alpha, self.negative_slope)
        alpha = softmax(alpha, index, num_nodes=num_nodes + 1)
        alpha = dropout(alpha, p=self.dropout, training=self.training)
        if not self.add_self_loops:
            return alpha, None
        alpha_edge, alpha_loop = alpha[: src.numel()], alpha[src.numel():]
        return alpha_edge.masked_fill(is_loop.unsqueeze(-1), 0.0), alpha_loop

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        H, C = self.heads, self.out_channels
        x = self.lin(x).view(-1, H, C)
        alpha, alpha_loop = self.attention(x, edge_index)
        if edge_weight is not None:
            alpha = alpha * edge_weight.unsqueeze(-1)
        # One aggregation per head: ``aggregate`` takes one scalar weight per edge.
        out = torch.stack([
            aggregate(x[:, h], edge_index, alpha[:, h], reduce="sum", num_nodes=x.size(0))
            for h in range(H)
        ], dim=1)
        if alpha_loop is not None:
            out = out + alpha_loop.unsqueeze(-1) * x
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        return out

    def message(self, x_j: Tensor, alpha: Tensor) -> Tensor:
        return alpha.unsqueeze(-1) * x_j

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads})")
