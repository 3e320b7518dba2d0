"""Fetching missing raw files from the URLs recorded in the catalog (:attr:`DatasetInfo.urls`).

* ``offline()``: ``$GRAPHMOE_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``, ``on``);
  then nothing is downloaded, as with ``load_dataset(..., download=False)``.
* ``download_root()``: where files go when the data root is not writable:
  ``<cache>/downloads``, laid out like a data root (``<cache>/downloads/<folder>/<file>``).
* ``download_file(url, path)``: one file, written atomically (a temporary ``.part`` file in the
  target folder, then renamed), so an interrupted download never leaves a truncated raw file.
  Tests replace this function to stay offline.
* ``download_archive(url, member, folder)``: a zip whose ``member/`` folder is a whole dataset
  folder (OGB's archives), unpacked into ``folder`` through a temporary folder beside it.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError

from .cache import cache_dir

__all__ = ["DOWNLOAD_ERRORS", "describe_failure", "download_archive", "download_file",
           "download_root", "is_writable", "offline"]

#: Socket timeout of one download, in seconds.
TIMEOUT = 60.0
#: What a failed download raises (``URLError``, ``HTTPError``, timeouts and SSL errors are
#: ``OSError`` subclasses; a connection cut mid-body is an ``HTTPException``).
DOWNLOAD_ERRORS = (OSError, HTTPException, zipfile.BadZipFile)

_FALSE = ("", "0", "false", "no", "off")


def offline() -> bool:
    """Whether ``$GRAPHMOE_OFFLINE`` forbids downloads."""
    return os.environ.get("GRAPHMOE_OFFLINE", "").strip().lower() not in _FALSE


def download_root() -> Path:
    """The data root for downloads when the real root is read-only (``<cache>/downloads``)."""
    return cache_dir() / "downloads"


def is_writable(folder: Path) -> bool:
    """Whether ``folder`` (or, if it does not exist yet, its nearest existing parent) is writable."""
    path = folder
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def download_file(url: str, path: Path, *, timeout: float = TIMEOUT) -> Path:
    """Download ``url`` to ``path`` (parent folders are created once the server answers)."""
    print(f"graphmoe: downloading {url}", file=sys.stderr)
    request = urllib.request.Request(url, headers={"User-Agent": "graphmoe"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def download_archive(url: str, member: str, folder: Path, *, timeout: float = TIMEOUT) -> Path:
    """Download the zip at ``url`` and move the files of its ``member/`` folder into ``folder``.

    Files already in ``folder`` are kept. The archive is unpacked in a temporary folder beside
    ``folder`` (same file system, so files are moved, not copied) that is removed afterwards.
    ``zipfile.BadZipFile`` when the archive is not a zip or has no ``member/`` folder.
    """
    prefix = member.strip("/") + "/"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}.") as tmp:
        archive = download_file(url, Path(tmp) / "archive.zip", timeout=timeout)
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.startswith(prefix) and ".." not in n.split("/")]
            if not names:
                raise zipfile.BadZipFile(f"the archive has no {prefix} folder")
            zf.extractall(Path(tmp) / "unpacked", members=names)
        source = Path(tmp) / "unpacked" / prefix
        for path in sorted(source.rglob("*")):
            dest = folder / path.relative_to(source)
            if path.is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
    return folder


def describe_failure(url: str, err: BaseException) -> str:
    """One line: why downloading ``url`` failed."""
    detail = err if isinstance(err, HTTPError) else (getattr(err, "reason", None) or err)
    text = " ".join(str(detail).split()) or type(err).__name__
    return f"{type(err).__name__}: {text} ({url})"
