"""One loader per raw file *format*; :data:`FORMATS` maps a format key to it.

A loader is a function ``process(folder, required, optional, **kwargs) -> Data``:
``folder`` is the dataset folder, ``required``/``optional`` are the resolved paths
of :attr:`DatasetInfo.files` / :attr:`DatasetInfo.optional_files` (``None`` for an
absent optional file), and ``kwargs`` are the format's options
(:attr:`Format.options`, updated by :attr:`DatasetInfo.params` and by the user).
It returns a ``Data`` with ``x``, ``y``, ``edge_index`` and, where the dataset
ships splits, ``train_mask``/``val_mask``/``test_mask`` of shape ``[N]`` or
``[N, num_splits]``. It may also set ``metric`` and ``num_classes``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch_geometric.data import Data

from ..synthetic import csbm
from .geom_gcn import process_geom_gcn
from .heterophilous import process_heterophilous_npz
from .linkx import process_fb100, process_twitch
from .moleculenet import process_moleculenet
from .npz import process_npz
from .ogb import (
    locate_ogb_node,
    ogb_archive,
    ogb_evaluator,
    process_ogb_node,
    write_ogb_node_dataset,
)
from .ogb_link import locate_ogb_link, process_ogb_link
from .planetoid import process_planetoid
from .seal import process_seal_mat

__all__ = ["FORMATS", "Format", "ogb_evaluator", "register_format", "write_ogb_node_dataset"]

Locate = Callable[[str, Path, Mapping[str, Any]], tuple[Path, tuple[str, ...], tuple[str, ...]]]
Archive = Callable[[str, Mapping[str, Any]], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Format:
    """How to read one raw format.

    Args:
        process: The loader (see the module docstring).
        options: User-facing processing options and their defaults; they are part
            of the cache key.
        locate: Optional ``(name, folder, options) -> (folder, required, optional)``
            for formats whose files are only known at load time (OGB).
        archive: Optional ``(name, options) -> (url, member) | None``: a zip holding the
            whole dataset folder as ``member/`` (OGB), fetched when files are missing
            and no per-file URL (:attr:`DatasetInfo.urls`) covers them.
        cached: Whether processed graphs are stored in the cache.
        seeded: Whether ``process`` takes ``seed``/``split`` and returns the chosen
            masks itself (synthetic data).
    """

    process: Callable[..., Data]
    options: Mapping[str, Any] = field(default_factory=dict)
    locate: Locate | None = None
    archive: Archive | None = None
    cached: bool = True
    seeded: bool = False


def _locate_ogb(name: str, folder: Path, options: Mapping[str, Any],
                ) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    return locate_ogb_node(name, folder, options.get("meta_dict"))


def _locate_ogb_link(name: str, folder: Path, options: Mapping[str, Any],
                     ) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    return locate_ogb_link(name, folder, options.get("meta_dict"))


def _archive_ogb(name: str, options: Mapping[str, Any]) -> tuple[str, str] | None:
    return ogb_archive(name, "nodeproppred", "node", options.get("meta_dict"))


def _archive_ogb_link(name: str, options: Mapping[str, Any]) -> tuple[str, str] | None:
    return ogb_archive(name, "linkproppred", "link", options.get("meta_dict"))


_STRUCTURAL = {"features": "onehot", "feature_dim": 64, "feature_seed": 0}


def _process_csbm(folder: Path, required: list[Path], optional: list[Path | None],
                  **kwargs: Any) -> Data:
    return csbm(**kwargs)


_CSBM_OPTIONS = {
    "num_nodes": 3000, "num_classes": 5, "num_features": 32, "avg_degree": 10.0,
    # Features weak in the homophilous region and strong in the heterophilous one, whose other
    # ends are of any other class: a GNN wins in the first region, an MLP in the second, and a
    # mixture of the two (Mowst) can tell the regions apart by the MLP's confidence.
    "homophily": (0.8, 0.2), "region_sizes": None, "signal": (1.0, 3.0), "cross_fraction": 0.02,
    "pattern": "uniform",
    "train_ratio": 0.5, "val_ratio": 0.25,
}

FORMATS: dict[str, Format] = {
    "planetoid": Format(process_planetoid),
    "npz": Format(process_npz, {"undirected": True}),
    "heterophilous_npz": Format(process_heterophilous_npz, {"undirected": True}),
    "geom_gcn": Format(process_geom_gcn, {"undirected": False}),
    "linkx_fb100": Format(process_fb100, {"undirected": True}),
    "linkx_twitch": Format(process_twitch, {"undirected": True}),
    "ogb_node": Format(process_ogb_node, {"undirected": False, "meta_dict": None},
                       locate=_locate_ogb, archive=_archive_ogb),
    "csbm": Format(_process_csbm, _CSBM_OPTIONS, cached=False, seeded=True),
    # link prediction (task="link"; see graphmoe.data.link)
    "seal_mat": Format(process_seal_mat, _STRUCTURAL),
    "ogb_link": Format(process_ogb_link, {"meta_dict": None, **_STRUCTURAL},
                       locate=_locate_ogb_link, archive=_archive_ogb_link),
    # graph-level (task="graph"; a packed Data, see graphmoe.data.graphs)
    "moleculenet": Format(process_moleculenet, {"targets": None, "include_chirality": True}),
}


def register_format(name: str, fmt: Format, *, overwrite: bool = False) -> None:
    """Add a raw format under ``name`` (for datasets registered by users)."""
    if name in FORMATS and not overwrite:
        raise ValueError(f"format {name!r} is already registered; pass overwrite=True")
    FORMATS[name] = fmt
