r"""Routed experts with stacked weights, computed by sorted dispatch."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.resolver import activation_resolver

from graphmoe.ops.dispatch import expert_ffn

__all__ = ["ExpertFFN"]


class ExpertFFN(torch.nn.Module):
    r""":math:`E` two-layer feed-forward experts stored as stacked weights
    :math:`\mathbf{W}^{(1)} \in \mathbb{R}^{E \times F_{in} \times H}`,
    :math:`\mathbf{W}^{(2)} \in \mathbb{R}^{E \times H \times F_{out}}`, so that all of
    them run as one grouped matmul (:func:`graphmoe.ops.dispatch.expert_ffn`):

    .. math::
        \mathbf{y}_n = \sum_{j} g_{n,j}\, \big(\sigma(\mathbf{x}_n \mathbf{W}^{(1)}_{e_{n,j}}
        + \mathbf{b}^{(1)}_{e_{n,j}}) \mathbf{W}^{(2)}_{e_{n,j}} + \mathbf{b}^{(2)}_{e_{n,j}}\big).

    Args:
        num_experts (int): Number of experts :math:`E`.
        in_channels (int): Input size :math:`F_{in}`.
        hidden_channels (int): Hidden size :math:`H` of each expert.
        out_channels (int): Output size :math:`F_{out}`.
        act (str or callable): Non-linearity :math:`\sigma`. (default: :obj:`"gelu"`)
        bias (bool): Learn biases. (default: :obj:`True`)
        backend (str): Dispatch backend, see :func:`~graphmoe.ops.dispatch.expert_ffn`.
    """

    def __init__(self, num_experts: int, in_channels: int, hidden_channels: int,
                 out_channels: int, act: str = "gelu", bias: bool = True,
                 backend: str = "auto") -> None:
        super().__init__()
        self.num_experts = num_experts
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.act = activation_resolver(act)
        self.backend = backend
        self.w1 = Parameter(torch.empty(num_experts, in_channels, hidden_channels))
        self.w2 = Parameter(torch.empty(num_experts, hidden_channels, out_channels))
        self.b1 = Parameter(torch.empty(num_experts, hidden_channels)) if bias else None
        self.b2 = Parameter(torch.empty(num_experts, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Each expert like torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        for weight, bias in ((self.w1, self.b1), (self.w2, self.b2)):
            bound = 1.0 / math.sqrt(weight.size(1))
            torch.nn.init.uniform_(weight, -bound, bound)
            if bias is not None:
                torch.nn.init.uniform_(bias, -bound, bound)

    def forward(self, x: Tensor, expert_index: Tensor, combine_weight: Tensor) -> Tensor:
        return expert_ffn(x, expert_index, combine_weight, self.w1, self.w2, self.b1,
                          self.b2, activation=self.act, backend=self.backend)

    def expert(self, x: Tensor, e: int) -> Tensor:
        """Expert ``e`` applied densely to every row of ``x`` (a reference path)."""
        hidden = x @ self.w1[e]
        if self.b1 is not None:
            hidden = hidden + self.b1[e]
        out = self.act(hidden) @ self.w2[e]
        return out + self.b2[e] if self.b2 is not None else out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_experts}, {self.in_channels}, "
                f"{self.hidden_channels}, {self.out_channels})")
