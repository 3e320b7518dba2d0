r"""Cross-fitting the Mowst gate: fit the confidence on nodes the experts did not train on.

**The collapse.** Mowst's gate learns from :math:`\partial L / \partial C_v =
\mathrm{CE}^{w}_v - \mathrm{CE}^{s}_v`. Fitted on the training nodes, it compares the two
experts where both have seen the label. A GNN (often pretrained) drives its training loss to
near zero, so :math:`\mathrm{CE}^{w}_v > \mathrm{CE}^{s}_v` on almost every training node and
the gate learns :math:`C \to 0` (Mowst) or a nearly constant :math:`C` with a flat weak
expert (Mowst*): the mixture becomes the GNN. On unseen nodes the comparison is different:
that is what the gate must predict.

**Cross-fitting** (as in stacked generalisation, Wolpert 1992, and the cross-fitting of
double machine learning, Chernozhukov et al. 2018). Split the training nodes into :math:`K`
folds :math:`F_1..F_K`. Next to the weak and strong experts :math:`w, s`, keep :math:`K`
copies :math:`w_k, s_k` trained exactly like them (same loss, same turns, same weights
:math:`C`) but only on the training nodes outside :math:`F_k`. For a training node
:math:`v \in F_k`, :math:`\tilde z^{w}_v = w_k(X)_v` and :math:`\tilde z^{s}_v = s_k(X, A)_v`
are *out-of-fold* predictions: they behave like predictions on test nodes. Then

* the gate is fitted on out-of-fold quantities only: :math:`\tilde C_v = \sigma(G(D(\tilde
  p^{w}_v)))` and the Mowst (or Mowst*) loss of :math:`(\tilde z^{w}_v, \tilde z^{s}_v,
  \tilde C_v)` over all training nodes, with the experts' outputs held constant;
* the experts (and their copies) are fitted in-sample with the weights :math:`\tilde C_v`
  held constant: each expert is trained on the nodes the gate would give it *if they were
  unseen*.

At test time nothing changes: the published architecture (one weak expert, one strong
expert, one gate) is applied to test nodes, whose dispersions are out-of-sample, like those
the gate was fitted on. The copies exist only during training (they cost :math:`K` times the
training compute of the experts).
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["CrossFitExperts", "make_folds"]


def make_folds(train_mask: Tensor, num_folds: int, seed: int = 0) -> Tensor:
    """Fold index ``[N]`` (``long``): ``0..num_folds-1`` on training nodes, ``-1`` elsewhere.

    The training nodes are shuffled with ``seed`` and dealt out round-robin, so fold sizes
    differ by at most one.
    """
    if not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"cross-fitting needs num_folds >= 2, got {num_folds!r}")
    idx = train_mask.nonzero().view(-1)
    if idx.numel() < num_folds:
        raise ValueError(f"cross-fitting with num_folds={num_folds} needs at least {num_folds} "
                         f"training nodes, got {idx.numel()}")
    gen = torch.Generator().manual_seed(seed)
    perm = idx[torch.randperm(idx.numel(), generator=gen).to(idx.device)]
    fold = torch.full(train_mask.shape, -1, dtype=torch.long, device=train_mask.device)
    fold[perm] = torch.arange(perm.numel(), device=idx.device) % num_folds
    return fold


class CrossFitExperts(nn.Module):
    r""":math:`K` copies of a Mowst's weak and strong experts for cross-fitting the gate.

    Args:
        weak: the weak expert to copy (its current parameters).
        strong: the strong expert to copy.
        fold: fold index per node from :func:`make_folds` (``-1``: not a training node).
    """

    def __init__(self, weak: nn.Module, strong: nn.Module, fold: Tensor) -> None:
        super().__init__()
        self.num_folds = int(fold.max()) + 1
        if self.num_folds < 2:
            raise ValueError("CrossFitExperts needs a fold index with at least 2 folds")
        self.weak = nn.ModuleList([copy.deepcopy(weak) for _ in range(self.num_folds)])
        self.strong = nn.ModuleList([copy.deepcopy(strong) for _ in range(self.num_folds)])
        self.register_buffer("fold", fold.clone())

    def copies(self, which: str) -> nn.ModuleList:
        if which not in ("weak", "strong"):
            raise ValueError(f"which must be 'weak' or 'strong', got {which!r}")
        return self.weak if which == "weak" else self.strong

    def fit_mask(self, k: int, mask: Tensor) -> Tensor:
        """The nodes of ``mask`` that copy ``k`` may train on: those outside fold ``k``."""
        return mask & (self.fold != k)

    @torch.no_grad()
    def out_of_fold(self, which: str, run: Callable[[nn.Module], Tensor],
                    fold: Tensor | None = None) -> Tensor:
        """Out-of-fold logits, no gradient: row ``r`` from copy ``fold[r]`` in eval mode.

        ``run(copy)`` returns a copy's logits on some rows (default: every node, then
        ``fold`` defaults to :attr:`fold`; rows outside the training folds are 0).
        """
        fold = self.fold if fold is None else fold
        parts = []
        for model in self.copies(which):
            was_training = model.training
            model.eval()
            parts.append(run(model))
            model.train(was_training)
        out = torch.zeros_like(parts[0])
        for k, logits in enumerate(parts):
            rows = fold == k
            out[rows] = logits[rows]
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_folds={self.num_folds})"
