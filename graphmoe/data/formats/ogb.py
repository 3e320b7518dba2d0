"""Bridge to the ``ogb`` package for ``ogbn-*`` node property prediction datasets.

OGB processes a dataset inside its own folder, which may sit on a read-only data
root. This bridge therefore builds a *shadow* folder in the cache whose entries
are symlinks to the original dataset folder (everything except ``processed/``),
lets :class:`ogb.nodeproppred.PygNodePropPredDataset` process it there and
deletes it afterwards (the resulting graph is cached by graphmoe).

Datasets outside OGB's ``master.csv`` (e.g. written by
:func:`write_ogb_node_dataset`) are described by a ``meta_dict``: passed as the
``meta_dict`` option, or read from ``<folder>/meta_dict.pt``.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import index_to_mask, to_undirected

from ..cache import cache_dir

__all__ = [
    "locate_ogb_node",
    "ogb_archive",
    "ogb_evaluator",
    "ogb_expected_files",
    "ogb_meta",
    "process_ogb_node",
    "write_ogb_node_dataset",
]

META_FILE = "meta_dict.pt"


@contextlib.contextmanager
def _safe_load() -> Iterator[None]:
    """Allow ``torch.load(weights_only=True)`` of OGB's processed PyG data and split dicts."""
    from torch_geometric.data.data import Data, DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import EdgeStorage, GlobalStorage, NodeStorage

    core = np._core if hasattr(np, "_core") else np.core
    dtypes = {type(np.dtype(t)) for t in (np.int64, np.int32, np.float32, np.float64, np.bool_)}
    allowed = [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage, NodeStorage, EdgeStorage,
               np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar,
               *dtypes]
    with torch.serialization.safe_globals(allowed):
        yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ogb's prints and progress bars (graphmoe caches the result anyway)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def ogb_master_entry(name: str, package: str, kind: str) -> dict[str, Any]:
    """The column of ``name`` in ``ogb.<package>``'s ``master.csv`` (``kind``: for the error)."""
    import importlib

    import pandas as pd

    module = importlib.import_module(f"ogb.{package}")
    master = pd.read_csv(Path(module.__file__).parent / "master.csv", index_col=0,
                         keep_default_na=False)
    if name not in master:
        raise ValueError(f"{name!r} is not an OGB {kind} dataset known to ogb "
                         f"({', '.join(master.keys())}); pass meta_dict=... for your own")
    return dict(master[name])


def ogb_meta(name: str, meta_dict: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """OGB meta information of ``name``: ``meta_dict`` if given, else OGB's ``master.csv``."""
    if meta_dict is not None:
        return dict(meta_dict)
    return ogb_master_entry(name, "nodeproppred", "node")


def ogb_archive(name: str, package: str, kind: str, meta_dict: Mapping[str, Any] | None = None,
                ) -> tuple[str, str] | None:
    """``(url, folder inside the zip)`` of an OGB dataset's official archive, or ``None``.

    The meta information comes from ``meta_dict`` (its ``url`` and ``download_name``) or from
    ``ogb.<package>``'s ``master.csv``; a dataset unknown to both has no archive.
    """
    if meta_dict is None:
        try:
            meta_dict = ogb_master_entry(name, package, kind)
        except ValueError:
            return None
    url, member = meta_dict.get("url"), meta_dict.get("download_name")
    return (str(url), str(member)) if url and member else None


def ogb_expected_files(meta: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(required, optional)`` files of an OGB node dataset, relative to its folder."""
    if str(meta.get("is hetero")) == "True":
        raise NotImplementedError("heterogeneous OGB node datasets are not supported yet")
    extra = [name for key in ("additional node files", "additional edge files")
             if (names := str(meta.get(key, "None"))) != "None" for name in names.split(",")]
    if str(meta["binary"]) == "True":
        raw = ["raw/data.npz", "raw/node-label.npz"]
    else:
        names = ["edge", "num-node-list", "num-edge-list", "node-label", *extra]
        names += ["node-feat"] if str(meta["has_node_attr"]) == "True" else []
        names += ["edge-feat"] if str(meta["has_edge_attr"]) == "True" else []
        raw = [f"raw/{n}.csv.gz" for n in names]
    split = f"split/{meta['split']}"
    required = (*raw, f"{split}/split_dict.pt|{split}/train.csv.gz")
    return required, (f"{split}/valid.csv.gz", f"{split}/test.csv.gz")


def _read_meta_file(folder: Path) -> dict[str, Any] | None:
    path = folder / META_FILE
    return dict(torch.load(path, weights_only=True)) if path.is_file() else None


def locate_ogb_node(name: str, folder: Path, meta_dict: Mapping[str, Any] | None = None,
                    ) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    """Folder and ``(required, optional)`` files of ``name`` under ``folder``."""
    if meta_dict is not None and "dir_path" in meta_dict and not (folder / "raw").is_dir():
        folder = Path(meta_dict["dir_path"]).resolve()
    if meta_dict is None:
        meta_dict = _read_meta_file(folder)
    if meta_dict is None:
        try:
            meta = ogb_meta(name)
        except ValueError:  # unknown to ogb and no meta_dict.pt: the meta file is what is missing
            return folder, (META_FILE,), ()
    else:
        meta = dict(meta_dict)
    required, optional = ogb_expected_files(meta)
    return folder, required, optional


def _shadow(folder: Path) -> Path:
    """A cache folder mirroring ``folder`` with symlinks, without ``processed/``."""
    base = cache_dir() / "ogb"
    base.mkdir(parents=True, exist_ok=True)
    shadow = Path(tempfile.mkdtemp(dir=base)) / folder.name
    shadow.mkdir()
    for entry in folder.iterdir():
        if entry.name != "processed":
            os.symlink(entry, shadow / entry.name)
    return shadow


def _to_data(graph: Data, split: Mapping[str, torch.Tensor], undirected: bool) -> Data:
    num_nodes = int(graph.num_nodes)
    y = graph.y
    if y.dim() == 2 and y.size(1) > 1:
        raise NotImplementedError("multi-task OGB node datasets are not supported yet")
    y = y.view(-1)
    if y.is_floating_point():  # unlabelled nodes are NaN (e.g. ogbn-papers100M)
        y = torch.nan_to_num(y, nan=-1.0).long()
    edge_index = graph.edge_index
    if undirected:
        edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    masks = {k: index_to_mask(torch.as_tensor(split[s]).long(), num_nodes)
             for k, s in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test"))}
    return Data(x=graph.x.float(), y=y, edge_index=edge_index, **masks)


def process_ogb_node(folder: Path, required: list[Path], optional: list[Path | None], *,
                     name: str, meta_dict: Mapping[str, Any] | None = None,
                     undirected: bool = False) -> Data:
    """Load an ``ogbn-*`` dataset with ``PygNodePropPredDataset`` and its official split."""
    from ogb.nodeproppred import PygNodePropPredDataset

    meta_dict = meta_dict if meta_dict is not None else _read_meta_file(folder)
    meta = ogb_meta(name, meta_dict)
    shadow = _shadow(folder)
    release = shadow / f"RELEASE_v{meta['version']}.txt"
    if not release.exists():  # OGB would otherwise ask on stdin whether to re-download
        release.write_text(f"# {name}\n")
    try:
        with _quiet(), _safe_load():
            if meta_dict is None:
                dataset = PygNodePropPredDataset(name, root=str(shadow.parent))
            else:
                meta_dict = {**meta_dict, "dir_path": str(shadow)}
                dataset = PygNodePropPredDataset(name, meta_dict=meta_dict)
            graph, split = dataset[0], dataset.get_idx_split()
    finally:
        shutil.rmtree(shadow.parent, ignore_errors=True)
    data = _to_data(graph, split, undirected)
    data.metric = str(meta["eval metric"])
    data.num_classes = int(meta["num classes"])
    return data


def ogb_evaluator(name: str, meta_dict: Mapping[str, Any] | None = None) -> Any:
    """OGB's node-level ``Evaluator`` for ``name``; ``meta_dict`` covers datasets unknown to ogb."""
    from ogb.nodeproppred import Evaluator

    if meta_dict is None:
        return Evaluator(name)
    evaluator = Evaluator.__new__(Evaluator)  # Evaluator.__init__ only reads master.csv
    evaluator.name = name
    evaluator.num_tasks = int(meta_dict["num tasks"])
    evaluator.eval_metric = str(meta_dict["eval metric"])
    return evaluator


def write_ogb_node_dataset(data: Data, name: str, root: str | os.PathLike[str], *,
                           eval_metric: str = "acc", split_name: str = "public",
                           version: int = 1, overwrite: bool = False) -> dict[str, Any]:
    r"""Write a node classification ``data`` in OGB format with :class:`ogb.io.DatasetSaver`.

    The dataset lands in ``<root>/<name with _>/`` (``raw/``, ``split/<split_name>/``,
    ``mapping/``, ``RELEASE_v<version>.txt`` and ``meta_dict.pt``), so that
    ``load_dataset(name, root)`` and ``PygNodePropPredDataset(name, meta_dict=...)``
    both read it. ``data`` needs ``x``, ``y`` and ``train_mask``/``val_mask``/``test_mask``.

    Returns:
        The OGB ``meta_dict`` (its ``dir_path`` points at the written folder).
    """
    from ogb.io import DatasetSaver

    if not name.startswith("ogbn-"):
        raise ValueError(f"name must start with 'ogbn-' for a node dataset, got {name!r}")
    target = Path(root).resolve() / name.replace("-", "_")
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    num_classes = int(data.y.max()) + 1
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, _quiet():
        saver = DatasetSaver(name, is_hetero=False, version=version, root=f"{tmp}/ogb")
        saver.save_graph_list([{
            "edge_index": data.edge_index.numpy(), "node_feat": data.x.float().numpy(),
            "edge_feat": None, "num_nodes": int(data.num_nodes)}])
        saver.save_target_labels(data.y.view(-1, 1).numpy())
        saver.save_split({k: getattr(data, f"{m}_mask").nonzero().view(-1).numpy()
                          for k, m in (("train", "train"), ("valid", "val"), ("test", "test"))},
                         split_name)
        mapping = Path(tmp) / "mapping"
        mapping.mkdir()
        (mapping / "README.md").write_text("Node i of this dataset is node i of the source.\n")
        saver.copy_mapping_dir(str(mapping))
        saver.save_task_info("multiclass classification", eval_metric, num_classes=num_classes)
        meta = saver.get_meta_dict()
        shutil.rmtree(Path(saver.dataset_dir) / "processed", ignore_errors=True)
        shutil.move(saver.dataset_dir, target)
    meta["dir_path"] = str(target)
    torch.save(meta, target / META_FILE)
    return meta
