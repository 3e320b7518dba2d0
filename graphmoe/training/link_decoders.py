"""Pair decoders of :class:`~graphmoe.training.link.LinkPredictor`: a dot product or an MLP on the
Hadamard product of two node embeddings, each able to score one source against every node."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphmoe.ops import dropout

__all__ = ["PAIR_BUDGET", "DotDecoder", "MLPDecoder", "build_decoder"]

#: Scores computed at once when ranking all candidates (bounds the memory of node evaluation).
PAIR_BUDGET = 1 << 22


class DotDecoder(nn.Module):
    r"""Dot-product decoder :math:`s(u, v) = \mathbf{z}_u^\top \mathbf{z}_v` (a logit)."""

    def forward(self, z_src: Tensor, z_dst: Tensor) -> Tensor:
        return (z_src * z_dst).sum(-1)

    def all_pairs(self, z_src: Tensor, z: Tensor) -> Tensor:
        """``[len(z_src), len(z)]`` scores of every source against every node."""
        return z_src @ z.t()

    def reset_parameters(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MLPDecoder(nn.Module):
    r"""MLP on the Hadamard product, :math:`s(u, v) = \mathrm{MLP}(\mathbf{z}_u \odot
    \mathbf{z}_v)` (a logit): the "M-LP" predictor of the TC paper's code and of OGB baselines.

    Args:
        in_channels: embedding size.
        hidden_channels: hidden size of the MLP.
        num_layers: number of linear layers (``>= 1``).
        dropout: dropout after each hidden layer.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLPDecoder expects num_layers >= 1, got {num_layers}")
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [1]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout
        self.in_channels, self.hidden_channels = in_channels, hidden_channels

    def reset_parameters(self) -> None:
        for lin in self.lins:
            lin.reset_parameters()

    def forward(self, z_src: Tensor, z_dst: Tensor) -> Tensor:
        h = z_src * z_dst
        for lin in self.lins[:-1]:
            h = dropout(F.relu(lin(h)), p=self.dropout, training=self.training)
        return self.lins[-1](h).squeeze(-1)

    def all_pairs(self, z_src: Tensor, z: Tensor) -> Tensor:
        rows = max(1, PAIR_BUDGET // max(1, z.size(0) * z.size(1)))
        out = [self(zs.unsqueeze(1), z.unsqueeze(0)) for zs in z_src.split(rows)]
        return torch.cat(out) if out else z_src.new_empty(0, z.size(0))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"num_layers={len(self.lins)})")


def build_decoder(name: str, channels: int, num_layers: int, dropout: float) -> nn.Module:
    if name == "dot":
        return DotDecoder()
    if name == "mlp":
        return MLPDecoder(channels, channels, num_layers, dropout)
    raise ValueError(f"decoder must be 'dot' or 'mlp', got {name!r}")


