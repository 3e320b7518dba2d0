"""Mowst / Mowst* training: the schedules, what is frozen when, rollbacks, logging, the CLI."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
import yaml

from graphmoe.data import csbm
from graphmoe.training import NodeDataModule
from graphmoe.training.mowst import MowstModule

TINY = {"num_nodes": 240, "num_classes": 3, "num_features": 8, "avg_degree": 5.0,
        "homophily": [0.9, 0.1], "signal": 1.5, "pattern": "uniform"}


@pytest.fixture(scope="module")
def data():
    return csbm(**TINY, seed=0)


def fit(module: MowstModule, data, max_epochs: int = 400, **trainer_kwargs) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, **trainer_kwargs)
    trainer.fit(module, datamodule=NodeDataModule.from_data(data))
    return trainer


SMALL = dict(hidden_channels=16, patience=5, max_turn_epochs=30, outer_patience=1, max_rounds=3,
             num_folds=3, num_draws=4, lr=0.02)


def params(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


class Spy(pl.Callback):
    """Records, per training step, the phase, which parts are in train mode and which changed."""

    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        m = pl_module.model
        self._before = {k: params(getattr(m, k)) for k in ("weak", "strong", "gate")}
        self._phase = pl_module.schedule["phase"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        m = pl_module.model
        changed = {k: not torch.equal(self._before[k], params(getattr(m, k)))
                   for k in ("weak", "strong", "gate")}
        modes = {k: getattr(m, k).training for k in ("weak", "strong", "gate")}
        self.rows.append({"phase": self._phase, "changed": changed, "train_mode": modes})


@pytest.mark.parametrize("gate_fit", ["insample", "crossfit"])
def test_alternating_turns_freeze_the_other_side_in_eval_mode(data, gate_fit):
    spy = Spy()
    module = MowstModule(**SMALL, gate_fit=gate_fit, pretrain="both")
    trainer = fit(module, data, callbacks=[spy])
    phases = [row["phase"] for row in spy.rows]
    assert phases[0] == "pretrain_weak" and "pretrain_strong" in phases
    assert "weak" in phases and "strong" in phases
    for row in spy.rows:
        changed, modes = row["changed"], row["train_mode"]
        if row["phase"] in ("weak", "pretrain_weak"):
            assert not changed["strong"] and not modes["strong"]
            assert modes["weak"] and changed["weak"]
            assert modes["gate"] == (row["phase"] == "weak")
            assert changed["gate"] == (row["phase"] == "weak")
        else:
            assert not changed["weak"] and not changed["gate"]
            assert not modes["weak"] and not modes["gate"] and modes["strong"]
    assert module.schedule["phase"] == "done" and trainer.current_epoch < 400
    kinds = [h["phase"] for h in module.schedule["history"]]
    assert kinds[:2] == ["pretrain_weak", "pretrain_strong"] and kinds[2:4] == ["weak", "strong"]
    turn = module.schedule["history"][2]
    for key in ("val", "conf_mean", "weak_frac", "conf_q10", "conf_q50", "conf_q90"):
        assert key in turn and 0.0 <= turn[key] <= 1.0


def test_kept_state_is_the_best_validated_one_and_the_gate_rolls_back(data):
    module = MowstModule(**SMALL, gate_fit="crossfit", pretrain="strong")
    seen = []

    class Track(pl.Callback):
        def on_validation_end(self, trainer, pl_module):
            seen.append((float(trainer.callback_metrics["val/acc"]),
                         {k: v.clone() for k, v in pl_module.state_dict().items()}))

    fit(module, data, callbacks=[Track()])
    scores = [s for s, _ in seen if not math.isnan(s)]
    best = max(scores)
    assert module.schedule["best_score"] == pytest.approx(best)
    # the weights held at the end are those of the first epoch that logged the best score
    first = next(state for s, state in seen if s == best)
    final = module.state_dict()
    for key in ("model.gate.lins.0.weight", "model.weak.convs.0.weight",
                "model.strong.convs.0.lin.weight", "crossfit.weak.0.convs.0.weight"):
        assert torch.equal(first[key], final[key]), key
    # a turn that did not beat the best so far left the gate where it was before the turn
    history = module.schedule["history"]
    assert any(not h["kept"] for h in history if h["phase"] in ("weak", "strong"))


def test_mowst_star_joint_training_stops_early(data):
    spy = Spy()
    module = MowstModule(**SMALL, variant="mowst_star", pretrain="none", gate_fit="insample")
    assert module.hparams.inference == "soft"
    trainer = fit(module, data, max_epochs=500, callbacks=[spy])
    assert trainer.current_epoch < 500 and module.schedule["phase"] == "done"
    assert all(row["phase"] == "joint" for row in spy.rows)
    assert all(all(row["changed"].values()) for row in spy.rows[:3])
    assert [h["phase"] for h in module.schedule["history"]] == ["joint"]


def test_gate_learning_rate_is_used_and_validation_loss_is_on_val_nodes(data):
    module = MowstModule(**{**SMALL, "max_turn_epochs": 2, "max_rounds": 1}, gate_lr=0.003)
    fit(module, data, max_epochs=4)
    groups = {g["name"]: g["lr"] for g in module.optimizers().optimizer.param_groups}
    assert groups == {"weak": 0.02, "gate": 0.003, "strong": 0.02}
    ev = module._evaluate(data, "val")
    assert ev["n"] == int(data.val_mask.sum())


def test_random_rule_metric_is_deterministic_and_conditional_test_matches(data):
    module = MowstModule(**{**SMALL, "max_turn_epochs": 3, "max_rounds": 1}, inference="random")
    fit(module, data, max_epochs=10)
    a, b = module._evaluate(data, "test"), module._evaluate(data, "test")
    assert a["score"] == b["score"]
    cond = module._evaluate(data, "test", conditional=True)
    assert cond["score"] == pytest.approx(a["score"])
    assert 0.0 <= cond["cond_node_fraction"] <= 1.0


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="dispersion"):
        MowstModule(dispersion="kurtosis")
    with pytest.raises(ValueError, match="variant"):
        MowstModule(variant="mowst2")
    with pytest.raises(ValueError, match="gate_fit"):
        MowstModule(gate_fit="validation")
    with pytest.raises(ValueError, match="pretrain"):
        MowstModule(pretrain="gnn")
    with pytest.raises(ValueError, match="num_folds"):
        MowstModule(num_folds=1)


# -- the command line -----------------------------------------------------------------------


def test_cli_fit_mowst_writes_results_and_routing_summary(tmp_path, monkeypatch):
    from graphmoe.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["graphmoe"])
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 40, "accelerator": "cpu", "enable_progress_bar": False,
                    "enable_model_summary": False},
        "model": {"class_path": "graphmoe.training.mowst.MowstModule",
                  "init_args": {**SMALL, "max_turn_epochs": 8, "max_rounds": 1}},
        "data": {"name": "csbm", "dataset_options": TINY},
    }
    path = tmp_path / "mowst.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    (version,) = Path("runs").glob("*/*/version_0")
    assert version.parts[1] == "mowst-gcn"
    results = json.loads((version / "results.json").read_text())
    assert set(results) == {"val", "test"} and set(results["val"]) == {"acc"}
    summary = json.loads((version / "mowst.json").read_text())
    assert summary["variant"] == "mowst" and summary["history"]
    assert set(summary["final"]) >= {"train", "val", "test"}
    assert "q50" in summary["final"]["test"]["conf_quantiles"]
    metrics = pd.read_csv(version / "metrics.csv")
    assert {"val/acc", "mowst/conf_mean", "mowst/weak_frac", "turn/conf_mean"} <= set(metrics)
    # the best checkpoint holds the state the schedule kept
    assert results["val"]["acc"] == pytest.approx(summary["best_val"], abs=1e-6)
    ckpt = next((version / "checkpoints").glob("epoch=*.ckpt"))
    assert main(["test", "--ckpt_path", str(ckpt), "--trainer.enable_progress_bar", "false"]) == 0
    assert main(["predict", "--config", str(path), "--ckpt_path", str(ckpt),
                 "--model.conditional_inference", "true", "--model.inference", "threshold"]) == 0
    (pred_file,) = Path("runs").rglob("predictions.pt")
    pred = torch.load(pred_file)
    assert pred["logits"].shape == (TINY["num_nodes"], TINY["num_classes"])
    assert torch.allclose(pred["logits"].exp().sum(-1), torch.ones(TINY["num_nodes"]), atol=1e-4)


CONFIGS = sorted(Path(__file__).parents[2].glob("configs/mowst/*.yaml"))


def test_every_mowst_config_builds_its_module_and_names_a_known_dataset():
    from graphmoe.data.registry import get_dataset_info

    assert len(CONFIGS) >= 10
    for path in CONFIGS:
        config = yaml.safe_load(path.read_text())
        assert config["model"]["class_path"] == "graphmoe.training.mowst.MowstModule", path
        module = MowstModule(**config["model"]["init_args"])
        assert module.hparams.variant == "mowst"
        get_dataset_info(config["data"]["name"])  # raises for an unknown name


def test_the_cli_parses_a_mowst_config_with_overrides(capsys):
    from graphmoe.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(CONFIGS[0]), "--model.strong", "sage",
              "--model.variant", "mowst_star", "--print_config"])
    assert info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "graphmoe.training.mowst.MowstModule"
    assert printed["model"]["init_args"]["strong"] == "sage"
    assert printed["model"]["init_args"]["variant"] == "mowst_star"


@pytest.mark.parametrize("gate_input", ["dispersion", "dispersion+x"])
def test_sparse_features_train_the_same_mowst(data, gate_input):
    """``NodeDataModule(sparse_features=True)`` (CSR x): the cross-fitted schedule keeps the
    same turns and ends at the same validation score as with the dense features."""
    sparse_x = data.clone()
    sparse_x.x = torch.where(data.x > 0.5, data.x, torch.zeros(()))  # a genuinely sparse x
    runs = []
    for sparse in (False, True):
        module = MowstModule(**SMALL, gate_input=gate_input, gate_fit="crossfit", strong="sage")
        pl.seed_everything(0, verbose=False)
        trainer = pl.Trainer(max_epochs=200, accelerator="cpu", logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        datamodule = NodeDataModule.from_data(sparse_x, sparse_features=sparse)
        trainer.fit(module, datamodule=datamodule)
        assert (datamodule.data.x.layout == torch.sparse_csr) is sparse
        runs.append((trainer.current_epoch, [h["phase"] for h in module.schedule["history"]],
                     module._evaluate(datamodule.data, "val")["score"]))
    assert runs[0][:2] == runs[1][:2]
    assert runs[0][2] == pytest.approx(runs[1][2], abs=1e-6)


def test_gate_steps_fit_the_gate_only_and_move_the_confidence(data):
    """``gate_steps`` extra gate-only steps per weak step: they touch no expert parameter, and
    the first weak step moves the gate further than one step does."""
    assert MowstModule(gate_fit="crossfit").hparams.gate_steps == 20
    assert MowstModule(gate_fit="insample").hparams.gate_steps == 1
    with pytest.raises(ValueError, match="gate_steps"):
        MowstModule(gate_steps=0)
    moved = {}

    class FirstWeakStep(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.phase, self.before = pl_module.schedule["phase"], params(pl_module.model.gate)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.phase == "weak" and steps not in moved:
                moved[steps] = float((params(pl_module.model.gate) - self.before).norm())

    for steps in (1, 20):
        module = MowstModule(**SMALL, gate_fit="crossfit", gate_steps=steps)
        fit(module, data, callbacks=[FirstWeakStep()])
    assert moved[20] > 3 * moved[1] > 0
    # a gate-only step: gradients reach the gate and nothing else
    batch = NodeDataModule.from_data(data).data
    module.schedule["phase"] = "weak"
    module.zero_grad(set_to_none=True)
    module._gate_loss("weak", batch).backward()
    assert all(p.grad is not None for p in module.model.gate.parameters())
    for part in (module.model.weak, module.model.strong, module.crossfit):
        assert all(p.grad is None for p in part.parameters())


def test_metric_defaults_to_the_datamodules():
    """Built without a metric (a script, not the CLI), Mowst scores and early-stops with the
    dataset's metric: ROC-AUC on a binary dataset that declares it, not accuracy."""
    binary = csbm(**{**TINY, "num_classes": 2}, seed=1)
    binary.metric = "rocauc"
    module = MowstModule(**{**SMALL, "max_rounds": 1})
    trainer = fit(module, binary, max_epochs=40)
    assert module.metric_key == "rocauc" and module.hparams.metric == "rocauc"
    assert "val/rocauc" in trainer.callback_metrics and "val/acc" not in trainer.callback_metrics
