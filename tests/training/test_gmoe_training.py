"""GMoE through NodeClassifier: the balancing loss reaches the optimizer, routing stats are
logged, and ``graphmoe fit --config configs/gmoe/cora.yaml`` writes results.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from graphmoe.data.synthetic import csbm
from graphmoe.training import NodeClassifier, NodeDataModule

REPO = Path(__file__).resolve().parents[2]


def tiny_graph(seed: int = 0):
    data = csbm(num_nodes=240, num_classes=3, num_features=8, avg_degree=6.0, homophily=(0.9,),
                signal=2.0, seed=seed)
    data.name, data.num_classes, data.metric = "tiny", 3, "acc"
    return data


def quiet_trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def gmoe_module(**backbone_kwargs) -> NodeClassifier:
    kwargs = dict(num_experts=4, k=2, router="topk", balance_loss_weight=0.5)
    kwargs.update(backbone_kwargs)
    return NodeClassifier("gmoe", hidden_channels=8, dropout=0.0, in_channels=8,
                          out_channels=3, backbone_kwargs=kwargs)


def test_training_loss_is_task_loss_plus_balancing_loss_with_its_gradient():
    torch.manual_seed(0)
    data = tiny_graph()
    module = gmoe_module()  # deterministic top-k routing: two forwards route alike
    gates = [conv.router.gate.weight for conv in module.model.convs]

    loss = module.training_step(data, 0)
    aux = module.model.aux_loss
    assert aux is not None and aux.item() > 0
    grad_total = torch.autograd.grad(loss, gates, retain_graph=True)
    grad_aux = torch.autograd.grad(aux, gates)

    logits = module(data.x, data.edge_index)
    task = F.cross_entropy(logits[data.train_mask], data.y[data.train_mask])
    assert loss.item() == pytest.approx(task.item() + module.model.aux_loss.item(), rel=1e-6)
    grad_task = torch.autograd.grad(task, gates)
    for total, t, a in zip(grad_total, grad_task, grad_aux):
        assert a.abs().sum() > 0
        torch.testing.assert_close(total, t + a)


def _one_step(weight: float) -> NodeClassifier:
    pl.seed_everything(0)
    module = gmoe_module(balance_loss_weight=weight)
    quiet_trainer(max_epochs=1).fit(module, datamodule=NodeDataModule.from_data(tiny_graph()))
    return module


def test_optimizer_step_sees_the_balancing_loss():
    """One Adam step from the same initialisation with and without the balancing loss: the
    routers move differently. The last layer's experts do not (the balancing loss depends on
    router probabilities only; it reaches earlier layers through the routers' inputs)."""
    without, with_aux = _one_step(0.0), _one_step(10.0)
    for a, b in zip(without.model.convs, with_aux.model.convs):
        assert not torch.allclose(a.router.gate.weight, b.router.gate.weight)
    torch.testing.assert_close(without.model.convs[-1].weight, with_aux.model.convs[-1].weight)


def test_fit_logs_aux_loss_and_per_expert_load():
    pl.seed_everything(0)
    data = tiny_graph()
    module = NodeClassifier("gmoe", hidden_channels=16, dropout=0.0,
                            backbone_kwargs={"num_experts": 4, "k": 2,
                                             "num_shared_experts": 1})
    trainer = quiet_trainer(max_epochs=30)
    trainer.fit(module, datamodule=NodeDataModule.from_data(data))
    logged = trainer.callback_metrics
    assert {"train/aux_loss", "train/moe/0/load/0", "train/moe/1/load/3", "train/moe/0/hop2",
            "train/moe/0/load_balance"} <= set(logged)
    load = sum(float(logged[f"train/moe/0/load/{e}"]) for e in range(4))
    assert load == pytest.approx(1.0, abs=1e-5)
    (test,) = trainer.test(module, datamodule=NodeDataModule.from_data(data), verbose=False)
    assert set(test) == {"test/loss", "test/acc"}  # routing stats stay out of results
    assert test["test/acc"] > 0.6  # chance is 1/3


def test_cli_fit_with_the_cora_config_writes_results_json(data_root, tmp_path, monkeypatch):
    from graphmoe.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["graphmoe"])
    monkeypatch.setenv("GRAPHMOE_DATA", str(data_root))
    args = ["fit", "--config", str(REPO / "configs" / "gmoe" / "cora.yaml"),
            "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--model.backbone_kwargs.num_shared_experts", "1"]
    assert main(args) == 0
    (results,) = list(tmp_path.glob("runs/**/results.json"))
    out = json.loads(results.read_text())
    assert set(out) == {"val", "test"} and 0.0 <= out["test"]["acc"] <= 1.0
    header = (results.parent / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/aux_loss" in header and "train/moe/0/load/3" in header
