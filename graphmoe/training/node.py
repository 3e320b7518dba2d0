"""Node classification as a LightningModule."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.training.base import TaskModule, split_output
from graphmoe.training.metrics import build_metric, metric_key

__all__ = ["NodeClassifier"]


def _is_sampled(batch: Data) -> bool:
    """Whether ``batch`` is a sampled mini-batch (PyG ``NodeLoader``: seeds come first)."""
    return isinstance(getattr(batch, "batch_size", None), int)


class NodeClassifier(TaskModule):
    r"""Node classification with any backbone of :func:`graphmoe.models.build_model`.

    Minimises the cross-entropy :math:`-\sum_{v \in S} \log \mathrm{softmax}(f(X, A)_v)_{y_v}`
    over the labelled nodes :math:`S` of the stage (binary cross-entropy for multi-label
    targets), and logs ``{stage}/loss`` and ``{stage}/{metric}`` (``val/acc``, ``test/rocauc``).

    Batches are either the full graph (a :class:`~torch_geometric.data.Data` with
    ``train_mask``/``val_mask``/``test_mask``) or sampled mini-batches from a PyG ``NodeLoader``,
    whose first ``batch.batch_size`` nodes are the seed nodes to score.

    Args:
        backbone: registry name for :func:`graphmoe.models.build_model` (``gcn``, ``sage``,
            ``mlp``, ``gat``, ``gin``, ``dagnn``, ...).
        hidden_channels: hidden size of the backbone.
        num_layers: number of layers of the backbone.
        dropout: dropout probability of the backbone.
        backbone_kwargs: extra keyword arguments for the backbone (``norm``, ``residual``,
            ``heads``, ``K``, ...).
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        in_channels: number of node features; ``-1`` takes it from the datamodule at setup
            (the CLI links it from ``data.num_features``).
        out_channels: number of classes; ``-1`` takes it from the datamodule at setup.
        metric: ``"acc"``, ``"rocauc"`` or ``"ogb:<dataset>"`` (see :mod:`graphmoe.training.metrics`);
            ``None`` (default) takes the datamodule's (the dataset's convention; ``"acc"``
            without a datamodule).
    """

    def __init__(
        self,
        backbone: str = "gcn",
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.5,
        backbone_kwargs: dict[str, Any] | None = None,
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        in_channels: int = -1,
        out_channels: int = -1,
        metric: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.metric_key = metric_key(metric or "acc")
        self.model: torch.nn.Module | None = None
        if in_channels > 0 and out_channels > 0:
            self._build(in_channels, out_channels)

    # -- construction -------------------------------------------------------------------------

    def _build(self, in_channels: int, out_channels: int, multilabel: bool = False) -> None:
        from graphmoe.models import build_model

        hp = self.hparams
        self.hparams.update(in_channels=in_channels, out_channels=out_channels)
        self.model = build_model(
            hp.backbone,
            in_channels=in_channels,
            hidden_channels=hp.hidden_channels,
            num_layers=hp.num_layers,
            out_channels=out_channels,
            dropout=hp.dropout,
            **(hp.backbone_kwargs or {}),
        )
        self._build_metrics(multilabel)

    def _build_metrics(self, multilabel: bool) -> None:
        hp = self.hparams
        self.multilabel = multilabel
        metric = hp.metric or "acc"
        self.train_metric = build_metric(metric, hp.out_channels, multilabel)
        self.val_metric = build_metric(metric, hp.out_channels, multilabel)
        self.test_metric = build_metric(metric, hp.out_channels, multilabel)

    def on_metric_resolved(self) -> None:
        if self.model is not None:
            self._build_metrics(self.multilabel)

    def setup(self, stage: str) -> None:
        """Build the backbone from the datamodule's sizes if they were not given; check them."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is None or not hasattr(datamodule, "num_features"):
            return
        self.resolve_metric()
        multilabel = bool(getattr(datamodule, "multilabel", False))
        if self.model is None:
            self._build(datamodule.num_features, datamodule.num_classes, multilabel)
        elif multilabel != self.multilabel:
            self._build_metrics(multilabel)
        self._check_sizes(datamodule.num_features, datamodule.num_classes)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, in one sentence, a checkpoint trained for other feature or class counts."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("in_channels", "out_channels"):
            if key in saved and self.model is not None and saved[key] != self.hparams[key]:
                raise ValueError(
                    f"the checkpoint was trained with {key}={saved[key]} but this model has "
                    f"{key}={self.hparams[key]} (from the data): evaluate it on the dataset "
                    f"it was trained on (data.name and data.dataset_options of its config)"
                )

    def _check_sizes(self, num_features: int, num_classes: int) -> None:
        hp = self.hparams
        if hp.in_channels != num_features:
            raise ValueError(
                f"NodeClassifier has in_channels={hp.in_channels} but the dataset has "
                f"{num_features} node features; set model.in_channels={num_features} "
                f"(or leave it out so that it is taken from the data)"
            )
        if hp.out_channels != num_classes:
            raise ValueError(
                f"NodeClassifier has out_channels={hp.out_channels} but the dataset has "
                f"{num_classes} classes; set model.out_channels={num_classes} "
                f"(or leave it out so that it is taken from the data)"
            )

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Logits ``[num_nodes, out_channels]`` of the backbone."""
        return self._run(x, edge_index, edge_weight)[0]

    def _run(self, x: Tensor, edge_index: Tensor,
             edge_weight: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits and the backbone's auxiliary loss (``None`` for plain backbones)."""
        if self.model is None:
            raise RuntimeError(
                "NodeClassifier has no backbone yet: pass in_channels and out_channels, or "
                "train it with a datamodule that exposes num_features and num_classes"
            )
        if x.size(-1) != self.hparams.in_channels:
            raise ValueError(
                f"NodeClassifier has in_channels={self.hparams.in_channels} but the batch has "
                f"{x.size(-1)} node features (x.shape={tuple(x.shape)})"
            )
        return split_output(self.model(x, edge_index, edge_weight), self.model)

    def _targets(self, batch: Data, stage: str) -> tuple[Tensor, Tensor, Tensor | None]:
        """Logits and labels of the labelled nodes ``stage`` scores in ``batch``, and the aux loss."""
        logits, aux = self._run(batch.x, batch.edge_index, batch.get("edge_weight"))
        if _is_sampled(batch):
            logits, y = logits[:batch.batch_size], batch.y[:batch.batch_size]
        else:
            mask = batch.get(f"{stage}_mask")
            if mask is None:
                raise ValueError(f"full-batch {stage} needs data.{stage}_mask (a bool [num_nodes] mask)")
            logits, y = logits[mask], batch.y[mask]
        if y.dim() == 1:  # y = -1 marks unlabelled nodes
            labelled = y >= 0
            logits, y = logits[labelled], y[labelled]
        return logits, y, aux

    @staticmethod
    def _loss(logits: Tensor, y: Tensor) -> Tensor:
        if y.dim() > 1 and y.size(-1) > 1:  # multi-label 0/1 targets
            return F.binary_cross_entropy_with_logits(logits, y.float())
        return F.cross_entropy(logits, y.view(-1))

    def _shared_step(self, batch: Data, stage: str) -> Tensor:
        logits, y, aux = self._targets(batch, stage)
        loss = self._loss(logits, y)
        metric = getattr(self, f"{stage}_metric")
        metric.update(logits.detach(), y.view(-1) if y.dim() > 1 and y.size(-1) == 1 else y)
        n = y.size(0)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}/{self.metric_key}", metric, on_step=False, on_epoch=True,
                 batch_size=n, prog_bar=stage != "test")
        return loss if stage != "train" else self.add_aux_loss(loss, aux, batch_size=n)

    # -- Lightning hooks ----------------------------------------------------------------------

    def training_step(self, batch: Data, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Data, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Data, batch_idx: int) -> dict[str, Tensor]:
        """``{"node_id": [n], "logits": [n, out_channels]}`` for every scored node of ``batch``."""
        logits = self(batch.x, batch.edge_index, batch.get("edge_weight"))
        if _is_sampled(batch):
            size = batch.batch_size
            node_id = batch.n_id[:size] if "n_id" in batch else torch.arange(size)
            return {"node_id": node_id, "logits": logits[:size]}
        return {"node_id": torch.arange(logits.size(0), device=logits.device), "logits": logits}
