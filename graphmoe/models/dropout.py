"""Dropout as a module, through :func:`graphmoe.ops.dropout` (fast on CPU)."""
from __future__ import annotations

from torch import Tensor, nn

from graphmoe.ops.dropout import dropout


class Dropout(nn.Module):
    r"""Zeroes each entry with probability ``p`` in training mode and scales the others by
    :math:`1 / (1 - p)`; the identity in eval mode. A drop-in for :class:`torch.nn.Dropout`
    (same distribution; on CPU drawn from ``torch.rand_like``, ~3x faster than ATen's kernel,
    see :mod:`graphmoe.ops.dropout`).

    Args:
        p (float): Probability of zeroing an entry. (default: ``0.5``)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
