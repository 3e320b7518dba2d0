"""The ``graphmoe`` command line: fit/validate/test/predict, resume, errors, demo, datasets."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from graphmoe.cli import COMMANDS, main

TINY = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 3, "accelerator": "cpu", "log_every_n_steps": 1,
                "enable_model_summary": False},
    "model": {"backbone": "gcn", "hidden_channels": 16, "num_layers": 2, "dropout": 0.0},
    "data": {"name": "csbm", "dataset_options": {
        "num_nodes": 200, "num_classes": 3, "num_features": 8, "avg_degree": 5.0,
        "homophily": [0.9], "signal": 2.0}},
}
RUN_DIR = Path("runs/gcn/csbm")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in ``tmp_path`` (logs go to ./runs) with a clean ``sys.argv``; return a tiny config.

    Also runs torch on one thread: tiny graphs train faster so, much faster on a busy machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["graphmoe"])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    yield config
    torch.set_num_threads(threads)


def fit(config: Path, *extra: str) -> None:
    assert main(["fit", "--config", str(config), *extra]) == 0


def test_fit_writes_results_json_from_the_best_checkpoint(workdir, capsys):
    fit(workdir)  # default Rich progress bar, CSV logger, best + last checkpoints
    version = RUN_DIR / "version_0"
    results = json.loads((version / "results.json").read_text())
    assert set(results) == {"val", "test"}
    assert set(results["val"]) == {"acc"} and set(results["test"]) == {"acc"}
    assert 0.0 <= results["test"]["acc"] <= 1.0
    assert (version / "checkpoints" / "last.ckpt").is_file()
    assert len(list((version / "checkpoints").glob("epoch=*.ckpt"))) == 1
    assert (version / "config.yaml").is_file() and (version / "metrics.csv").is_file()
    out = capsys.readouterr().out
    assert "results" in out and "best checkpoint" in out


def test_validate_test_predict_with_a_checkpoint(workdir, capsys):
    fit(workdir, "--trainer.enable_progress_bar", "false")
    ckpt = str(RUN_DIR / "version_0" / "checkpoints" / "last.ckpt")
    for command in ("validate", "test"):
        assert main([command, "--config", str(workdir), "--ckpt_path", ckpt,
                     "--trainer.enable_progress_bar", "false"]) == 0
    out = capsys.readouterr().out
    assert "val/acc" in out and "test/acc" in out
    # without --config, the model and data options come from the checkpoint
    assert main(["test", "--ckpt_path", ckpt, "--trainer.enable_progress_bar", "false"]) == 0
    assert "test/acc" in capsys.readouterr().out
    assert main(["predict", "--config", str(workdir), "--ckpt_path", ckpt]) == 0
    (pred_file,) = Path("runs").rglob("predictions.pt")
    pred = torch.load(pred_file)
    assert pred["logits"].shape == (200, 3)
    assert torch.equal(pred["node_id"], torch.arange(200))


def test_fit_resumes_from_last_checkpoint(workdir):
    fit(workdir, "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false")
    fit(workdir, "--trainer.max_epochs", "4", "--ckpt_path", "last",
        "--trainer.enable_progress_bar", "false")
    version = RUN_DIR / "version_0"
    assert not (RUN_DIR / "version_1").exists()  # the resumed run continues version_0
    last = torch.load(version / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 3 and last["global_step"] == 4
    metrics = pd.read_csv(version / "metrics.csv")
    train_epochs = metrics.dropna(subset=["train/loss"])["epoch"].tolist()
    assert train_epochs == [0, 1, 2, 3]  # epochs 0-1 from the first run, 2-3 resumed, none redone
    assert set(json.loads((version / "results.json").read_text())) == {"val", "test"}


def test_early_stopping_from_the_config(workdir):
    config = workdir.with_name("early.yaml")
    early = {"class_path": "graphmoe.training.MetricEarlyStopping",
             "init_args": {"patience": 1, "min_delta": 2.0}}  # accuracy never improves by 2
    config.write_text(yaml.safe_dump({**TINY, "trainer": {
        **TINY["trainer"], "max_epochs": 50, "enable_progress_bar": False, "callbacks": [early]}}))
    fit(config)
    last = torch.load(RUN_DIR / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] <= 2  # stopped after one epoch without improvement, not at 50
    assert (RUN_DIR / "version_0" / "results.json").is_file()


def test_unknown_config_key_is_a_clear_error(workdir, capsys):
    bad = workdir.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "hiden_channels": 8}}))
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(bad)])
    assert info.value.code != 0
    assert "model.hiden_channels" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(workdir), "--model.no_such_option", "1"])
    assert "no_such_option" in capsys.readouterr().err


def test_value_errors_reach_the_user_in_one_line(workdir, capsys):
    assert main(["fit", "--config", str(workdir), "--data.name", "coraa"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("graphmoe: error:") and "cora" in err and "\n" not in err


def test_demo_prints_accuracy_per_model_and_region(monkeypatch, capsys):
    from graphmoe import data as gdata
    from graphmoe.training import demo

    small = gdata.load_dataset("csbm", num_nodes=300, num_features=8, num_classes=3)
    monkeypatch.setattr(demo, "_load_demo_graph", lambda seed: small)
    assert main(["demo", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    for word in ("MLP", "GCN", "GraphSAGE", "homophilous", "heterophilous", "test acc"):
        assert word in out


def test_datasets_lists_the_registry(tmp_path, capsys):
    assert main(["datasets", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cora" in out and "csbm" in out and "present" in out


def test_extra_commands_are_dispatched_before_lightning():
    assert {"datasets", "demo"} <= set(COMMANDS)
