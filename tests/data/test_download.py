"""Downloading missing raw files, offline: the downloader is replaced by a copy from the real
datasets ($GRAPHMOE_DATA), or fed ``file://`` URLs. Nothing here touches the network."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest

from graphmoe.data import (
    DatasetInfo,
    DatasetNotFoundError,
    dataset_files,
    get_dataset_info,
    list_datasets,
    load_dataset,
    registered_datasets,
    registry,
)
from graphmoe.data import download as download_module


@pytest.fixture
def online(monkeypatch, tmp_path) -> Path:
    """Downloads allowed (tests/conftest.py sets $GRAPHMOE_OFFLINE) and a private cache."""
    monkeypatch.delenv("GRAPHMOE_OFFLINE", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRAPHMOE_CACHE", str(cache))
    return cache


@pytest.fixture
def fake_download(monkeypatch, data_root) -> list[tuple[str, Path]]:
    """Replace the downloader: a catalog URL is 'downloaded' by copying the real file."""
    sources = {url: data_root / info.folder / file
               for info in registered_datasets() for file, url in info.urls.items()}
    calls: list[tuple[str, Path]] = []

    def fake(url: str, path: Path, *, timeout: float = 60.0) -> Path:
        calls.append((url, path))
        source = sources.get(url)
        if source is None or not source.is_file():
            raise URLError(f"no test copy of {url}")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        return path

    monkeypatch.setattr(download_module, "download_file", fake)
    return calls


def _forbid_download(monkeypatch) -> None:
    def fail(url, path, **kwargs):
        raise AssertionError(f"downloaded {url} although downloading is off")

    monkeypatch.setattr(download_module, "download_file", fail)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _entries(info: DatasetInfo) -> list[str]:
    return sorted(e.split("|")[-1] for e in info.files)


# -- the catalog --------------------------------------------------------------------------------


def test_catalog_urls_cover_every_required_file():
    with_urls = {info.name for info in registered_datasets() if info.urls}
    assert {"cora", "citeseer", "pubmed", "cora-npz", "amazon-photo", "coauthor-physics",
            "roman-empire", "minesweeper", "chameleon-filtered-directed", "geom-film",
            "penn94", "johnshopkins55"} <= with_urls
    assert not with_urls & {"twitch-de", "ogbn-arxiv", "csbm", "usair", "ogbl-ddi"}
    for info in registered_datasets():
        if info.urls:
            assert all(any(a in info.urls for a in e.split("|")) for e in info.files), info.name
            assert all(u.startswith("https://") and " " not in u for u in info.urls.values())
    urls = get_dataset_info("cora").urls
    assert urls["ind.cora.x"] == "https://github.com/kimiyoung/planetoid/raw/master/data/ind.cora.x"
    assert get_dataset_info("amazon-photo").urls == {
        "amazon_electronics_photo.npz":
            "https://github.com/shchur/gnn-benchmark/raw/master/data/npz/amazon_electronics_photo.npz"}
    assert get_dataset_info("penn94").urls["splits/fb100-Penn94-splits.npy"].endswith(
        "/Non-Homophily-Large-Scale/raw/master/data/splits/fb100-Penn94-splits.npy")
    assert get_dataset_info("johnshopkins55").urls["facebook100/Johns Hopkins55.mat"].endswith(
        "/facebook100/Johns%20Hopkins55.mat")
    with pytest.raises(ValueError, match="urls name files"):
        DatasetInfo(name="x", format="npz", files=("a.npz",), urls={"b.npz": "https://x/b.npz"})


def test_offline_switch(monkeypatch):
    for value, expected in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("GRAPHMOE_OFFLINE", value)
        assert download_module.offline() is expected
    monkeypatch.delenv("GRAPHMOE_OFFLINE")
    assert download_module.offline() is False


# -- fetching -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, num_nodes", [("cora", 2708), ("geom-texas", 183)])
def test_downloads_into_a_writable_root(name, num_nodes, data_root, online, fake_download,
                                        tmp_path):
    root = tmp_path / "root"  # does not exist yet
    info = get_dataset_info(name)
    data = load_dataset(name, root)
    assert data.num_nodes == num_nodes
    assert [url for url, _ in fake_download] == [info.urls[f] for f in info.files]
    folder = root / info.folder
    assert _files(folder) == _entries(info)
    for file in info.files:
        assert (folder / file).read_bytes() == (data_root / info.folder / file).read_bytes()
    assert not (online / "downloads").exists()
    fake_download.clear()
    assert load_dataset(name, root).num_nodes == num_nodes
    assert fake_download == []


def test_read_only_root_downloads_into_the_cache(data_root, online, fake_download, tmp_path,
                                                 monkeypatch):
    info = get_dataset_info("cora")
    root = tmp_path / "read-only"
    folder = root / info.folder
    folder.mkdir(parents=True)
    shutil.copy(data_root / info.folder / "ind.cora.graph", folder)  # one file is there already
    folder.chmod(0o555)
    root.chmod(0o555)
    if download_module.is_writable(folder):  # running as root: permissions do not bind
        monkeypatch.setattr(download_module, "is_writable", lambda path: False)
    try:
        data = load_dataset("cora", root)
        mirror = online / "downloads" / info.folder
        assert data.num_nodes == 2708 and int(data.train_mask.sum()) == 140
        assert _files(mirror) == _entries(info)
        assert sorted(url.rsplit("/", 1)[1] for url, _ in fake_download) == sorted(
            f for f in info.files if f != "ind.cora.graph")
        assert all(path.parent == mirror for _, path in fake_download)
        assert _files(root) == ["planetoid_cora/ind.cora.graph"]
        # Offline from now on: the cached downloads serve the dataset.
        monkeypatch.setenv("GRAPHMOE_OFFLINE", "1")
        fake_download.clear()
        assert load_dataset("cora", root).num_nodes == 2708
        assert fake_download == []
        assert dataset_files("cora", root)[0] == mirror
        assert next(r for r in list_datasets(root) if r["name"] == "cora")["present"]
    finally:
        root.chmod(0o755)
        folder.chmod(0o755)


def test_optional_file_failure_only_warns(data_root, online, fake_download, tmp_path,
                                          monkeypatch):
    base = get_dataset_info("reed98")
    split_file = "splits/fb100-Reed98-splits.npy"  # no test copy: its download fails
    info = dataclasses.replace(base, optional_files=(split_file,),
                               urls={**base.urls, split_file: "https://example.org/splits.npy"})
    monkeypatch.setitem(registry._INFOS, "reed98", info)
    with pytest.warns(UserWarning, match=f"optional file {split_file} of 'reed98'"):
        data = load_dataset("reed98", tmp_path)
    assert data.num_nodes == 962
    assert len(fake_download) == 2
    assert _files(tmp_path / "linkx") == ["facebook100/Reed98.mat"]


def test_real_downloader_reads_file_urls(data_root, online, tmp_path, monkeypatch):
    """The real ``download_file`` (``file://`` URLs stand in for the network)."""
    base = get_dataset_info("cornell")
    file = base.files[0]
    source = data_root / base.folder / file
    info = dataclasses.replace(base, urls={file: source.as_uri()})
    monkeypatch.setitem(registry._INFOS, "cornell", info)
    root = tmp_path / "root"
    assert load_dataset("cornell", root).num_nodes == 183
    folder = root / base.folder
    assert [p.name for p in folder.iterdir()] == [file]  # no .part file left behind
    assert (folder / file).read_bytes() == source.read_bytes()
    with pytest.raises(URLError):
        download_module.download_file((tmp_path / "absent.npz").as_uri(), tmp_path / "x" / "a")
    assert not (tmp_path / "x").exists()


# -- no download --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_raises_without_downloading(how, online, tmp_path, monkeypatch):
    _forbid_download(monkeypatch)
    kwargs = {}
    if how == "env":
        monkeypatch.setenv("GRAPHMOE_OFFLINE", "1")
    else:
        kwargs["download"] = False
    with pytest.raises(DatasetNotFoundError, match="does not download while offline") as info:
        load_dataset("pubmed", tmp_path, **kwargs)
    message = str(info.value)
    assert "ind.pubmed.allx" in message and str(tmp_path / "planetoid_pubmed") in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error, reason", [
    (URLError(OSError(-3, "Temporary failure in name resolution")),
     "URLError: [Errno -3] Temporary failure in name resolution"),
    (TimeoutError("timed out"), "TimeoutError: timed out"),
    (HTTPError("https://x", 404, "Not Found", None, None), "HTTPError: HTTP Error 404: Not Found"),
])
def test_download_failure_gives_the_offline_error_with_the_reason(error, reason, online,
                                                                   tmp_path, monkeypatch):
    calls = []

    def unreachable(url, path, **kwargs):
        calls.append(url)
        raise error

    monkeypatch.setattr(download_module, "download_file", unreachable)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("pubmed", tmp_path)
    message = str(info.value)
    url = get_dataset_info("pubmed").urls["ind.pubmed.x"]
    assert calls == [url]
    assert "ind.pubmed.x, " in message and str(tmp_path / "planetoid_pubmed") in message
    assert message.endswith(f"; the download failed: {reason} ({url}).")
    assert "could not be downloaded" in message and "\n" not in message
    assert info.value.__cause__ is error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, expected", [
    ("twitch-de", "musae_DE_edges.csv"),
    ("ogbn-unknown", "meta_dict.pt"),  # neither in OGB's master.csv nor given a meta_dict
])
def test_datasets_without_urls_are_not_downloaded(name, expected, online, tmp_path, monkeypatch):
    _forbid_download(monkeypatch)
    with pytest.raises(DatasetNotFoundError, match="has no download URL") as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert expected in message and str(tmp_path) in message and "\n" not in message
