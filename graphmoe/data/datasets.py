"""``load_dataset`` and ``list_datasets``: the public entry points of the data layer."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from .cache import DatasetNotFoundError, cache_key, load_cached, resolve_root, save_cached
from .formats import FORMATS, Format
from .info import DatasetInfo
from .registry import get_dataset_info, registered_datasets
from .splits import SPLIT_OPTIONS, random_split, select_split
from .validate import validate_graph

__all__ = ["dataset_files", "list_datasets", "load_dataset"]

#: Bump to invalidate every cached graph after a change in a loader's output.
PROCESSING_VERSION = 1

PathLike = str | os.PathLike[str]


def _locate(info: DatasetInfo, fmt: Format, root: Path, options: Mapping[str, Any],
            ) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    folder = root / info.folder if info.folder else root
    if fmt.locate is not None:
        return fmt.locate(info.name, folder, options)
    return folder, info.files, info.optional_files


def _first_present(folder: Path, entry: str) -> Path | None:
    for alternative in entry.split("|"):
        if (folder / alternative).is_file():
            return folder / alternative
    return None


def dataset_files(name: str, root: PathLike | None = None, **options: Any,
                  ) -> tuple[Path, list[Path | None], list[Path | None]]:
    """``(folder, required, optional)`` paths of ``name``; ``None`` marks a missing file."""
    info = get_dataset_info(name)
    fmt = FORMATS[info.format]
    folder, required, optional = _locate(info, fmt, resolve_root(root), options)
    return (folder, [_first_present(folder, e) for e in required],
            [_first_present(folder, e) for e in optional])


def _missing_error(info: DatasetInfo, folder: Path, required: tuple[str, ...],
                   present: list[Path | None]) -> DatasetNotFoundError:
    missing = [e.replace("|", " (or ") + (")" if "|" in e else "")
               for e, p in zip(required, present) if p is None]
    source = f" (source: {info.source})" if info.source else ""
    return DatasetNotFoundError(
        f"Dataset {info.name!r} is not on disk and graphmoe does not download while offline: "
        f"put {', '.join(missing)} into {folder}{source}; the data root is chosen by root=..., "
        f"$GRAPHMOE_DATA or ./datasets (see datasets/README.md for the layout).")


def _split_user_options(info: DatasetInfo, fmt: Format, options: Mapping[str, Any],
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    split_keys = () if fmt.seeded else tuple(SPLIT_OPTIONS)
    unknown = [k for k in options if k not in fmt.options and k not in split_keys]
    if unknown:
        valid = sorted({*fmt.options, *split_keys})
        raise TypeError(f"load_dataset() got unexpected option(s) {', '.join(map(repr, unknown))} "
                        f"for dataset {info.name!r}; valid options: {', '.join(valid) or 'none'}")
    processing = {k: v for k, v in options.items() if k in fmt.options}
    split_opts = {**SPLIT_OPTIONS, **{k: v for k, v in options.items() if k in split_keys}}
    return processing, split_opts


def _process(info: DatasetInfo, fmt: Format, root: Path, processing: dict[str, Any], *,
             seed: int, split: int, force_reload: bool) -> Data:
    kwargs = {**fmt.options, **info.params, **processing}
    folder, required, optional = _locate(info, fmt, root, processing)
    req = [_first_present(folder, e) for e in required]
    if any(p is None for p in req):
        raise _missing_error(info, folder, required, req)
    opt = [_first_present(folder, e) for e in optional]
    if fmt.seeded:
        return fmt.process(folder, req, opt, seed=seed, split=split, **kwargs)
    files = [p for p in (*req, *opt) if p is not None]
    key = cache_key(files, folder, {"format": info.format, "version": PROCESSING_VERSION,
                                    "name": info.name, "kwargs": kwargs})
    payload = None if (force_reload or not fmt.cached) else load_cached(info.name, key)
    if payload is not None:
        return Data(**payload)
    data = fmt.process(folder, req, opt, **kwargs)
    if fmt.cached:
        save_cached(info.name, key, data.to_dict())
    return data


def _choose_split(data: Data, info: DatasetInfo, fmt: Format, split_opts: dict[str, Any],
                  seed: int, split: int) -> None:
    scheme = split_opts.pop("split_scheme")
    if fmt.seeded:
        return
    if scheme is None and data.get("train_mask") is not None:
        masks = select_split(data.train_mask, data.val_mask, data.test_mask, split, info.name)
    else:
        scheme = scheme or (info.split if info.split != "provided" else "ratio")
        masks = random_split(data.y, scheme, seed=seed, split=split, **split_opts)
    data.train_mask, data.val_mask, data.test_mask = masks


def _finish(data: Data, info: DatasetInfo) -> Data:
    data.x = data.x.to(torch.float32).contiguous()
    data.y = data.y.to(torch.long)
    data.edge_index = data.edge_index.to(torch.long)
    data.name = info.name
    num_classes = data.get("num_classes") or info.num_classes
    data.num_classes = int(num_classes if num_classes else int(data.y.max()) + 1)
    data.metric = str(data.get("metric") or info.metric)
    return validate_graph(data)


def load_dataset(name: str, root: PathLike | None = None, *, split: int = 0, seed: int = 0,
                 force_reload: bool = False, **options: Any) -> Data:
    r"""Load a registered node classification dataset as a PyG ``Data``.

    Args:
        name (str): Dataset name or alias, case-insensitive (``list_datasets()``).
        root (str or PathLike, optional): Data root; default ``$GRAPHMOE_DATA``,
            else ``./datasets``. Never written to (it may be read-only).
        split (int): Which split: index of a provided split (e.g. ``0..9``), or of
            the seeded random split for datasets without provided splits.
        seed (int): Seed of random splits (and of synthetic graphs).
        force_reload (bool): Re-process the raw files even if cached.
        **options: Format options (e.g. ``undirected``; ``csbm`` parameters;
            ``meta_dict`` for OGB) and split options ``split_scheme``
            (``"per_class"`` or ``"ratio"`` forces a random split),
            ``train_per_class``, ``val_per_class``, ``train_ratio``, ``val_ratio``.

    Returns:
        ``Data`` with ``x`` (float32), ``y`` (long; ``-1`` = unlabelled),
        ``edge_index``, bool ``train_mask``/``val_mask``/``test_mask`` of the chosen
        split, and ``name``, ``num_classes``, ``metric`` (``"acc"``/``"rocauc"``).

    Raises:
        ValueError: unknown name (close names are listed), bad split, invalid graph.
        TypeError: unknown option.
        DatasetNotFoundError: (a ``FileNotFoundError``) raw files are missing.
    """
    info = get_dataset_info(name)
    if info.task != "node":
        raise NotImplementedError(f"{info.name!r} is a {info.task!r} dataset; only node "
                                  f"datasets load through load_dataset() so far")
    if not isinstance(split, int) or not isinstance(seed, int):
        raise TypeError(f"split and seed must be integers, got split={split!r}, seed={seed!r}")
    if split < 0:
        raise ValueError(f"split must be a non-negative index, got {split}")
    fmt = FORMATS[info.format]
    processing, split_opts = _split_user_options(info, fmt, options)
    data = _process(info, fmt, resolve_root(root), processing, seed=seed, split=split,
                    force_reload=force_reload)
    _choose_split(data, info, fmt, split_opts, seed, split)
    return _finish(data, info)


def _size(paths: list[Path | None]) -> int:
    return sum(p.stat().st_size for p in paths if p is not None)


def list_datasets(root: PathLike | None = None) -> list[dict[str, Any]]:
    """One dict per registered dataset: ``name``, ``task``, ``folder``, ``present``,
    ``size_bytes`` (of the files found), plus ``metric``, ``aliases`` and ``description``."""
    root = resolve_root(root)
    rows = []
    for info in registered_datasets():
        fmt = FORMATS[info.format]
        folder, required, optional = _locate(info, fmt, root, {})
        req = [_first_present(folder, e) for e in required]
        opt = [_first_present(folder, e) for e in optional]
        rows.append({
            "name": info.name, "task": info.task, "folder": info.folder,
            "present": all(p is not None for p in req), "size_bytes": _size(req + opt),
            "metric": info.metric, "aliases": list(info.aliases),
            "description": info.description,
        })
    return rows
