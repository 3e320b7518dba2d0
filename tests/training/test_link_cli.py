"""configs/link/*.yaml through graphmoe's LightningCLI (model and data given by class_path)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from graphmoe.cli import GraphMoECLI
from graphmoe.training import GraphDataModule

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "link").glob("*.yaml"))


@pytest.fixture
def workdir(tmp_path, monkeypatch, data_root):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["graphmoe"])
    monkeypatch.setenv("GRAPHMOE_DATA", str(data_root))
    yield tmp_path
    torch.set_num_threads(threads)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_link_configs_name_existing_classes(config):
    cfg = yaml.safe_load(config.read_text())
    assert cfg["model"]["class_path"] == "graphmoe.training.link.LinkPredictor"
    assert cfg["data"]["class_path"] == "graphmoe.training.link.LinkDataModule"


def test_link_config_fits_and_writes_results(workdir):
    """The CLI with a class choice for ``data`` (``subclass_mode_data``) runs the link config.

    ``graphmoe fit --config configs/link/gcn_cora.yaml`` needs exactly this: GraphMoECLI with
    ``datamodule_class=GraphDataModule, subclass_mode_data=True``.
    """
    config = REPO / "configs" / "link" / "gcn_cora.yaml"
    GraphMoECLI(args=["fit", "--config", str(config), "--trainer.max_epochs", "2",
                      "--trainer.enable_progress_bar", "false"],
                datamodule_class=GraphDataModule, subclass_mode_data=True)
    (path,) = workdir.glob("runs/link-gcn/cora/version_0/results.json")
    results = json.loads(path.read_text())
    assert {"rocauc", "hits@10"} <= set(results["val"])
    assert {"rocauc", "node_mrr", "node_hits@10", "node_ndcg@10"} <= set(results["test"])
