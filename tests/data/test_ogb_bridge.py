"""OGB path, offline: write CiteSeer in OGB format with ogb.io.DatasetSaver, read it back
through PygNodePropPredDataset (via load_dataset, with a meta_dict), evaluate with OGB."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from graphmoe.data import (
    DatasetNotFoundError,
    load_dataset,
    ogb_evaluator,
    write_ogb_node_dataset,
)


@pytest.fixture(scope="module")
def citeseer(data_root):
    return load_dataset("citeseer", data_root)


@pytest.fixture(scope="module")
def ogb_root(citeseer, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ogb-root")
    meta = write_ogb_node_dataset(citeseer, "ogbn-citeseer", root)
    yield root, meta
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_written_layout(ogb_root):
    root, meta = ogb_root
    folder = root / "ogbn_citeseer"
    for name in ("raw/data.npz", "raw/node-label.npz", "split/public/split_dict.pt",
                 "mapping/README.md", "RELEASE_v1.txt", "meta_dict.pt"):
        assert (folder / name).is_file(), name
    assert not (folder / "processed").exists()
    assert meta["dir_path"] == str(folder) and meta["eval metric"] == "acc"
    assert meta["num classes"] == 6 and meta["num tasks"] == 1


def _same_graph(a, b) -> None:
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert torch.equal(a.edge_index, b.edge_index)
    for key in ("train_mask", "val_mask", "test_mask"):
        assert torch.equal(a[key], b[key]), key


def test_round_trip_by_name_from_a_read_only_root(ogb_root, citeseer):
    root, _ = ogb_root
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = sorted(str(p) for p in root.rglob("*"))
    data = load_dataset("ogbn-citeseer", root)
    assert sorted(str(p) for p in root.rglob("*")) == before  # processed in the cache
    _same_graph(data, citeseer)
    assert (data.name, data.num_classes, data.metric) == ("ogbn-citeseer", 6, "acc")


def test_round_trip_with_meta_dict(ogb_root, citeseer, tmp_path):
    _, meta = ogb_root
    data = load_dataset("ogbn-citeseer", tmp_path / "empty-root", meta_dict=meta)
    _same_graph(data, citeseer)


def test_ogb_evaluator_with_meta_dict(ogb_root, citeseer):
    _, meta = ogb_root
    evaluator = ogb_evaluator("ogbn-citeseer", meta)
    y_true = citeseer.y[citeseer.test_mask].view(-1, 1)
    y_pred = y_true.clone()
    y_pred[:250] = (y_pred[:250] + 1) % 6
    assert evaluator.eval({"y_true": y_true, "y_pred": y_pred}) == {"acc": 0.75}


def test_official_ogb_evaluator_and_metric():
    assert ogb_evaluator("ogbn-arxiv").eval_metric == "acc"
    assert ogb_evaluator("ogbn-proteins").eval_metric == "rocauc"


def test_missing_ogb_dataset_names_its_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("ogbn-arxiv", tmp_path)
    message = str(info.value)
    assert "raw/edge.csv.gz" in message and "raw/node-feat.csv.gz" in message
    assert str(tmp_path / "ogbn_arxiv") in message
    with pytest.raises(FileNotFoundError, match="meta_dict.pt"):
        load_dataset("ogbn-unknown", tmp_path)


def test_writer_refuses_to_overwrite(ogb_root, citeseer):
    root, _ = ogb_root
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_ogb_node_dataset(citeseer, "ogbn-citeseer", root)
    with pytest.raises(ValueError, match="ogbn-"):
        write_ogb_node_dataset(citeseer, "citeseer", root)
