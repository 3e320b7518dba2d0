"""Evaluation metrics for the task modules, as :mod:`torchmetrics` objects.

A metric *spec* is a short string chosen per dataset (``data.metric``) or per config:

* ``"acc"``: accuracy of the arg-max class;
* ``"rocauc"``: area under the ROC curve. With two classes the score is the softmax probability
  of class 1 (the usual binary ROC-AUC of Platonov et al.'s minesweeper / tolokers); with more
  classes it is the macro one-vs-rest AUROC; with a 2-D multi-label target, the macro AUROC over
  labels of the sigmoid scores;
* ``"ogb:<dataset>"``: the official ``ogb`` ``Evaluator`` of that dataset (``ogb:ogbn-arxiv``).

Every metric built here takes raw logits and integer (or multi-label) targets in ``update``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MultilabelAUROC,
)

METRICS = ("acc", "rocauc")
OGB_PREFIX = "ogb:"

__all__ = ["METRICS", "LogitMetric", "OGBMetric", "build_metric", "metric_key"]


def _ogb_evaluator(name: str):
    """The ``ogb`` Evaluator for ``name`` (``ogbn-*``, ``ogbl-*`` or ``ogbg-*``)."""
    if name.startswith("ogbn-"):
        from ogb.nodeproppred import Evaluator
    elif name.startswith("ogbl-"):
        from ogb.linkproppred import Evaluator
    elif name.startswith("ogbg-"):
        from ogb.graphproppred import Evaluator
    else:
        raise ValueError(
            f"metric 'ogb:{name}' expects an OGB dataset name starting with ogbn-, ogbl- or ogbg-"
        )
    try:
        return Evaluator(name)
    except ValueError:  # ogb's own message lists every dataset over many lines
        raise ValueError(f"metric 'ogb:{name}': ogb has no evaluator for dataset {name!r}") from None


def metric_key(metric: str) -> str:
    """The name a metric spec is logged under (``val/<key>``): ``acc``, ``rocauc``, ..."""
    if metric.startswith(OGB_PREFIX):
        return str(_ogb_evaluator(metric[len(OGB_PREFIX):]).eval_metric)
    if metric not in METRICS:
        raise ValueError(
            f"metric must be one of {list(METRICS)} or 'ogb:<dataset>', got {metric!r}"
        )
    return metric


class LogitMetric(Metric):
    """Feeds ``(logits, target)`` to a wrapped torchmetrics metric after a transform.

    The transform turns logits into what the inner metric expects (probabilities of class 1 for
    binary AUROC, sigmoid scores for multi-label targets, ...).
    """

    full_state_update = False

    def __init__(self, inner: Metric, transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]):
        super().__init__()
        self.inner = inner
        self.transform = transform

    def update(self, logits: Tensor, target: Tensor) -> None:
        self.inner.update(*self.transform(logits, target))

    def compute(self) -> Tensor:
        return self.inner.compute()

    def reset(self) -> None:
        super().reset()
        self.inner.reset()


class OGBMetric(Metric):
    """The official OGB evaluator as a torchmetrics ``Metric`` (node / graph property prediction).

    Predictions and targets are gathered over the epoch (and across processes), then
    ``Evaluator.eval`` computes ``eval_metric`` (``acc`` from the arg-max, ``rocauc`` from the
    scores) exactly as the OGB leaderboards do.
    """

    full_state_update = False

    def __init__(self, name: str):
        super().__init__()
        self.evaluator = _ogb_evaluator(name)
        self.key = str(self.evaluator.eval_metric)
        if self.key not in ("acc", "rocauc"):
            raise ValueError(
                f"metric 'ogb:{name}' uses {self.key!r}, which only the ranking tasks support"
            )
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, target: Tensor) -> None:
        if self.key == "acc":
            pred = logits.argmax(dim=-1, keepdim=True)
        else:
            pred = logits.softmax(-1)[:, 1:] if target.dim() == 1 else logits
        self.preds.append(pred.detach())
        self.target.append(target.view(target.size(0), -1).detach())

    def compute(self) -> Tensor:
        preds = torch.cat(self.preds) if isinstance(self.preds, list) else self.preds
        target = torch.cat(self.target) if isinstance(self.target, list) else self.target
        value = self.evaluator.eval({"y_true": target.cpu(), "y_pred": preds.float().cpu()})
        return torch.tensor(float(value[self.key]))


def _identity(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    return logits, target


def _prob_of_one(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    return logits.softmax(-1)[:, 1], target


def _sigmoid_int(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    return logits.sigmoid(), target.long()


def build_metric(metric: str, num_classes: int, multilabel: bool = False) -> Metric:
    """A fresh metric for the spec ``metric`` over ``num_classes`` outputs.

    Args:
        metric: ``"acc"``, ``"rocauc"`` or ``"ogb:<dataset>"``.
        num_classes: the model's number of outputs (classes, or labels when ``multilabel``).
        multilabel: targets are ``[N, num_classes]`` 0/1 matrices (``ogbn-proteins`` style).
    """
    if metric.startswith(OGB_PREFIX):
        return OGBMetric(metric[len(OGB_PREFIX):])
    metric_key(metric)  # validates
    if num_classes < 2:
        raise ValueError(f"{metric!r} needs out_channels >= 2 (one logit per class), got {num_classes}")
    if metric == "acc":
        if multilabel:
            raise ValueError("metric 'acc' is for single-label targets; use 'rocauc' for multi-label")
        return LogitMetric(MulticlassAccuracy(num_classes, average="micro"), _identity)
    if multilabel:
        return LogitMetric(MultilabelAUROC(num_classes), _sigmoid_int)
    if num_classes == 2:
        return LogitMetric(BinaryAUROC(), _prob_of_one)
    return LogitMetric(MulticlassAUROC(num_classes), _identity)
