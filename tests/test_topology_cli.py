"""``graphmoe topology``: outputs (CSV, summary.json, results.json, PNGs), checkpoint reuse and
bad input (K < 1, a split with no edges, a directed graph)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch_geometric.data import Data

from graphmoe.cli import COMMANDS, main
from graphmoe.data.link import random_link_split
from graphmoe.training.topology import correlations, node_topology, run_topology

FAST = ["--epochs", "3", "--hidden", "16", "--K", "1", "2", "--rank-k", "5"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def usair_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("tc_usair")
    torch.set_num_threads(1)
    rc = main(["topology", "--dataset", "usair", "--model", "sage", "--out", str(out),
               "--root", str(data_root), *FAST])
    return rc, out


def test_topology_is_a_command():
    assert "topology" in COMMANDS


def test_outputs(usair_run):
    rc, out = usair_run
    assert rc == 0
    for name in ("nodes.csv", "summary.json", "results.json", "perf_vs_tc.png",
                 "tc_distribution.png", "metrics.csv"):
        assert (out / name).is_file(), name
    nodes = pd.read_csv(out / "nodes.csv")
    assert len(nodes) == 332 and nodes["node"].tolist() == list(range(332))
    metric_cols = {"tc_train_k1", "tc_test_k1", "tc_train_k2", "tc_test_k2", "atc_test_k1",
                   "atc_test_k2", "degree_train", "degree_test", "density_k1", "density_k2",
                   "clustering"}
    perf_cols = {"hits@5", "mrr", "ndcg@5"}
    assert metric_cols | perf_cols <= set(nodes.columns)
    # performance is defined exactly for the nodes with test edges
    assert (nodes["mrr"].notna() == (nodes["degree_test"] > 0)).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "usair" and summary["model"] == "sage"
    assert summary["num_evaluated_nodes"] == int((nodes["degree_test"] > 0).sum())
    for kind in ("pearson", "spearman"):
        assert set(summary["correlation"][kind]) == metric_cols
        for row in summary["correlation"][kind].values():
            assert set(row) == perf_cols
            assert all(v is None or -1 <= v <= 1 for v in row.values())
    verdict = summary["tc_vs_degree"]["mrr"]
    assert verdict["tc_metric"] in ("tc_test_k1", "tc_test_k2")
    assert isinstance(verdict["tc_stronger"], bool)
    results = json.loads((out / "results.json").read_text())
    assert {"rocauc", "hits@10"} <= set(results["val"]) and "node_mrr" in results["test"]
    assert summary["performance"]["mrr"] == pytest.approx(results["test"]["node_mrr"], rel=1e-5)


def test_loading_a_checkpoint_gives_the_same_numbers(usair_run, tmp_path, data_root):
    _, out = usair_run
    ckpt = out / "checkpoints" / "best.ckpt"
    summary = run_topology("usair", "sage", tmp_path / "again", root=str(data_root), ckpt=ckpt,
                           ks=(1,), rank_k=(5,), plots=False, progress=False)
    first = json.loads((out / "summary.json").read_text())
    assert summary["performance"] == pytest.approx(first["performance"])
    assert summary["correlation"]["spearman"]["tc_test_k1"] == pytest.approx(
        first["correlation"]["spearman"]["tc_test_k1"])
    # another split would test on edges the model was trained on: refused
    rc = main(["topology", "--dataset", "usair", "--seed", "1", "--ckpt", str(ckpt),
               "--out", str(tmp_path / "wrong"), "--root", str(data_root), "--no-plots"])
    assert rc == 1


def test_correlations_ignore_nodes_without_performance():
    metrics = {"a": torch.tensor([0.0, 1.0, 2.0, 3.0, 9.0]), "flat": torch.ones(5)}
    perf = {"mrr": torch.tensor([0.1, 0.2, 0.3, 0.4, float("nan")])}
    corr = correlations(metrics, perf)
    assert corr["pearson"]["a"]["mrr"] == pytest.approx(1.0)
    assert corr["spearman"]["a"]["mrr"] == pytest.approx(1.0)
    assert corr["pearson"]["flat"]["mrr"] is None


# -- bad input ---------------------------------------------------------------------------------


def test_k_below_one_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["topology", "--dataset", "usair", "--K", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--K values must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="ks must be a non-empty list of ints >= 1"):
        run_topology("usair", ks=(0,), out=tmp_path)


def _ring_split() -> Data:
    n = 30
    src = torch.arange(n)
    ei = torch.cat([torch.stack([src, (src + 1) % n]), torch.stack([src, (src + 3) % n])], dim=1)
    data = Data(x=torch.randn(n, 4), edge_index=torch.cat([ei, ei.flip(0)], dim=1), num_nodes=n)
    return random_link_split(data, val_ratio=0.1, test_ratio=0.2)


def test_node_topology_bad_input():
    split = _ring_split()
    with pytest.raises(ValueError, match="K must be a non-empty list of ints >= 1"):
        node_topology(split, ks=(0,))
    empty = split.clone()
    empty.test_pos_edge_index = torch.empty(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="test split has no edges"):
        node_topology(empty)
    directed = split.clone()
    directed.edge_index = split.train_pos_edge_index  # one direction only
    with pytest.raises(ValueError, match="undirected"):
        node_topology(directed)
    metrics = node_topology(split, ks=(1,))
    assert set(metrics) == {"degree_train", "degree_test", "tc_train_k1", "tc_test_k1",
                            "atc_test_k1", "density_k1", "clustering"}


def test_unknown_dataset_is_one_line(tmp_path, capsys):
    assert main(["topology", "--dataset", "no-such-graph", "--out", str(tmp_path)]) == 1
    assert "Unknown dataset 'no-such-graph'" in capsys.readouterr().err
