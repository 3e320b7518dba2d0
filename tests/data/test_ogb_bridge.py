"""OGB path, offline: write CiteSeer in OGB format with ogb.io.DatasetSaver, read it back
through PygNodePropPredDataset (via load_dataset, with a meta_dict), evaluate with OGB."""
from __future__ import annotations

import zipfile
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from graphmoe.data import (
    DatasetNotFoundError,
    load_dataset,
    ogb_evaluator,
    write_ogb_node_dataset,
)
from graphmoe.data import download as download_module


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


# -- fetching OGB's zip archives (offline: the "download" copies a zip written here) ----------------


@pytest.fixture
def online(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("GRAPHMOE_OFFLINE", raising=False)
    monkeypatch.setenv("GRAPHMOE_CACHE", str(tmp_path / "cache"))


def _zip_folder(folder: Path, member: str, path: Path) -> Path:
    """A zip laid out as OGB publishes it: the dataset folder as ``member/``."""
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, f"{member}/{file.relative_to(folder)}")
    return path


def _fake_download(monkeypatch, archives: dict[str, Path]) -> list[str]:
    calls: list[str] = []

    def fake(url: str, path: Path, *, timeout: float = 60.0) -> Path:
        calls.append(url)
        if url not in archives:
            raise URLError(f"no test copy of {url}")
        path.write_bytes(archives[url].read_bytes())
        return path

    monkeypatch.setattr(download_module, "download_file", fake)
    return calls


def test_missing_ogb_dataset_is_fetched_from_its_archive(ogb_root, citeseer, online, tmp_path,
                                                          monkeypatch):
    root, meta = ogb_root
    url = "https://example.invalid/ogb/citeseer.zip"
    archive = _zip_folder(root / "ogbn_citeseer", "citeseer", tmp_path / "citeseer.zip")
    calls = _fake_download(monkeypatch, {url: archive})
    meta = {k: v for k, v in meta.items() if k != "dir_path"} | {
        "url": url, "download_name": "citeseer"}
    data_root = tmp_path / "root"
    data = load_dataset("ogbn-citeseer", data_root, meta_dict=meta)
    _same_graph(data, citeseer)
    assert calls == [url]
    assert (data_root / "ogbn_citeseer" / "raw" / "data.npz").is_file()
    assert not [p for p in data_root.iterdir() if p.name.startswith(".")]  # temp folder gone
    load_dataset("ogbn-citeseer", data_root, meta_dict=meta)
    assert calls == [url]  # on disk now


def test_official_ogb_archive_url_and_failure(online, tmp_path, monkeypatch):
    calls = _fake_download(monkeypatch, {})
    with pytest.raises(DatasetNotFoundError, match="could not be downloaded") as info:
        load_dataset("ogbn-arxiv", tmp_path)
    assert calls == ["http://snap.stanford.edu/ogb/data/nodeproppred/arxiv.zip"]
    message = str(info.value)
    assert "raw/edge.csv.gz" in message and "arxiv.zip" in message and "\n" not in message


def test_archive_without_the_dataset_folder(ogb_root, online, tmp_path, monkeypatch):
    root, meta = ogb_root
    url = "https://example.invalid/ogb/wrong.zip"
    archive = _zip_folder(root / "ogbn_citeseer", "other", tmp_path / "wrong.zip")
    _fake_download(monkeypatch, {url: archive})
    meta = {k: v for k, v in meta.items() if k != "dir_path"} | {
        "url": url, "download_name": "citeseer"}
    with pytest.raises(DatasetNotFoundError, match="no citeseer/ folder"):
        load_dataset("ogbn-citeseer", tmp_path / "root", meta_dict=meta)


def test_ogb_archive_not_fetched_offline(monkeypatch, tmp_path):
    def fail(url, path, **kwargs):
        raise AssertionError(f"downloaded {url} although offline")

    monkeypatch.setattr(download_module, "download_file", fail)
    with pytest.raises(DatasetNotFoundError, match="does not download while offline"):
        load_dataset("ogbn-arxiv", tmp_path)
