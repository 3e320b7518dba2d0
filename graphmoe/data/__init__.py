"""graphmoe.data: dataset registry, raw-format loaders, OGB bridge, synthetic CSBM.

>>> from graphmoe.data import load_dataset
>>> data = load_dataset("cora")                      # Planetoid public split
>>> data = load_dataset("minesweeper", split=3)      # provided split 3 of 10
>>> data = load_dataset("amazon-photo", seed=1)      # seeded random split
>>> data = load_dataset("csbm", homophily=(0.9, 0.1))  # synthetic, no files needed
"""
from __future__ import annotations

import importlib
from typing import Any

from .cache import DatasetNotFoundError, cache_dir, file_digest, resolve_root
from .catalog import CATALOG
from .datasets import dataset_files, list_datasets, load_dataset
from .formats import FORMATS, Format, ogb_evaluator, register_format, write_ogb_node_dataset
from .graphs import GraphDataset
from .info import DatasetInfo, normalize_name
from .registry import get_dataset_info, register_dataset, registered_datasets
from .splits import per_class_split, random_split, ratio_split
from .synthetic import csbm, region_homophily
from .validate import validate_graph

__all__ = [
    "CATALOG",
    "CSRNeighborSampler",
    "FORMATS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "Format",
    "GraphDataset",
    "NeighborSampler",
    "cache_dir",
    "csbm",
    "dataset_files",
    "file_digest",
    "get_dataset_info",
    "list_datasets",
    "load_dataset",
    "neighbor_loader",
    "normalize_name",
    "ogb_evaluator",
    "per_class_split",
    "random_split",
    "ratio_split",
    "region_homophily",
    "register_dataset",
    "register_format",
    "registered_datasets",
    "resolve_root",
    "validate_graph",
    "write_ogb_node_dataset",
]

# The neighbour sampler lives in sampler.py / loader.py (written separately);
# export it lazily so that this package imports even while they are absent.
_LAZY = {
    "neighbor_loader": (("loader", "neighbor_loader"),),
    "CSRNeighborSampler": (("sampler", "CSRNeighborSampler"),),
    "NeighborSampler": (("sampler", "NeighborSampler"), ("sampler", "CSRNeighborSampler")),
}


def __getattr__(name: str) -> Any:
    for module, attr in _LAZY.get(name, ()):
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise
            continue
        if hasattr(mod, attr):
            return getattr(mod, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
