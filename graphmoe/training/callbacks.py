"""Lightning callbacks that follow the task module's validation metric.

The monitored quantity depends on the dataset (``val/acc`` on Cora, ``val/rocauc`` on
minesweeper), so a config cannot hard-code it. With ``monitor="auto"`` these callbacks read
``pl_module.monitor`` (``"val/<metric>"``) when the run starts; ``mode`` defaults to ``"max"``
because every node/graph metric here is higher-is-better. An explicit ``monitor`` (``val/loss``
with ``mode: min``) is used as given.
"""
from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

AUTO = "auto"

__all__ = ["AUTO", "BestCheckpoint", "MetricEarlyStopping", "resolve_monitor"]


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


class BestCheckpoint(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` keeping the best epoch by the task metric.

    Args:
        monitor: quantity to track; ``"auto"`` (default) uses ``pl_module.monitor``.
        mode: ``"max"`` (default) or ``"min"``.
        save_last: also write ``last.ckpt`` every epoch so that ``--ckpt_path last`` resumes.
        **kwargs: the other :class:`ModelCheckpoint` arguments.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = None,
        monitor: str | None = AUTO,
        mode: str = "max",
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
            mode=mode,
            save_top_k=save_top_k,
            save_last=save_last,
            save_weights_only=save_weights_only,
            every_n_epochs=every_n_epochs,
            every_n_train_steps=every_n_train_steps,
            verbose=verbose,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.monitor = resolve_monitor(self.monitor, pl_module)
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
        mode: str = "max",
        min_delta: float = 0.0,
        verbose: bool = False,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            monitor=monitor,
            patience=patience,
            mode=mode,
            min_delta=min_delta,
            verbose=verbose,
            check_finite=check_finite,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.monitor = resolve_monitor(self.monitor, pl_module)
        super().setup(trainer, pl_module, stage)
