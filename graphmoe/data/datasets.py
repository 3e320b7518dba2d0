"""``load_dataset`` and ``list_datasets``: the public entry points of the data layer."""
from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from . import download as _download
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


def _resolve(info: DatasetInfo, fmt: Format, root: Path, options: Mapping[str, Any],
             ) -> tuple[Path, tuple[str, ...], tuple[str, ...], list[Path | None],
                        list[Path | None]]:
    """``_locate`` plus the present files: the data root's folder, or the download folder
    (``<cache>/downloads``) when only that one holds every required file."""
    folder, required, optional = _locate(info, fmt, root, options)
    req = [_first_present(folder, e) for e in required]
    if (info.urls or fmt.archive) and any(p is None for p in req):
        mirror, m_required, m_optional = _locate(info, fmt, _download.download_root(), options)
        m_req = [_first_present(mirror, e) for e in m_required]
        if all(p is not None for p in m_req):
            return (mirror, m_required, m_optional, m_req,
                    [_first_present(mirror, e) for e in m_optional])
    return folder, required, optional, req, [_first_present(folder, e) for e in optional]


def dataset_files(name: str, root: PathLike | None = None, **options: Any,
                  ) -> tuple[Path, list[Path | None], list[Path | None]]:
    """``(folder, required, optional)`` paths of ``name``; ``None`` marks a missing file."""
    info = get_dataset_info(name)
    fmt = FORMATS[info.format]
    folder, _, _, req, opt = _resolve(info, fmt, resolve_root(root), options)
    return folder, req, opt


_OFFLINE = "graphmoe does not download while offline (download=False or $GRAPHMOE_OFFLINE set)"


def _missing_error(info: DatasetInfo, folder: Path, required: tuple[str, ...],
                   present: list[Path | None], why: str = _OFFLINE, failure: str = "",
                   ) -> DatasetNotFoundError:
    missing = [e.replace("|", " (or ") + (")" if "|" in e else "")
               for e, p in zip(required, present) if p is None]
    source = f" (source: {info.source})" if info.source else ""
    failure = f"; the download failed: {failure}" if failure else ""
    return DatasetNotFoundError(
        f"Dataset {info.name!r} is not on disk and {why}: "
        f"put {', '.join(missing)} into {folder}{source}; the data root is chosen by root=..., "
        f"$GRAPHMOE_DATA or ./datasets (see datasets/README.md for the layout){failure}.")


def _url_of(info: DatasetInfo, entry: str) -> tuple[str, str] | None:
    """``(file, url)`` of the downloadable alternative of ``entry``, or ``None``."""
    return next(((a, info.urls[a]) for a in entry.split("|") if a in info.urls), None)


def _copy_into(path: Path, folder: Path, target: Path) -> None:
    dest = target / path.relative_to(folder)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)


def _download_target(info: DatasetInfo, fmt: Format, options: Mapping[str, Any],
                     folder: Path) -> Path:
    """``folder`` when writable, else the same dataset folder under ``<cache>/downloads``."""
    if _download.is_writable(folder):
        return folder
    return _locate(info, fmt, _download.download_root(), options)[0]


def _fetch_archive(info: DatasetInfo, fmt: Format, options: Mapping[str, Any], folder: Path,
                   required: tuple[str, ...], present: list[Path | None],
                   archive: tuple[str, str], download: bool) -> Path:
    """Fetch a dataset published as one zip (:attr:`Format.archive`); return its folder."""
    if not download or _download.offline():
        raise _missing_error(info, folder, required, present)
    url, member = archive
    target = _download_target(info, fmt, options, folder)
    try:
        _download.download_archive(url, member, target)
    except _download.DOWNLOAD_ERRORS as err:
        raise _missing_error(info, folder, required, present, "could not be downloaded",
                             _download.describe_failure(url, err)) from err
    still_missing = [e for e in required if _first_present(target, e) is None]
    if still_missing:
        raise _missing_error(info, folder, required, present, "could not be downloaded",
                             f"{url} lacks {', '.join(still_missing)}")
    return target


def _fetch(info: DatasetInfo, fmt: Format, root: Path, options: Mapping[str, Any],
           folder: Path, required: tuple[str, ...], optional: tuple[str, ...],
           present: list[Path | None], download: bool) -> Path:
    """Download the missing raw files of ``info``; return the folder that then holds them all.

    Files go into ``folder`` (under the data root) when it is writable, else into the same
    layout under ``<cache>/downloads``, next to copies of the files the read-only root has.
    Missing optional files with a URL are fetched too (a failure there only warns).
    """
    archive = fmt.archive(info.name, options) if fmt.archive and not info.urls else None
    if archive is not None:
        return _fetch_archive(info, fmt, options, folder, required, present, archive, download)
    urls = [_url_of(info, e) for e in required]
    if any(p is None and u is None for p, u in zip(present, urls)):
        raise _missing_error(info, folder, required, present, "graphmoe has no download URL for it")
    if not download or _download.offline():
        raise _missing_error(info, folder, required, present)
    target = _download_target(info, fmt, options, folder)
    for entry, path, url in zip(required, present, urls):
        if _first_present(target, entry) is not None:
            continue
        try:
            if path is not None:  # in the read-only root: copy it beside the downloads
                _copy_into(path, folder, target)
            else:
                _download.download_file(url[1], target / url[0])
        except _download.DOWNLOAD_ERRORS as err:
            reason = _download.describe_failure(url[1] if path is None else str(path), err)
            raise _missing_error(info, folder, required, present, "could not be downloaded",
                                 reason) from err
    for entry in optional:
        path, url = _first_present(folder, entry), _url_of(info, entry)
        if _first_present(target, entry) is not None or (path is None and url is None):
            continue
        try:
            if path is not None:
                _copy_into(path, folder, target)
            else:
                _download.download_file(url[1], target / url[0])
        except _download.DOWNLOAD_ERRORS as err:
            warnings.warn(f"Could not fetch the optional file {entry} of {info.name!r} "
                          f"({_download.describe_failure(url[1] if url else entry, err)}); "
                          f"loading without it", stacklevel=3)
    return target


def _split_user_options(info: DatasetInfo, fmt: Format, options: Mapping[str, Any],
                        split_defaults: Mapping[str, Any] = SPLIT_OPTIONS,
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    split_keys = () if fmt.seeded else tuple(split_defaults)
    unknown = [k for k in options if k not in fmt.options and k not in split_keys]
    if unknown:
        valid = sorted({*fmt.options, *split_keys})
        raise TypeError(f"load_dataset() got unexpected option(s) {', '.join(map(repr, unknown))} "
                        f"for dataset {info.name!r}; valid options: {', '.join(valid) or 'none'}")
    processing = {k: v for k, v in options.items() if k in fmt.options}
    split_opts = {**split_defaults, **{k: v for k, v in options.items() if k in split_keys}}
    return processing, split_opts


def _process(info: DatasetInfo, fmt: Format, root: Path, processing: dict[str, Any], *,
             seed: int, split: int, force_reload: bool, download: bool = True) -> Data:
    kwargs = {**fmt.options, **info.params, **processing}
    folder, required, optional, req, opt = _resolve(info, fmt, root, processing)
    if any(p is None for p in req):
        folder = _fetch(info, fmt, root, processing, folder, required, optional, req, download)
        req = [_first_present(folder, e) for e in required]
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
                 force_reload: bool = False, download: bool = True, **options: Any) -> Any:
    r"""Load a registered node classification dataset as a PyG ``Data``.

    A ``task="link"`` dataset (SEAL networks, ``ogbl-*``) returns its link split instead:
    :func:`graphmoe.data.link.load_link_dataset` (options ``val_ratio``, ``test_ratio``,
    ``neg_ratio`` and the format's ``features``). A ``task="graph"`` dataset (MoleculeNet:
    ``bbbp``, ``esol``, ...) returns a :class:`graphmoe.data.graphs.GraphDataset` with
    ``split_idx``, ``num_tasks``, ``task_type`` and ``metric`` (``"rocauc"``/``"rmse"``);
    options ``targets`` (label columns), ``split_scheme`` (``"scaffold"``, default, or
    ``"random"``: split ``split`` of ``seed``), ``frac_train`` (0.8), ``frac_valid`` (0.1).

    Args:
        name (str): Dataset name or alias, case-insensitive (``list_datasets()``).
        root (str or PathLike, optional): Data root; default ``$GRAPHMOE_DATA``,
            else ``./datasets``. It may be read-only; only downloads are written there.
        split (int): Which split: index of a provided split (e.g. ``0..9``), or of
            the seeded random split for datasets without provided splits.
        seed (int): Seed of random splits (and of synthetic graphs).
        force_reload (bool): Re-process the raw files even if cached.
        download (bool): Fetch missing raw files from the catalog's URLs
            (:attr:`DatasetInfo.urls`) into the dataset folder, or into
            ``<cache>/downloads`` when the root is read-only. ``$GRAPHMOE_OFFLINE=1``
            turns downloading off, as ``download=False`` does.
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
        DatasetNotFoundError: (a ``FileNotFoundError``) raw files are missing and
            cannot be downloaded (offline, no URL, or the download failed: the reason).
    """
    info = get_dataset_info(name)
    if info.task == "link":  # a seeded edge split (graphmoe.data.link)
        from .link import load_link_dataset

        return load_link_dataset(name, root, split=split, seed=seed, force_reload=force_reload,
                                 **options)
    if info.task == "graph":  # many small graphs: a GraphDataset with its split
        return _load_graph_dataset(info, root, split=split, seed=seed, force_reload=force_reload,
                                   download=download, options=options)
    if info.task != "node":
        raise NotImplementedError(f"{info.name!r} is a {info.task!r} dataset; only node, link "
                                  f"and graph datasets load through load_dataset() so far")
    if not isinstance(split, int) or not isinstance(seed, int):
        raise TypeError(f"split and seed must be integers, got split={split!r}, seed={seed!r}")
    if split < 0:
        raise ValueError(f"split must be a non-negative index, got {split}")
    fmt = FORMATS[info.format]
    processing, split_opts = _split_user_options(info, fmt, options)
    data = _process(info, fmt, resolve_root(root), processing, seed=seed, split=split,
                    force_reload=force_reload, download=download)
    _choose_split(data, info, fmt, split_opts, seed, split)
    return _finish(data, info)


#: Split options of graph-level datasets (``load_dataset(..., split_scheme="random")``).
GRAPH_SPLIT_OPTIONS = {"split_scheme": "scaffold", "frac_train": 0.8, "frac_valid": 0.1}


def _load_graph_dataset(info: DatasetInfo, root: PathLike | None, *, split: int, seed: int,
                        force_reload: bool, download: bool, options: Mapping[str, Any]) -> Any:
    """A ``task="graph"`` dataset as a :class:`~graphmoe.data.graphs.GraphDataset`: processed once
    into a packed ``Data`` (cached like node graphs), validated, unpacked, split."""
    from .graphs import GraphDataset, unpack_graphs, validate_graph_dataset
    from .scaffold import graph_split

    if not isinstance(split, int) or not isinstance(seed, int) or split < 0:
        raise ValueError(f"split and seed must be integers (split >= 0), got split={split!r}, "
                         f"seed={seed!r}")
    fmt = FORMATS[info.format]
    processing, split_opts = _split_user_options(info, fmt, options, GRAPH_SPLIT_OPTIONS)
    packed = _process(info, fmt, resolve_root(root), processing, seed=seed, split=split,
                      force_reload=force_reload, download=download)
    validate_graph_dataset(packed, info.name)
    scheme = split_opts.pop("split_scheme")
    split_idx = graph_split(scheme, packed.scaffold, seed=seed, split=split, **split_opts)
    info_attrs = {key: packed.get(key) for key in (
        "smiles", "scaffold", "targets", "num_rows", "num_invalid", "invalid_rows")}
    info_attrs["split_scheme"] = scheme
    return GraphDataset(unpack_graphs(packed), info.name, str(packed.task_type), split_idx,
                        metric=str(packed.get("metric") or info.metric), info=info_attrs)


def _size(paths: list[Path | None]) -> int:
    return sum(p.stat().st_size for p in paths if p is not None)


def list_datasets(root: PathLike | None = None) -> list[dict[str, Any]]:
    """One dict per registered dataset: ``name``, ``task``, ``folder``, ``present``,
    ``size_bytes`` (of the files found), plus ``metric``, ``aliases`` and ``description``."""
    root = resolve_root(root)
    rows = []
    for info in registered_datasets():
        fmt = FORMATS[info.format]
        _, _, _, req, opt = _resolve(info, fmt, root, {})
        rows.append({
            "name": info.name, "task": info.task, "folder": info.folder,
            "present": all(p is not None for p in req), "size_bytes": _size(req + opt),
            "metric": info.metric, "aliases": list(info.aliases),
            "description": info.description,
        })
    return rows
