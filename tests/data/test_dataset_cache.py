"""Data root resolution, read-only roots, the processed cache and the offline error."""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from graphmoe.data import (
    FORMATS,
    DatasetNotFoundError,
    cache_dir,
    file_digest,
    load_dataset,
    resolve_root,
)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


@pytest.fixture
def small_root(data_root, tmp_path) -> Path:
    """A private data root with Cora (Planetoid) and the heterophilous Cornell."""
    root = tmp_path / "root"
    shutil.copytree(data_root / "planetoid_cora", root / "planetoid_cora")
    (root / "heterophilous_graphs").mkdir()
    shutil.copy(data_root / "heterophilous_graphs" / "cornell.npz", root / "heterophilous_graphs")
    yield root
    for path in [root, *root.rglob("*")]:  # let pytest clean up
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRAPHMOE_CACHE", str(cache))
    return cache


def _forbid_processing(monkeypatch, fmt: str) -> None:
    def fail(*args, **kwargs):
        raise AssertionError(f"{fmt} was re-processed although it is cached")

    monkeypatch.setitem(FORMATS, fmt, dataclasses.replace(FORMATS[fmt], process=fail))


def test_resolve_root_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRAPHMOE_DATA", raising=False)
    assert resolve_root() == tmp_path / "datasets"
    monkeypatch.setenv("GRAPHMOE_DATA", str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"
    assert resolve_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHMOE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GRAPHMOE_CACHE")
    assert cache_dir() == Path("~/.cache/graphmoe").expanduser()


def test_read_only_root_is_never_written(small_root, fresh_cache, monkeypatch):
    _make_read_only(small_root)
    before = _snapshot(small_root)
    monkeypatch.setenv("GRAPHMOE_DATA", str(small_root))
    assert load_dataset("cora").num_nodes == 2708
    assert load_dataset("cornell", split=4).num_nodes == 183
    assert _snapshot(small_root) == before
    assert list((fresh_cache / "processed").iterdir())


def test_second_load_comes_from_the_cache(small_root, fresh_cache, monkeypatch):
    first = load_dataset("cora", small_root)
    _forbid_processing(monkeypatch, "planetoid")
    second = load_dataset("cora", small_root)
    assert torch.equal(first.x, second.x) and torch.equal(first.edge_index, second.edge_index)
    # Same content, new mtime: the content hash still matches.
    x_file = small_root / "planetoid_cora" / "ind.cora.x"
    os.utime(x_file, ns=(1, 1))
    load_dataset("cora", small_root)
    with pytest.raises(AssertionError, match="re-processed"):
        load_dataset("cora", small_root, force_reload=True)


def test_changed_raw_file_or_option_is_reprocessed(small_root, fresh_cache):
    path = small_root / "heterophilous_graphs" / "cornell.npz"
    before = load_dataset("cornell", small_root)
    assert load_dataset("cornell", small_root, undirected=False).num_edges < before.num_edges
    with np.load(path) as f:
        arrays = dict(f)
    arrays["node_features"] = arrays["node_features"] + 1.0
    np.savez(path, **arrays)
    after = load_dataset("cornell", small_root)
    assert torch.allclose(after.x, before.x + 1.0)


def test_file_digest_is_content_based_and_memoised(tmp_path, fresh_cache):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    digest = file_digest(path)
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (fresh_cache / "file_hashes.json").is_file()
    path.write_bytes(b"abd")
    assert file_digest(path) != digest


def test_unwritable_cache_warns_and_still_loads(small_root, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GRAPHMOE_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="GRAPHMOE_CACHE"):
        data = load_dataset("cornell", small_root)
    assert data.num_nodes == 183


def test_offline_missing_files_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("pubmed", tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "ind.pubmed.allx" in message and str(tmp_path / "planetoid_pubmed") in message
    assert "\n" not in message
    with pytest.raises(FileNotFoundError, match=r"amazon_co_buy_computer\.zip \(or "
                                                r"amazon_electronics_computers\.npz\)"):
        load_dataset("amazon-computers", tmp_path)
    with pytest.raises(FileNotFoundError, match="roman_empire.npz"):
        load_dataset("roman-empire", tmp_path)


def test_partially_present_dataset_names_only_missing_files(small_root, tmp_path):
    root = tmp_path / "partial"
    shutil.copytree(small_root / "planetoid_cora", root / "planetoid_cora")
    (root / "planetoid_cora" / "ind.cora.graph").unlink()
    with pytest.raises(FileNotFoundError, match=r"put ind\.cora\.graph into"):
        load_dataset("cora", root)
