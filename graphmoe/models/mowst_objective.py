r"""The Mowst objectives (Zeng et al., ICLR 2024): the confidence-weighted loss of Mowst, its
per-expert normalised form, and the mixture likelihood of Mowst*, mixing probabilities (see
:mod:`graphmoe.models.mowst`, "Mixing space")."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graphmoe.ops.rowwise import row_log_softmax

__all__ = ["mixture_log_probs", "mowst_loss", "mowst_star_loss", "normalized_mowst_loss"]


def _check_pair(weak_logits: Tensor, strong_logits: Tensor) -> None:
    if weak_logits.shape != strong_logits.shape:
        raise ValueError(
            f"the weak and strong experts must give outputs of the same shape, got weak "
            f"{tuple(weak_logits.shape)} and strong {tuple(strong_logits.shape)}"
        )


def mowst_loss(weak_logits: Tensor, strong_logits: Tensor, confidence: Tensor, y: Tensor,
               reduction: str = "mean") -> Tensor:
    r"""The Mowst loss :math:`C_v \mathrm{CE}(z^{w}_v, y_v) + (1 - C_v) \mathrm{CE}(z^{s}_v, y_v)`.

    ``confidence`` is :math:`C` (``[N]``, in [0, 1]); ``reduction`` is ``"mean"``, ``"sum"`` or
    ``"none"`` (per node). The gradient w.r.t. :math:`C_v` is
    :math:`\mathrm{CE}^{w}_v - \mathrm{CE}^{s}_v`: the gate moves each node towards the expert
    with the lower loss *on the nodes it is fitted on*.
    """
    _check_pair(weak_logits, strong_logits)
    loss_w = F.cross_entropy(weak_logits, y, reduction="none")
    loss_s = F.cross_entropy(strong_logits, y, reduction="none")
    return _reduce(confidence * loss_w + (1.0 - confidence) * loss_s, reduction)


def normalized_mowst_loss(weak_logits: Tensor, strong_logits: Tensor, confidence: Tensor,
                          y: Tensor, eps: float = 1e-8) -> Tensor:
    r"""The Mowst loss with each expert's term normalised by its total weight:
    :math:`\frac{\sum_v C_v \mathrm{CE}^{w}_v}{\sum_v C_v} +
    \frac{\sum_v (1 - C_v) \mathrm{CE}^{s}_v}{\sum_v (1 - C_v)}`.

    For fitting the experts under *fixed* confidences (``confidence`` detached): each expert
    has the same minimiser as under :func:`mowst_loss`, but its loss stays on the scale of a
    mean cross-entropy however few nodes the gate gives it, so that its weight decay (tuned
    for a mean loss) does not take over when :math:`\sum_v C_v` is small.
    """
    _check_pair(weak_logits, strong_logits)
    loss_w = F.cross_entropy(weak_logits, y, reduction="none")
    loss_s = F.cross_entropy(strong_logits, y, reduction="none")
    c = confidence
    return ((c * loss_w).sum() / c.sum().clamp_min(eps)
            + ((1.0 - c) * loss_s).sum() / (1.0 - c).sum().clamp_min(eps))


def mixture_log_probs(weak_logits: Tensor, strong_logits: Tensor, gate_logit: Tensor) -> Tensor:
    r""":math:`\log\big(C p^{w} + (1 - C) p^{s}\big)` with :math:`C = \sigma(g)`, computed stably.

    ``gate_logit`` is :math:`g` (``[N]``); the result is ``[N, num_classes]`` log-probabilities
    (valid logits: their softmax is the mixture itself).
    """
    _check_pair(weak_logits, strong_logits)
    g = gate_logit.unsqueeze(-1)
    return torch.logaddexp(F.logsigmoid(g) + row_log_softmax(weak_logits),
                           F.logsigmoid(-g) + row_log_softmax(strong_logits))


def mowst_star_loss(weak_logits: Tensor, strong_logits: Tensor, gate_logit: Tensor, y: Tensor,
                    reduction: str = "mean") -> Tensor:
    r"""The Mowst* loss: negative log-likelihood of the probability mixture (see
    :func:`mixture_log_probs`)."""
    logp = mixture_log_probs(weak_logits, strong_logits, gate_logit)
    return F.nll_loss(logp, y, reduction=reduction)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
