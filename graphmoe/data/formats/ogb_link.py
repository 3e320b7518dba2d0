"""Bridge to the ``ogb`` package for ``ogbl-*`` link property prediction datasets.

Like the node bridge (:mod:`graphmoe.data.formats.ogb`), the dataset folder may sit on a
read-only root: OGB processes a symlinked shadow copy in the cache, and graphmoe caches the
result. Datasets unknown to OGB's ``master.csv`` (e.g. written by
:func:`write_ogb_link_dataset`) are described by a ``meta_dict`` (the option, or
``<folder>/meta_dict.pt``).

The official split becomes the link-split attributes of :mod:`graphmoe.data.link`:
``train_pos_edge_index`` / ``val_pos_edge_index`` / ``val_neg_edge_index`` /
``test_pos_edge_index`` / ``test_neg_edge_index`` (``[2, *]``, one direction per pair) and
``edge_index``, OGB's message-passing graph (the training edges, both directions). Only the
``edge`` / ``edge_neg`` split layout (ogbl-ddi, ogbl-collab, ogbl-ppa, ogbl-vessel) is read;
the per-source layout of ogbl-citation2 and the KG sets (ogbl-wikikg2, ogbl-biokg) are not.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from .ogb import META_FILE, _quiet, _read_meta_file, _safe_load, _shadow, ogb_master_entry
from .seal import structural_features

__all__ = [
    "locate_ogb_link",
    "ogb_link_evaluator",
    "ogb_link_expected_files",
    "ogb_link_meta",
    "process_ogb_link",
    "write_ogb_link_dataset",
]


def ogb_link_meta(name: str, meta_dict: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """OGB meta information of ``name``: ``meta_dict`` if given, else OGB's ``master.csv``."""
    if meta_dict is not None:
        return dict(meta_dict)
    return ogb_master_entry(name, "linkproppred", "link")


def ogb_link_expected_files(meta: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(required, optional)`` files of an OGB link dataset, relative to its folder."""
    if str(meta.get("is hetero")) == "True":
        raise NotImplementedError("heterogeneous OGB link datasets (ogbl-biokg, ...) are not "
                                  "supported")
    extra = [name for key in ("additional node files", "additional edge files")
             if (names := str(meta.get(key, "None"))) != "None" for name in names.split(",")]
    if str(meta["binary"]) == "True":
        raw = ["raw/data.npz"]
    else:
        names = ["edge", "num-node-list", "num-edge-list", *extra]
        names += ["node-feat"] if str(meta["has_node_attr"]) == "True" else []
        names += ["edge-feat"] if str(meta["has_edge_attr"]) == "True" else []
        raw = [f"raw/{n}.csv.gz" for n in names]
    split = f"split/{meta['split']}"
    return (*raw, f"{split}/split_dict.pt|{split}/train.pt"), (f"{split}/valid.pt",
                                                               f"{split}/test.pt")


def locate_ogb_link(name: str, folder: Path, meta_dict: Mapping[str, Any] | None = None,
                    ) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    """Folder and ``(required, optional)`` files of ``name`` under ``folder``."""
    if meta_dict is not None and "dir_path" in meta_dict and not (folder / "raw").is_dir():
        folder = Path(meta_dict["dir_path"]).resolve()
    if meta_dict is None:
        meta_dict = _read_meta_file(folder)
    if meta_dict is None:
        try:
            meta = ogb_link_meta(name)
        except ValueError:  # unknown to ogb and no meta_dict.pt: that file is what is missing
            return folder, (META_FILE,), ()
    else:
        meta = dict(meta_dict)
    required, optional = ogb_link_expected_files(meta)
    return folder, required, optional


def _pairs(split: Mapping[str, Any], key: str, stage: str, name: str) -> Tensor:
    if key not in split:
        layout = sorted(split)
        raise NotImplementedError(
            f"{name}: the {stage!r} split has keys {layout}, not {key!r}; only the edge/edge_neg "
            f"layout (ogbl-ddi, ogbl-collab, ogbl-ppa) is supported")
    pairs = torch.as_tensor(np.asarray(split[key])).long()
    if pairs.dim() != 2 or pairs.size(1) != 2:
        raise ValueError(f"{name}: split[{stage!r}][{key!r}] must be [num_edges, 2], "
                         f"got {tuple(pairs.shape)}")
    return pairs.t().contiguous()


def process_ogb_link(folder: Path, required: list[Path], optional: list[Path | None], *,
                     name: str, meta_dict: Mapping[str, Any] | None = None,
                     features: str = "onehot", feature_dim: int = 64, feature_seed: int = 0,
                     ) -> Data:
    """Load an ``ogbl-*`` dataset with ``PygLinkPropPredDataset`` and its official split.

    ``features`` / ``feature_dim`` / ``feature_seed`` build node features for datasets without
    node attributes (ogbl-ddi), as for the SEAL sets (:func:`structural_features`).
    """
    from ogb.linkproppred import PygLinkPropPredDataset

    meta_dict = meta_dict if meta_dict is not None else _read_meta_file(folder)
    meta = ogb_link_meta(name, meta_dict)
    shadow = _shadow(folder)
    release = shadow / f"RELEASE_v{meta['version']}.txt"
    if not release.exists():  # OGB would otherwise ask on stdin whether to re-download
        release.write_text(f"# {name}\n")
    try:
        with _quiet(), _safe_load():
            if meta_dict is None:
                dataset = PygLinkPropPredDataset(name, root=str(shadow.parent))
            else:
                dataset = PygLinkPropPredDataset(name, meta_dict={**meta_dict,
                                                                  "dir_path": str(shadow)})
            graph, split = dataset[0], dataset.get_edge_split()
    finally:
        shutil.rmtree(shadow.parent, ignore_errors=True)
    num_nodes = int(graph.num_nodes)
    x = graph.get("x")
    if x is None:
        x = structural_features(num_nodes, features, feature_dim=feature_dim, seed=feature_seed)
    edge_index = to_undirected(graph.edge_index, num_nodes=num_nodes)
    data = Data(x=x.float(), edge_index=edge_index, num_nodes=num_nodes)
    data.train_pos_edge_index = _pairs(split["train"], "edge", "train", name)
    for stage, key in (("val", "valid"), ("test", "test")):
        data[f"{stage}_pos_edge_index"] = _pairs(split[key], "edge", key, name)
        data[f"{stage}_neg_edge_index"] = _pairs(split[key], "edge_neg", key, name)
    data.metric = str(meta["eval metric"])
    return data


def ogb_link_evaluator(name: str, meta_dict: Mapping[str, Any] | None = None) -> Any:
    """OGB's link ``Evaluator`` for ``name``; ``meta_dict`` covers datasets unknown to ogb."""
    from ogb.linkproppred import Evaluator

    if meta_dict is None:
        try:
            return Evaluator(name)
        except ValueError:  # ogb's message lists every dataset over many lines
            raise ValueError(f"ogb has no link evaluator for {name!r}; pass meta_dict=...") from None
    evaluator = Evaluator.__new__(Evaluator)  # Evaluator.__init__ only reads master.csv
    evaluator.name = name
    evaluator.eval_metric = str(meta_dict["eval metric"])
    if evaluator.eval_metric.startswith("hits@"):
        evaluator.K = int(evaluator.eval_metric.split("@")[1])
    return evaluator


def write_ogb_link_dataset(data: Data, name: str, root: str | os.PathLike[str], *,
                           eval_metric: str = "hits@20", split_name: str = "random",
                           version: int = 1, overwrite: bool = False) -> dict[str, Any]:
    r"""Write a link split ``data`` in OGB format with :class:`ogb.io.DatasetSaver`.

    ``data`` is a link split (:func:`graphmoe.data.link.random_link_split`): ``x``,
    ``edge_index`` (the training graph, both directions) and the ``{train,val,test}_pos`` /
    ``{val,test}_neg`` edge indices. The dataset lands in ``<root>/<name with _>/`` with a
    ``meta_dict.pt``, so that ``load_dataset(name, root)`` and
    ``PygLinkPropPredDataset(name, meta_dict=...)`` both read it.

    Returns:
        The OGB ``meta_dict`` (its ``dir_path`` points at the written folder).
    """
    from ogb.io import DatasetSaver

    if not name.startswith("ogbl-"):
        raise ValueError(f"name must start with 'ogbl-' for a link dataset, got {name!r}")
    target = Path(root).resolve() / name.replace("-", "_")
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)

    def pairs(key: str) -> np.ndarray:
        return data[key].t().numpy().astype(np.int64)

    split = {"train": {"edge": pairs("train_pos_edge_index")},
             "valid": {"edge": pairs("val_pos_edge_index"), "edge_neg": pairs("val_neg_edge_index")},
             "test": {"edge": pairs("test_pos_edge_index"), "edge_neg": pairs("test_neg_edge_index")}}
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, _quiet():
        saver = DatasetSaver(name, is_hetero=False, version=version, root=f"{tmp}/ogb")
        saver.save_graph_list([{
            "edge_index": data.edge_index.numpy(), "node_feat": data.x.float().numpy(),
            "edge_feat": None, "num_nodes": int(data.num_nodes)}])
        saver.save_split(split, split_name)
        mapping = Path(tmp) / "mapping"
        mapping.mkdir()
        (mapping / "README.md").write_text("Node i of this dataset is node i of the source.\n")
        saver.copy_mapping_dir(str(mapping))
        saver.save_task_info("link prediction", eval_metric)
        meta = saver.get_meta_dict()
        shutil.rmtree(Path(saver.dataset_dir) / "processed", ignore_errors=True)
        shutil.move(saver.dataset_dir, target)
    meta["dir_path"] = str(target)
    torch.save(meta, target / META_FILE)
    return meta
