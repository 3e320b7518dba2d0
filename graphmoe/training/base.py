"""What every graphmoe task module shares: the optimizer, the monitored metric, auxiliary losses.

Task modules (node classification today; link prediction, graph classification, KG completion
later) subclass :class:`TaskModule`, set :attr:`TaskModule.metric_key` and log
``"{stage}/loss"`` and ``"{stage}/{metric_key}"``. The CLI, the checkpoint callback and
``results.json`` rely on nothing else.
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

STAGES = ("train", "val", "test")

__all__ = ["STAGES", "TaskModule", "model_aux_loss", "split_output"]


def model_aux_loss(model: nn.Module) -> Tensor | None:
    """The auxiliary loss a model exposes after its last forward, or ``None``.

    A model may expose its balancing / sparsity losses as ``model.aux_loss``: a tensor, or a
    method returning one (``None`` when there is nothing to add).
    """
    aux = getattr(model, "aux_loss", None)
    if callable(aux):
        aux = aux()
    if aux is None:
        return None
    if not isinstance(aux, Tensor):
        raise TypeError(f"{type(model).__name__}.aux_loss must be a Tensor or None, got {type(aux).__name__}")
    return aux


def split_output(output: Any, model: nn.Module) -> tuple[Tensor, Tensor | None]:
    """``(prediction, auxiliary loss or None)`` from a model's forward output.

    Models return either the prediction alone (then ``model.aux_loss`` is consulted) or a pair
    ``(prediction, aux)`` where ``aux`` is a 0-dim loss tensor or an object with a ``loss``
    tensor (such as :class:`graphmoe.moe.MoEAux`).
    """
    if isinstance(output, tuple) and len(output) == 2:
        prediction, extra = output
        aux = extra if isinstance(extra, Tensor) else getattr(extra, "loss", None)
        return prediction, aux
    if isinstance(output, tuple):
        raise TypeError(f"{type(model).__name__} returned a tuple of {len(output)} items; "
                        f"expected the prediction or (prediction, aux)")
    return output, model_aux_loss(model)


class TaskModule(pl.LightningModule):
    """Base of the graphmoe LightningModules: Adam, the monitored metric, auxiliary losses.

    Subclasses call ``save_hyperparameters()`` with ``lr`` and ``weight_decay`` among their
    arguments and set ``self.metric_key`` (``"acc"``, ``"rocauc"``, ``"mrr"``, ...).
    """

    metric_key: str = "acc"

    @property
    def monitor(self) -> str:
        """The quantity model selection follows: ``"val/<metric_key>"`` (higher is better)."""
        self.resolve_metric()
        return f"val/{self.metric_key}"

    def resolve_metric(self) -> None:
        """Adopt the datamodule's metric when the module was built with ``metric=None``.

        A module built without a metric scores with the dataset's convention (``data.metric``:
        ROC-AUC on minesweeper, tolokers, Twitch-DE), as the CLI's link does, instead of silently
        scoring accuracy. Called by :attr:`monitor` (the callbacks read it after the datamodule's
        ``setup``) and by the subclasses' ``setup``; ``hparams.metric`` then holds the metric used,
        so checkpoints reload with it. Without a datamodule the module keeps ``"acc"``.
        """
        if self.hparams.get("metric", "") is not None:
            return
        trainer = self._trainer
        metric = getattr(getattr(trainer, "datamodule", None), "metric", None) if trainer else None
        if metric is None:
            return
        from graphmoe.training.metrics import metric_key

        self.hparams["metric"] = metric
        self.metric_key = metric_key(metric)
        self.on_metric_resolved()

    def on_metric_resolved(self) -> None:
        """Rebuild the metric objects after :meth:`resolve_metric` set ``hparams.metric``."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with the module's ``lr`` and (L2) ``weight_decay``."""
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )

    def add_aux_loss(self, loss: Tensor, aux: Tensor | None, batch_size: int) -> Tensor:
        """``loss + aux`` (logged as ``train/aux_loss``), or ``loss`` when there is none.

        Routing statistics of submodules that expose ``aux_metrics()`` (a ``{name: value}``
        dict, e.g. :meth:`graphmoe.models.GMoE.aux_metrics`: load per expert) are logged as
        ``train/<name>``.
        """
        for module in self.modules():
            metrics = getattr(module, "aux_metrics", None)
            if module is not self and callable(metrics):
                self.log_dict({f"train/{name}": value for name, value in metrics().items()},
                              on_step=False, on_epoch=True, batch_size=batch_size)
        if aux is None:
            return loss
        self.log("train/aux_loss", aux, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss + aux
