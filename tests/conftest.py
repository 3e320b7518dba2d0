"""Shared pytest fixtures: the data root and isolated caches."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets"

# Tests never touch the network: a missing dataset raises the offline error. Download tests
# (tests/data/test_download.py) unset this and replace the downloader.
os.environ["GRAPHMOE_OFFLINE"] = "1"


def shared_data_root() -> Path | None:
    """The real datasets (``$GRAPHMOE_DATA``, else ``../shared/datasets``), or None."""
    root = Path(os.environ.get("GRAPHMOE_DATA", DEFAULT_DATA))
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("real datasets not found: set GRAPHMOE_DATA")
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    """Test graphs are tiny: one thread is fastest and does not fight other processes for the
    machine's (two, shared) cores. Benchmarks choose their own thread counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Processed files go to a per-session temporary cache, never to the user's."""
    cache = tmp_path_factory.getbasetemp() / "graphmoe-cache"
    monkeypatch.setenv("GRAPHMOE_CACHE", str(cache))
