r"""The confidence side of Mowst: dispersion of the weak expert's prediction, the gate
:math:`C = \sigma(G(u))`, and the routing rules that turn :math:`C` into expert choices.

Zeng et al., "Mixture of Weak & Strong Experts on Graphs", ICLR 2024. Everything here is
re-exported by :mod:`graphmoe.models.mowst`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch_geometric.nn.resolver import activation_resolver

from graphmoe.models.dropout import Dropout
from graphmoe.ops.rowwise import row_log_softmax, row_softmax, row_variance

__all__ = [
    "DISPERSIONS",
    "GATE_INPUTS",
    "RULES",
    "VARIANTS",
    "ConfidenceGate",
    "check_variant",
    "dispersion",
    "entropy_dispersion",
    "route",
    "variance_dispersion",
]

DISPERSIONS = ("variance", "entropy", "both")
GATE_INPUTS = ("dispersion", "dispersion+x")
RULES = ("random", "threshold", "soft")
VARIANTS = ("mowst", "mowst_star")


def _check_choice(name: str, value: str, choices: tuple[str, ...], owner: str) -> str:
    if value not in choices:
        raise ValueError(f"{owner} expects {name} to be one of {list(choices)}, got {value!r}")
    return value


def check_variant(variant: str, owner: str = "Mowst") -> str:
    """``"mowst"`` or ``"mowst_star"`` (``"mowst*"`` is accepted as an alias)."""
    if variant == "mowst*":
        return "mowst_star"
    return _check_choice("variant", variant, VARIANTS, owner)

# -- dispersion ------------------------------------------------------------------------------


def _num_classes(logits: Tensor) -> int:
    if logits.dim() != 2 or logits.size(-1) < 2:
        raise ValueError(f"dispersion needs logits of shape [num_nodes, num_classes >= 2], "
                         f"got {tuple(logits.shape)}")
    return int(logits.size(-1))


def variance_dispersion(logits: Tensor) -> Tensor:
    r"""Variance-based dispersion :math:`\mathrm{var}(p) / \mathrm{var}(e_1) \in [0, 1]`.

    :math:`p = \mathrm{softmax}(z)` over :math:`n` classes, variances over the classes (biased),
    and :math:`\mathrm{var}(e_1) = (n - 1) / n^2` is the variance of a one-hot vector, the
    largest possible: 0 for a uniform prediction, 1 for a one-hot one. Shape ``[N]``.
    """
    n = _num_classes(logits)
    return row_variance(row_softmax(logits)) * (n * n / (n - 1))


def entropy_dispersion(logits: Tensor) -> Tensor:
    r"""Negative-entropy dispersion :math:`1 - H(p) / \log n \in [0, 1]`, shape ``[N]``."""
    n = _num_classes(logits)
    logp = row_log_softmax(logits)
    entropy = -(logp.exp() * logp).sum(dim=-1)
    return 1.0 - entropy / math.log(n)


def dispersion(logits: Tensor, kind: str = "variance") -> Tensor:
    """The dispersion features ``[N, 1]`` (``"variance"``/``"entropy"``) or ``[N, 2]`` (``"both"``)."""
    _check_choice("dispersion", kind, DISPERSIONS, "dispersion()")
    if kind == "variance":
        return variance_dispersion(logits).unsqueeze(-1)
    if kind == "entropy":
        return entropy_dispersion(logits).unsqueeze(-1)
    return torch.stack([variance_dispersion(logits), entropy_dispersion(logits)], dim=-1)

# -- gate ------------------------------------------------------------------------------------


class ConfidenceGate(nn.Module):
    r"""The learnable confidence function :math:`C = \sigma(G(u))` of Mowst.

    :math:`G` is an MLP ``Linear -> act -> Dropout -> ... -> Linear(·, 1)`` on the gate input
    :math:`u` (the dispersion, optionally concatenated with the node features). ``forward``
    returns the gate *logit* :math:`G(u)` ``[N]``; :meth:`confidence` applies the sigmoid.
    The last layer starts at zero, so every node starts at :math:`C = 0.5`.

    Args:
        in_channels: size of :math:`u`.
        hidden_channels: hidden size of :math:`G`.
        num_layers: number of linear layers (``1``: a logistic regression on :math:`u`).
        dropout: dropout after each hidden layer.
        act: activation of the hidden layers.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 64, num_layers: int = 2,
                 dropout: float = 0.0, act: str | Callable = "relu") -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ConfidenceGate expects {name} to be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ConfidenceGate expects dropout in [0, 1), got {dropout!r}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [1]
        self.lins = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.act = activation_resolver(act)
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.lins:
            lin.reset_parameters()
        nn.init.zeros_(self.lins[-1].weight)
        nn.init.zeros_(self.lins[-1].bias)

    def forward(self, u: Tensor) -> Tensor:
        """The gate logit :math:`G(u)`, shape ``[N]``."""
        if u.dim() != 2 or u.size(-1) != self.in_channels:
            raise ValueError(f"ConfidenceGate expects input of shape [num_nodes, "
                             f"{self.in_channels}], got {tuple(u.shape)}")
        for i, lin in enumerate(self.lins):
            u = lin(u)
            if i < len(self.lins) - 1:
                u = self.dropout(self.act(u))
        return u.squeeze(-1)

    def confidence(self, u: Tensor) -> Tensor:
        r""":math:`C = \sigma(G(u))`, shape ``[N]``."""
        return torch.sigmoid(self(u))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, hidden_channels="
                f"{self.hidden_channels}, num_layers={self.num_layers})")

# -- routing ---------------------------------------------------------------------------------


def route(confidence: Tensor, rule: str = "random", threshold: float = 0.5, num_draws: int = 1,
          generator: torch.Generator | None = None) -> Tensor | None:
    r"""Which nodes each draw sends to the weak expert: a bool ``[num_draws, N]`` mask.

    * ``"random"`` (the paper's rule): draw :math:`q \sim U(0, 1)` per node and draw, weak
      where :math:`q < C_v`;
    * ``"threshold"``: weak where :math:`C_v \ge` ``threshold`` (one draw);
    * ``"soft"``: no hard routing (``None``): the probability mixture is used.
    """
    _check_choice("rule", rule, RULES, "route()")
    if rule == "soft":
        return None
    if rule == "threshold":
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        return (confidence >= threshold).unsqueeze(0)
    if not isinstance(num_draws, int) or num_draws < 1:
        raise ValueError(f"num_draws must be a positive int, got {num_draws!r}")
    q = torch.rand((num_draws, confidence.numel()), generator=generator,
                   device="cpu" if generator is None else generator.device)
    return q.to(confidence.device) < confidence.unsqueeze(0)
