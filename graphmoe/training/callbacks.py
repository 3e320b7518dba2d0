"""Lightning callbacks that follow the task module's validation metric.

The monitored quantity depends on the dataset (``val/acc`` on Cora, ``val/rocauc`` on
minesweeper), so a config cannot hard-code it. With ``monitor="auto"`` these callbacks read
``pl_module.monitor`` (``"val/<metric>"``) when the run starts. With ``mode="auto"`` (the
default) the direction follows the monitored name: ``"min"`` for errors and losses
(:data:`LOWER_IS_BETTER`: ``val/rmse``, ``val/loss``), ``"max"`` for scores (``acc``,
``rocauc``, ``mrr``). An explicit ``monitor`` or ``mode`` is used as given.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

AUTO = "auto"
#: Metric names (the part after ``val/``) for which smaller is better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "loss"})

__all__ = ["AUTO", "LOWER_IS_BETTER", "BestCheckpoint", "MetricEarlyStopping", "resolve_mode",
           "resolve_monitor"]


def resolve_monitor(monitor: str | None, pl_module: pl.LightningModule) -> str | None:
    """``pl_module.monitor`` when ``monitor == "auto"``, else ``monitor`` unchanged."""
    if monitor != AUTO:
        return monitor
    resolved = getattr(pl_module, "monitor", None)
    if not isinstance(resolved, str):
        raise ValueError(
            f"monitor='auto' needs the LightningModule to define a `monitor` string such as "
            f"'val/acc'; {type(pl_module).__name__} has none, so set the monitor explicitly"
        )
    return resolved


def resolve_mode(mode: str, monitor: str | None) -> str:
    """``mode`` unless it is ``"auto"``: then ``"min"`` for :data:`LOWER_IS_BETTER` names."""
    if mode != AUTO:
        return mode
    name = (monitor or "").rsplit("/", 1)[-1].removesuffix("_epoch")
    return "min" if name in LOWER_IS_BETTER or name.endswith("loss") else "max"


class BestCheckpoint(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` keeping the best epoch by the task metric.

    Args:
        monitor: quantity to track; ``"auto"`` (default) uses ``pl_module.monitor``.
        mode: ``"auto"`` (default: from the monitored name, :func:`resolve_mode`), ``"max"``
            or ``"min"``.
        save_last: also write ``last.ckpt`` every epoch so that ``--ckpt_path last`` resumes.
        **kwargs: the other :class:`ModelCheckpoint` arguments.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = None,
        monitor: str | None = AUTO,
        mode: str = AUTO,
        save_top_k: int = 1,
        save_last: bool | None = True,
        save_weights_only: bool = False,
        every_n_epochs: int | None = None,
        every_n_train_steps: int | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode="max" if mode == AUTO else mode,
            save_top_k=save_top_k,
            save_last=save_last,
            save_weights_only=save_weights_only,
            every_n_epochs=every_n_epochs,
            every_n_train_steps=every_n_train_steps,
            verbose=verbose,
        )
        self.requested_mode = mode

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.monitor = resolve_monitor(self.monitor, pl_module)
        self.mode = resolve_mode(self.requested_mode, self.monitor)
        self.kth_value = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        super().setup(trainer, pl_module, stage)


class MetricEarlyStopping(EarlyStopping):
    """:class:`~lightning.pytorch.callbacks.EarlyStopping` on the task metric by default.

    Add it from a config::

        trainer:
          callbacks:
            - class_path: graphmoe.training.MetricEarlyStopping
              init_args: {patience: 100}
    """

    def __init__(
        self,
        monitor: str = AUTO,
        patience: int = 100,
        mode: str = AUTO,
        min_delta: float = 0.0,
        verbose: bool = False,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            monitor=monitor,
            patience=patience,
            mode="max" if mode == AUTO else mode,
            min_delta=min_delta,
            verbose=verbose,
            check_finite=check_finite,
        )
        self.requested_mode = mode

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.monitor = resolve_monitor(self.monitor, pl_module)
        self.mode = resolve_mode(self.requested_mode, self.monitor)
        self.min_delta = abs(self.min_delta) * (1 if self.mode == "max" else -1)
        self.best_score = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        super().setup(trainer, pl_module, stage)
