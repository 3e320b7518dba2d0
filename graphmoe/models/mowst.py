r"""Mowst: a mixture of a weak and a strong expert, routed by the weak expert's confidence.

Zeng et al., `"Mixture of Weak & Strong Experts on Graphs" <https://arxiv.org/abs/2311.05185>`_
(ICLR 2024). A weak expert (an MLP on the node features) and a strong expert (a GNN) are
combined per node by a confidence :math:`C_v \in [0, 1]` computed from the *dispersion* of the
weak expert's prediction:

.. math::
    p_v = \mathrm{softmax}(z^{\mathrm{weak}}_v), \qquad
    d_v = D(p_v), \qquad C_v = \sigma\big(G(d_v)\big)\ \text{or}\ \sigma\big(G([d_v, x_v])\big).

This module holds the model: the gate :math:`G` (dispersion functions in
:mod:`graphmoe.models.mowst_confidence`), the losses (:mod:`graphmoe.models.mowst_objective`), the
inference rules and conditional computation (in :mod:`graphmoe.models.mowst_conditional`).
The alternating / joint training schedules live in :mod:`graphmoe.training.mowst`.

**Mixing space.** Everything that mixes the two experts mixes *probabilities*, in training and
in evaluation alike: the Mowst* loss is the negative log-likelihood of the mixture
:math:`C_v p^{\mathrm{weak}}_v + (1 - C_v) p^{\mathrm{strong}}_v` (computed stably as a
``logsumexp`` of log-probabilities), the soft inference rule returns that same mixture, and
the hard rules pick one expert's probabilities per node. (The reference code trains Mowst* on
a mixture of *logits* and evaluates a mixture of probabilities; graphmoe does not.)
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from graphmoe.models.mowst_confidence import (
    DISPERSIONS,
    GATE_INPUTS,
    RULES,
    VARIANTS,
    ConfidenceGate,
    _check_choice,
    check_variant,
    dispersion,
    entropy_dispersion,
    route,
    variance_dispersion,
)
from graphmoe.models.mowst_objective import (
    _check_pair,
    mixture_log_probs,
    mowst_loss,
    mowst_star_loss,
    normalized_mowst_loss,
)
from graphmoe.ops.rowwise import row_softmax

__all__ = [
    "DISPERSIONS",
    "GATE_INPUTS",
    "RULES",
    "VARIANTS",
    "ConfidenceGate",
    "Mowst",
    "MowstOutput",
    "MowstPrediction",
    "check_variant",
    "dispersion",
    "entropy_dispersion",
    "mixture_log_probs",
    "mowst_loss",
    "mowst_star_loss",
    "normalized_mowst_loss",
    "receptive_field_hops",
    "route",
    "variance_dispersion",
]


# -- receptive field -------------------------------------------------------------------------


def _average_draws(weak_mask: Tensor, weak_probs: Tensor, strong_probs: Tensor) -> Tensor:
    """The routed experts' probabilities averaged over the draws ``weak_mask``
    ``[num_draws, N]``: ``weak_probs`` where a draw picks the weak expert, else
    ``strong_probs`` (whose rows no draw picks are not read)."""
    picked = torch.where(weak_mask.unsqueeze(-1), weak_probs, strong_probs)
    return picked[0] if picked.size(0) == 1 else picked.mean(dim=0)


def receptive_field_hops(model: nn.Module) -> int | None:
    r"""How many hops of the graph one output row of ``model`` depends on, or ``None``.

    A ``num_hops`` attribute wins; else DAGNN-style models (``K`` propagation steps and a
    ``propagate`` method) give ``K``; stacked backbones that use the graph give ``num_layers``
    (one hop per message-passing layer), graph-free ones (``uses_graph = False``, the MLP) 0.
    """
    hops = getattr(model, "num_hops", None)
    if isinstance(hops, int):
        return hops
    if not getattr(model, "uses_graph", True):
        return 0
    k = getattr(model, "K", None)
    if isinstance(k, int) and hasattr(model, "propagate"):
        return k
    layers = getattr(model, "num_layers", None)
    if isinstance(layers, int) and hasattr(model, "convs"):
        return layers
    return None


# -- the model -------------------------------------------------------------------------------


class MowstOutput(NamedTuple):
    """What :meth:`Mowst.forward` computes for every node."""

    weak: Tensor
    """Logits of the weak expert ``[N, C]``."""
    strong: Tensor
    """Logits of the strong expert ``[N, C]``."""
    gate_logit: Tensor
    r"""Gate logit :math:`G(u)` ``[N]``; the confidence is its sigmoid."""
    dispersion: Tensor
    """Dispersion features of the weak prediction ``[N, 1 or 2]``."""

    @property
    def confidence(self) -> Tensor:
        r""":math:`C = \sigma(G(u))` ``[N]``."""
        return torch.sigmoid(self.gate_logit)


class MowstPrediction(NamedTuple):
    """What :meth:`Mowst.predict` returns."""

    probs: Tensor
    """Predicted class probabilities ``[N, C]`` (the random rule: averaged over the draws)."""
    weak_mask: Tensor | None
    """Bool ``[num_draws, N]``: the nodes each draw sent to the weak expert (``None`` for soft)."""
    confidence: Tensor
    """:math:`C` ``[N]``."""
    weak_probs: Tensor
    """Weak expert's probabilities ``[N, C]``."""
    strong_probs: Tensor
    """Strong expert's probabilities ``[N, C]``; NaN on rows that conditional inference skipped."""
    stats: dict[str, float]
    """``fraction_weak`` (mean over draws), and with ``conditional=True`` the fractions of
    nodes and edges the strong expert touched (``node_fraction``, ``edge_fraction``)."""

    def draw_probs(self) -> Tensor:
        """Per-draw probabilities ``[num_draws, N, C]`` (the soft mixture as one draw)."""
        if self.weak_mask is None:
            return self.probs.unsqueeze(0)
        mask = self.weak_mask.unsqueeze(-1)
        strong = self.strong_probs.nan_to_num(0.0)
        return torch.where(mask, self.weak_probs.unsqueeze(0), strong.unsqueeze(0))


class Mowst(nn.Module):
    r"""Mixture of weak and strong experts (Zeng et al., ICLR 2024), the model.

    Per node :math:`v`, with :math:`p^{w}_v = \mathrm{softmax}(z^{w}_v)` from the weak expert and
    :math:`z^{s}_v` from the strong expert,

    .. math::
        d_v = D(p^{w}_v), \qquad C_v = \sigma(G(u_v)), \quad
        u_v = d_v \ \text{or}\ [d_v, x_v],

    with :math:`D` the variance dispersion :math:`\mathrm{var}(p)/\mathrm{var}(e_1)`, the
    negative-entropy dispersion :math:`1 - H(p)/\log n` (:func:`variance_dispersion`,
    :func:`entropy_dispersion`), or both. Two ways to learn it (see
    :mod:`graphmoe.training.mowst` for the schedules):

    * **Mowst**: :math:`\frac{1}{|S|}\sum_{v \in S} C_v \mathrm{CE}(z^{w}_v, y_v) +
      (1 - C_v)\mathrm{CE}(z^{s}_v, y_v)` (:meth:`loss` with ``variant="mowst"``);
    * **Mowst***: the log-likelihood of the probability mixture
      :math:`C_v p^{w}_v + (1 - C_v) p^{s}_v` (``variant="mowst_star"``).

    Inference (:meth:`predict`): the paper's randomized rule (weak where :math:`q < C_v`,
    :math:`q \sim U(0,1)`, over ``num_draws`` draws), a threshold rule, or the soft mixture.
    With a hard rule and ``conditional=True`` the strong expert runs only on the
    ``num_hops``-hop receptive field of the nodes routed to it (the predictions equal those of
    running it on the whole graph; see :mod:`graphmoe.models.mowst_conditional`).

    Args:
        weak: the weak expert, ``forward(x, edge_index, edge_weight)`` -> logits (usually an
            :class:`~graphmoe.models.MLP`, which ignores the graph).
        strong: the strong expert, any GNN backbone with the same output size.
        dispersion: ``"variance"``, ``"entropy"`` or ``"both"``.
        gate_input: ``"dispersion"`` or ``"dispersion+x"`` (the dispersion concatenated with
            the node features).
        gate_hidden: hidden size of the gate MLP :math:`G`.
        gate_layers: number of linear layers of :math:`G`.
        gate_dropout: dropout inside :math:`G`.
        detach_dispersion: stop the gradient of the gate from reaching the weak expert through
            :math:`d_v` (as in the reference code; ``False`` lets the weak expert learn its own
            confidence).
        in_channels: number of node features; needed with ``gate_input="dispersion+x"`` when
            ``weak`` has no ``in_channels`` attribute.
        num_hops: receptive field of the strong expert in hops, for conditional inference;
            default :func:`receptive_field_hops` of ``strong``.
    """

    def __init__(
        self,
        weak: nn.Module,
        strong: nn.Module,
        dispersion: str = "variance",
        gate_input: str = "dispersion",
        gate_hidden: int = 64,
        gate_layers: int = 2,
        gate_dropout: float = 0.0,
        detach_dispersion: bool = True,
        in_channels: int | None = None,
        num_hops: int | None = None,
    ) -> None:
        super().__init__()
        for name, module in (("weak", weak), ("strong", strong)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"Mowst expects {name} to be a torch.nn.Module, "
                                f"got {type(module).__name__}")
        out_w, out_s = getattr(weak, "out_channels", None), getattr(strong, "out_channels", None)
        if isinstance(out_w, int) and isinstance(out_s, int) and out_w != out_s:
            raise ValueError(
                f"Mowst expects the weak and strong experts to have the same number of outputs "
                f"(classes), got weak.out_channels={out_w} and strong.out_channels={out_s}"
            )
        self.dispersion_kind = _check_choice("dispersion", dispersion, DISPERSIONS, "Mowst")
        self.gate_input = _check_choice("gate_input", gate_input, GATE_INPUTS, "Mowst")
        if in_channels is None:
            in_channels = getattr(weak, "in_channels", None)
        if gate_input == "dispersion+x" and not isinstance(in_channels, int):
            raise ValueError("Mowst with gate_input='dispersion+x' needs in_channels (the number "
                             "of node features); the weak expert has no in_channels attribute")
        if num_hops is not None and (not isinstance(num_hops, int) or num_hops < 0):
            raise ValueError(f"Mowst expects num_hops to be a non-negative int, got {num_hops!r}")
        self.weak = weak
        self.strong = strong
        self.in_channels = in_channels
        self.out_channels = out_w if isinstance(out_w, int) else out_s
        self.detach_dispersion = detach_dispersion
        self.num_hops = num_hops if num_hops is not None else receptive_field_hops(strong)
        num_disp = 2 if dispersion == "both" else 1
        gate_in = num_disp + (in_channels if gate_input == "dispersion+x" else 0)
        self.gate = ConfidenceGate(gate_in, gate_hidden, gate_layers, gate_dropout)

    def reset_parameters(self) -> None:
        for module in (self.weak, self.strong, self.gate):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    # -- pieces ----------------------------------------------------------------------------

    @staticmethod
    def check_features(x: Tensor | None, name: str = "x") -> None:
        """Mowst needs node features: the weak expert and the confidence come from them."""
        if x is None:
            raise ValueError(f"Mowst needs node features: {name} is None (the weak expert and "
                             f"its confidence are computed from them)")
        if not isinstance(x, Tensor):
            raise TypeError(f"Mowst expects {name} to be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.size(-1) == 0:
            raise ValueError(f"Mowst needs node features {name} of shape [num_nodes, "
                             f"num_features >= 1], got {tuple(x.shape)}")

    def gate_features(self, weak_logits: Tensor, x: Tensor) -> Tensor:
        """The gate input :math:`u`: the dispersion ``[N, 1|2]``, optionally with ``x``."""
        d = dispersion(weak_logits.detach() if self.detach_dispersion else weak_logits,
                       self.dispersion_kind)
        if self.gate_input == "dispersion+x":
            dense = x if x.layout == torch.strided else x.to_dense()  # CSR features
            return torch.cat([d, dense.to(d.dtype)], dim=-1)
        return d

    def gate_logit(self, weak_logits: Tensor, x: Tensor) -> Tensor:
        """:math:`G(u)` ``[N]`` from the weak expert's logits (and ``x``)."""
        return self.gate(self.gate_features(weak_logits, x))

    def confidence(self, weak_logits: Tensor, x: Tensor) -> Tensor:
        r""":math:`C = \sigma(G(u))` ``[N]`` from the weak expert's logits (and ``x``)."""
        return torch.sigmoid(self.gate_logit(weak_logits, x))

    def run_weak(self, x: Tensor, edge_index: Tensor | None = None,
                 edge_weight: Tensor | None = None) -> Tensor:
        self.check_features(x)
        return self.weak(x, edge_index, edge_weight)

    def run_strong(self, x: Tensor, edge_index: Tensor,
                   edge_weight: Tensor | None = None) -> Tensor:
        self.check_features(x)
        return self.strong(x, edge_index, edge_weight)

    # -- forward, loss ---------------------------------------------------------------------

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None,
                weak_logits: Tensor | None = None,
                strong_logits: Tensor | None = None) -> MowstOutput:
        """Both experts and the gate on every node.

        ``weak_logits`` / ``strong_logits`` may be given to reuse an expert's outputs (a frozen
        expert's outputs do not change during the other expert's turn).
        """
        self.check_features(x)
        if weak_logits is None:
            weak_logits = self.weak(x, edge_index, edge_weight)
        if strong_logits is None:
            strong_logits = self.strong(x, edge_index, edge_weight)
        _check_pair(weak_logits, strong_logits)
        u = self.gate_features(weak_logits, x)
        num_disp = 2 if self.dispersion_kind == "both" else 1
        return MowstOutput(weak_logits, strong_logits, self.gate(u), u[:, :num_disp])

    @staticmethod
    def loss(out: MowstOutput, y: Tensor, variant: str = "mowst",
             reduction: str = "mean") -> Tensor:
        """The Mowst (``"mowst"``) or Mowst* (``"mowst_star"``) loss of ``out`` against ``y``."""
        variant = check_variant(variant)
        if variant == "mowst":
            return mowst_loss(out.weak, out.strong, out.confidence, y, reduction)
        return mowst_star_loss(out.weak, out.strong, out.gate_logit, y, reduction)

    # -- inference -------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        *,
        rule: str = "random",
        threshold: float = 0.5,
        num_draws: int = 1,
        generator: torch.Generator | None = None,
        conditional: bool = False,
        max_fraction: float = 0.9,
    ) -> MowstPrediction:
        """Predictions under an inference rule (see :func:`route`).

        With ``conditional=True`` (hard rules only, eval mode) the strong expert runs only on
        the receptive field of the nodes some draw routes to it (on the whole graph when that
        field holds ``max_fraction`` of the nodes or more); the rows of ``strong_probs`` it did
        not need are NaN. The predictions equal those with ``conditional=False``.
        """
        _check_choice("rule", rule, RULES, "Mowst.predict")
        self.check_features(x)
        weak_logits = self.weak(x, edge_index, edge_weight)
        gate_logit = self.gate_logit(weak_logits, x)
        if not conditional:
            strong_logits = self.strong(x, edge_index, edge_weight)
            return self.combine(weak_logits, strong_logits, gate_logit, rule=rule,
                                threshold=threshold, num_draws=num_draws, generator=generator)
        if rule == "soft":
            raise ValueError("conditional inference needs a hard rule ('random' or "
                             "'threshold'); rule='soft' uses the strong expert everywhere")
        from graphmoe.models.mowst_conditional import strong_on_nodes

        conf = torch.sigmoid(gate_logit)
        weak_mask = route(conf, rule, threshold, num_draws, generator)
        need = ~weak_mask.all(dim=0)
        rows, stats = strong_on_nodes(self.strong, x, edge_index, edge_weight, need,
                                      self.num_hops, max_fraction)
        weak_probs = row_softmax(weak_logits)
        strong_probs = weak_probs.new_full(weak_probs.shape, float("nan"))
        if rows.numel():
            _check_pair(weak_logits[:1], rows[:1])
            strong_probs[need] = row_softmax(rows).to(strong_probs.dtype)
        probs = _average_draws(weak_mask, weak_probs, strong_probs)  # NaN rows never picked
        stats["fraction_weak"] = float(weak_mask.float().mean())
        return MowstPrediction(probs, weak_mask, conf, weak_probs, strong_probs, stats)

    @staticmethod
    def combine(weak_logits: Tensor, strong_logits: Tensor, gate_logit: Tensor, *,
                rule: str = "random", threshold: float = 0.5, num_draws: int = 1,
                generator: torch.Generator | None = None,
                weak_mask: Tensor | None = None) -> MowstPrediction:
        """Predictions from both experts' logits and the gate logit under an inference rule
        (or under given routing draws ``weak_mask`` ``[num_draws, N]``)."""
        _check_pair(weak_logits, strong_logits)
        conf = torch.sigmoid(gate_logit)
        if weak_mask is None:
            weak_mask = route(conf, rule, threshold, num_draws, generator)
        weak_probs, strong_probs = row_softmax(weak_logits), row_softmax(strong_logits)
        if weak_mask is None:
            probs = mixture_log_probs(weak_logits, strong_logits, gate_logit).exp()
            fraction = float(conf.mean())
        else:
            probs = _average_draws(weak_mask, weak_probs, strong_probs)
            fraction = float(weak_mask.float().mean())
        return MowstPrediction(probs, weak_mask, conf, weak_probs, strong_probs,
                               {"fraction_weak": fraction})

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(weak={self.weak}, strong={self.strong}, "
                f"dispersion={self.dispersion_kind!r}, gate_input={self.gate_input!r})")
