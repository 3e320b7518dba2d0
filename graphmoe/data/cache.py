"""Data root resolution and the processed-file cache.

Raw files live in the *data root*, which may be read-only (a shared mount, a CI
checkout). Only downloaded raw files are written there (:mod:`graphmoe.data.download`,
and only if it is writable): processed graphs go to the *cache directory*, keyed by
a content hash of the raw files and the processing options, so editing a raw file
or changing an option can never return a stale graph.

* ``resolve_root(root)``: explicit ``root`` > ``$GRAPHMOE_DATA`` > ``./datasets``.
* ``cache_dir()``: ``$GRAPHMOE_CACHE``, default ``~/.cache/graphmoe``.
* File digests are SHA-256 of the file *content*. Hashing is done once per path:
  the digest is remembered in ``<cache>/file_hashes.json`` together with the
  file's size and ``mtime_ns`` and recomputed only when either changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DatasetNotFoundError",
    "cache_dir",
    "cache_key",
    "file_digest",
    "load_cached",
    "resolve_root",
    "save_cached",
]

_HASH_INDEX = "file_hashes.json"
_CHUNK = 1 << 20
_SPARSE_MIN = 1 << 20


class DatasetNotFoundError(FileNotFoundError):
    """Raw dataset files are missing and cannot be downloaded (offline)."""


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: ``root`` if given, else ``$GRAPHMOE_DATA``, else ``./datasets``."""
    if root is None:
        root = os.environ.get("GRAPHMOE_DATA") or "datasets"
    return Path(root).expanduser().resolve()


def cache_dir() -> Path:
    """Return the directory for processed files (``$GRAPHMOE_CACHE`` or ``~/.cache/graphmoe``)."""
    path = os.environ.get("GRAPHMOE_CACHE") or "~/.cache/graphmoe"
    return Path(path).expanduser().resolve()


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_hash_index() -> dict[str, Any]:
    try:
        return json.loads((cache_dir() / _HASH_INDEX).read_text())
    except (OSError, ValueError):
        return {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content, memoised per path by ``(size, mtime_ns)``."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    index = _read_hash_index()
    entry = index.get(str(path))
    if entry is not None and entry.get("stamp") == stamp:
        return entry["sha256"]
    digest = _sha256(path)
    index[str(path)] = {"stamp": stamp, "sha256": digest}
    try:
        _atomic_write_bytes(cache_dir() / _HASH_INDEX, json.dumps(index).encode())
    except OSError:  # an unwritable cache only costs re-hashing next time
        pass
    return digest


def cache_key(files: Iterable[Path], base: Path | None, options: Mapping[str, Any]) -> str:
    """A hex key over the content of ``files`` (named relative to ``base``) and ``options``."""
    entries = []
    for path in sorted(Path(p) for p in files):
        name = str(path.relative_to(base)) if base is not None else path.name
        entries.append([name, file_digest(path)])
    blob = json.dumps({"files": entries, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_path(name: str, key: str) -> Path:
    return cache_dir() / "processed" / name / f"{key[:24]}.pt"


def _pack(value: Any) -> Any:
    """Store large, mostly-zero float tensors (one-hot features) as sparse COO."""
    if (isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() == 2
            and value.numel() >= _SPARSE_MIN and int(value.count_nonzero()) < 0.1 * value.numel()):
        return value.to_sparse()
    return value


def _unpack(value: Any) -> Any:
    return value.to_dense() if isinstance(value, torch.Tensor) and value.is_sparse else value


def load_cached(name: str, key: str) -> dict[str, Any] | None:
    """Return the processed payload stored under ``(name, key)``, or ``None``."""
    path = _cache_path(name, key)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        return {k: _unpack(v) for k, v in payload.items()}
    except Exception as err:  # a truncated or foreign file is re-processed, not fatal
        warnings.warn(f"Ignoring unreadable cache file {path} ({err})", stacklevel=2)
        return None


def save_cached(name: str, key: str, payload: Mapping[str, Any]) -> Path | None:
    """Store ``payload`` (tensors and plain values only) under ``(name, key)``."""
    path = _cache_path(name, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            torch.save({k: _pack(v) for k, v in payload.items()}, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"Could not write the dataset cache at {path} ({err}); "
                      f"set $GRAPHMOE_CACHE to a writable folder", stacklevel=2)
        return None
    return path
