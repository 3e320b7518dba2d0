"""NodeClassifier / NodeDataModule: full-batch and sampled training, metrics, size checks."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Data

from graphmoe.data.synthetic import csbm
from graphmoe.training import (
    BestCheckpoint,
    NodeClassifier,
    NodeDataModule,
    build_metric,
    metric_key,
    stage_metrics,
)


def tiny_graph(num_classes: int = 3, seed: int = 0, **kwargs) -> Data:
    """A small, easy CSBM graph (homophilous, strong features)."""
    opts = dict(num_nodes=240, num_classes=num_classes, num_features=8, avg_degree=6.0,
                homophily=(0.9,), signal=2.0, seed=seed)
    opts.update(kwargs)
    data = csbm(**opts)
    data.name, data.num_classes, data.metric = "tiny", num_classes, "acc"
    return data


def quiet_trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def test_full_batch_fit_beats_chance(tmp_path):
    pl.seed_everything(0)
    data = tiny_graph()
    datamodule = NodeDataModule.from_data(data)
    module = NodeClassifier("gcn", hidden_channels=16, dropout=0.0)
    trainer = quiet_trainer(max_epochs=30)
    trainer.fit(module, datamodule=datamodule)
    (test,) = trainer.test(module, datamodule=datamodule, verbose=False)
    assert set(test) == {"test/loss", "test/acc"}
    assert test["test/acc"] > 0.6  # chance is 1/3
    # in/out sizes were taken from the datamodule and are saved for load_from_checkpoint
    assert module.hparams.in_channels == 8 and module.hparams.out_channels == 3
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = NodeClassifier.load_from_checkpoint(tmp_path / "model.ckpt").eval()
    module.eval()
    with torch.no_grad():
        assert torch.allclose(restored(data.x, data.edge_index), module(data.x, data.edge_index))


def test_sampled_batches_score_the_seed_nodes():
    pl.seed_everything(0)
    data = tiny_graph()
    datamodule = NodeDataModule.from_data(data, batch_size=32, num_neighbors=[4, 4])
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.batch_size == 32 and batch.num_nodes >= 32
    module = NodeClassifier("sage", hidden_channels=16, in_channels=8, out_channels=3)
    loss = module.training_step(batch, 0)
    assert loss.dim() == 0 and torch.isfinite(loss)

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(module, datamodule=datamodule)
    assert {"train/loss", "val/acc", "val/loss"} <= set(trainer.callback_metrics)
    outputs = trainer.predict(module, datamodule=datamodule)
    node_id = torch.cat([out["node_id"] for out in outputs])
    assert sorted(node_id.tolist()) == list(range(data.num_nodes))
    assert torch.cat([out["logits"] for out in outputs]).shape == (data.num_nodes, 3)


def test_wrong_in_channels_is_a_one_line_value_error():
    data = tiny_graph()
    module = NodeClassifier("gcn", hidden_channels=8, in_channels=5, out_channels=3)
    with pytest.raises(ValueError, match=r"in_channels=5 but the dataset has 8") as info:
        quiet_trainer(max_epochs=1).fit(module, datamodule=NodeDataModule.from_data(data))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="in_channels=5 but the batch has 8"):
        module(data.x, data.edge_index)


def test_rocauc_on_a_binary_graph_and_auto_monitor(tmp_path):
    pl.seed_everything(0)
    data = tiny_graph(num_classes=2)
    data.metric = "rocauc"
    datamodule = NodeDataModule.from_data(data)
    module = NodeClassifier("mlp", hidden_channels=16, metric=datamodule.metric)
    checkpoint = BestCheckpoint(dirpath=tmp_path)
    trainer = quiet_trainer(max_epochs=3, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(module, datamodule=datamodule)
    assert checkpoint.monitor == "val/rocauc" and checkpoint.mode == "max"
    assert 0.0 <= float(trainer.callback_metrics["val/rocauc"]) <= 1.0
    assert checkpoint.best_model_path and (tmp_path / "last.ckpt").is_file()


@pytest.mark.parametrize("given", [None, "acc"])
def test_metric_defaults_to_the_datamodules(given, tmp_path):
    """Built without a metric, the module scores with the dataset's (ROC-AUC here), as the CLI's
    link would; an explicit metric is kept. The checkpoint reloads with the metric it used."""
    pl.seed_everything(0)
    data = tiny_graph(num_classes=2)
    data.metric = "rocauc"
    module = NodeClassifier("mlp", hidden_channels=16, metric=given)
    checkpoint = BestCheckpoint(dirpath=tmp_path)
    trainer = quiet_trainer(max_epochs=2, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(module, datamodule=NodeDataModule.from_data(data))
    expected = given or "rocauc"
    assert checkpoint.monitor == f"val/{expected}" and f"val/{expected}" in trainer.callback_metrics
    assert module.hparams.metric == expected
    restored = NodeClassifier.load_from_checkpoint(checkpoint.best_model_path)
    assert restored.monitor == f"val/{expected}"
    assert NodeClassifier("mlp").monitor == "val/acc"  # no datamodule: accuracy


@pytest.mark.parametrize("monitor, mode, expected", [
    ("val/acc", "auto", "max"), ("val/rocauc", "auto", "max"), ("val/rmse", "auto", "min"),
    ("val/loss", "auto", "min"), ("val/rmse", "max", "max"),
])
def test_callbacks_take_the_direction_from_the_metric(monitor, mode, expected, tmp_path):
    from graphmoe.training.callbacks import MetricEarlyStopping

    module = type("Task", (pl.LightningModule,), {"monitor": monitor})()
    trainer = quiet_trainer(max_epochs=1, default_root_dir=tmp_path)
    checkpoint = BestCheckpoint(dirpath=tmp_path, mode=mode)
    stopping = MetricEarlyStopping(mode=mode, min_delta=0.1)
    for callback in (checkpoint, stopping):
        callback.setup(trainer, module, "fit")
        assert callback.monitor == monitor and callback.mode == expected
    worst = torch.inf if expected == "min" else -torch.inf
    assert float(checkpoint.kth_value) == worst and float(stopping.best_score) == worst
    assert stopping.min_delta == (0.1 if expected == "max" else -0.1)


def test_metrics_from_logits():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    acc = build_metric("acc", 2)
    acc.update(logits, y)
    assert acc.compute().item() == pytest.approx(0.75)
    auc = build_metric("rocauc", 2)
    auc.update(logits, y)
    assert auc.compute().item() == pytest.approx(1.0)
    ogb = build_metric("ogb:ogbn-arxiv", 2)
    ogb.update(logits, y)
    assert ogb.compute().item() == pytest.approx(0.75)
    assert metric_key("ogb:ogbn-proteins") == "rocauc"
    with pytest.raises(ValueError, match="metric must be one of"):
        metric_key("f1")


def test_stage_metrics_strips_prefix_and_losses():
    logged = {"val/acc": 0.5, "val/loss": 1.0, "test/acc": 0.4, "train/acc": 0.9}
    assert stage_metrics(logged, "val") == {"acc": 0.5}
    assert stage_metrics(logged, "test") == {"acc": 0.4}


class _AuxBackbone(torch.nn.Module):
    """A stand-in MoE-style backbone: ``forward`` returns ``(logits, aux_loss)``."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.lin = torch.nn.Linear(in_channels, out_channels)

    def forward(self, x, edge_index=None, edge_weight=None):
        return self.lin(x), torch.tensor(5.0)


def test_auxiliary_losses_are_added_to_the_training_loss(monkeypatch):
    import graphmoe.models

    monkeypatch.setattr(graphmoe.models, "build_model", lambda name, **kw: _AuxBackbone(**kw))
    data = tiny_graph()
    module = NodeClassifier("aux", in_channels=8, out_channels=3)
    with torch.no_grad():
        task = torch.nn.functional.cross_entropy(module(data.x, data.edge_index)[data.train_mask],
                                                 data.y[data.train_mask])
        loss = module.training_step(data, 0)
    assert loss.item() == pytest.approx(task.item() + 5.0)
