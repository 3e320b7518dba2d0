"""``graphmoe federated``: config errors, outputs (CSV, summary.json, PNG), resume, engines."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from graphmoe.cli import COMMANDS, main
from graphmoe.federated.config import FederatedConfig, load_config
from graphmoe.federated.run import get_engine

REPO = Path(__file__).resolve().parents[2]
SMALL = {"hidden_channels": 16}
CONFIG = {
    "dataset": "cora", "mode": "disjoint", "num_clients": 5, "rounds": 3, "seed": 0,
    "algorithms": [{"name": "fedavg", **SMALL}, {"name": "fedpub", "tau": 3, **SMALL},
                   {"name": "fedpub", "label": "fedpub-tau10", "tau": 10, **SMALL}],
}


def _write(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "fed.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **changes}))
    return path


@pytest.fixture(scope="module", autouse=True)
def _data_root_env(data_root):
    """The configs name datasets, not folders: point the data root at the real datasets even
    when ``$GRAPHMOE_DATA`` is unset (the fixture falls back to ``../shared/datasets``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHMOE_DATA", str(data_root))
        yield


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("fedcli")
    out = tmp / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["federated", "--config", str(_write(tmp)), "--out", str(out), "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return tmp, out


def test_federated_is_a_command():
    assert "federated" in COMMANDS


def test_outputs(cli_run):
    _, out = cli_run
    with (out / "rounds.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["algorithm"], r["round"]) for r in rows] == [
        (a, str(i)) for a in ("fedavg", "fedpub", "fedpub-tau10") for i in (1, 2, 3)]
    assert {"mean_val_acc", "mean_test_acc", "client0_val_acc", "client4_test_acc"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "cora" and summary["num_clients"] == 5
    assert "best mean local validation accuracy" in summary["metric"]
    assert set(summary["algorithms"]) == {"fedavg", "fedpub", "fedpub-tau10"}
    for label, result in summary["algorithms"].items():
        curve = [r for r in rows if r["algorithm"] == label]
        best = max(curve, key=lambda r: float(r["mean_val_acc"]))
        assert result["test_acc"] == pytest.approx(float(best["mean_test_acc"]))
        assert result["wall_time_s"] > 0 and 0 < result["test_acc"] <= 1
    assert summary["algorithms"]["fedpub-tau10"]["options"]["tau"] == 10
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "partition.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "fedpub" / "checkpoint.pt").is_file()
    assert (out / "fedpub" / "history.json").is_file()


def test_resume_and_overrides(cli_run, tmp_path):
    tmp, out = cli_run
    before = json.loads((out / "summary.json").read_text())["algorithms"]
    resumed = tmp_path / "resumed"
    config = str(_write(tmp))
    assert main(["federated", "--config", config, "--out", str(resumed), "--rounds", "2",
                 "--algorithms", "fedpub", "--no-progress"]) == 0
    assert main(["federated", "--config", config, "--out", str(resumed), "--resume",
                 "--algorithms", "fedpub", "--no-progress"]) == 0
    after = json.loads((resumed / "summary.json").read_text())["algorithms"]
    assert set(after) == {"fedpub"}
    for key in ("test_acc", "val_acc", "best_round"):
        assert after["fedpub"][key] == before["fedpub"][key]


@pytest.mark.parametrize("changes, message", [
    ({"rounds_": 3}, "unknown key 'rounds_'.*valid keys: dataset, mode"),
    ({"algorithms": ["fedpub", "fedsgd"]}, "unknown federated algorithm 'fedsgd'"),
    ({"algorithms": [{"name": "fedpub", "tau": 0}]}, "'tau' must be > 0"),
    ({"algorithms": [{"name": "fedpub", "tua": 3}]}, "unknown option 'tua'.*tau"),
    ({"mode": "random"}, "'mode' must be one of disjoint, overlapping"),
    ({"algorithms": []}, "at least one algorithm"),
    ({"algorithms": ["fedavg", "fedavg"]}, "labels must be unique"),
    ({"fraction": 1.5}, "'fraction'"),
])
def test_config_errors(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        load_config(_write(tmp_path, **changes))


def test_config_errors_are_one_line_on_the_command_line(tmp_path, capsys):
    assert main(["federated", "--config", str(_write(tmp_path, tau=3))]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'tau'" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="--algorithms: 'fedprox' is not in the config"):
        load_config(_write(tmp_path)).select(["fedprox"])


def test_shipped_configs_load():
    paths = sorted((REPO / "configs" / "federated").glob("*.yaml"))
    assert len(paths) >= 37
    configs = {p.stem: load_config(p) for p in paths}
    readme = configs["fedpub_cora_disjoint10"]
    assert [a.name for a in readme.algorithms] == ["local", "fedavg", "fedprox", "fedper", "fedpub"]
    assert configs["cora_overlapping30"].algorithms[-1].options["tau"] == 5
    assert isinstance(readme, FederatedConfig) and readme.dataset == "cora"


def test_flower_engine_error_or_runner():
    if importlib.util.find_spec("graphmoe.federated.flower") is None:
        with pytest.raises(ValueError, match="flower engine is not available"):
            get_engine("flower")
    else:
        try:
            assert callable(get_engine("flower"))
        except ValueError as err:
            assert "Flower" in str(err)
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("mpi")
