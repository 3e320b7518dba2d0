"""The :class:`DatasetInfo` record: everything graphmoe knows about one dataset."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["METRICS", "SPLITS", "TASKS", "DatasetInfo", "normalize_name"]

#: Learning tasks a dataset can serve. Loaders for "link", "graph" and "kg" plug in later.
TASKS = ("node", "link", "graph", "kg")
#: Evaluation metrics reported as ``data.metric`` (link datasets: ROC-AUC, or OGB's Hits@K / MRR;
#: graph regression: RMSE, lower is better).
METRICS = ("acc", "rocauc", "hits@20", "hits@50", "hits@100", "mrr", "rmse")
#: How train/val/test masks are obtained (see :mod:`graphmoe.data.splits`).
SPLITS = ("provided", "per_class", "ratio")


def normalize_name(name: str) -> str:
    """Lookup key of a dataset name: lower case, punctuation and blanks dropped.

    ``"Cora"``, ``"chameleon_filtered"``, ``"Johns Hopkins55"`` and ``"ogbn-arxiv"``
    become ``"cora"``, ``"chameleonfiltered"``, ``"johnshopkins55"``, ``"ogbnarxiv"``.
    """
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class DatasetInfo:
    r"""One row of the dataset registry.

    Args:
        name (str): Canonical name (lower case, words joined by ``-``).
        format (str): Key of the loader that reads the raw files
            (see :data:`graphmoe.data.formats.FORMATS`).
        folder (str): Folder below the data root that holds the raw files.
        files (tuple[str, ...]): Required files, relative to ``folder``. An entry
            ``"a.zip|b.npz"`` accepts either file (the first one present is used).
        task (str): One of :data:`TASKS`.
        aliases (tuple[str, ...]): Other accepted names.
        metric (str): ``"acc"`` or ``"rocauc"``.
        split (str): ``"provided"`` (masks ship with the data; ``num_splits`` of
            them), ``"per_class"`` or ``"ratio"`` (seeded random splits).
        num_splits (int): Number of provided splits.
        optional_files (tuple[str, ...]): Files used when present (e.g. split files).
        params (Mapping[str, Any]): Fixed arguments for the format loader.
        num_classes (int, optional): Number of classes, if not ``y.max() + 1``.
        description (str): One line for ``graphmoe datasets`` and the README.
        source (str): Where the raw files come from (shown when they are missing).
        urls (Mapping[str, str]): Download URL of raw files, keyed by the file's entry in
            ``files`` / ``optional_files`` (for an ``"a|b"`` entry, the alternative that is
            downloaded). Missing files are fetched from here unless offline; a dataset with a
            required entry lacking a URL is never downloaded.
    """

    name: str
    format: str
    folder: str = ""
    files: tuple[str, ...] = ()
    task: str = "node"
    aliases: tuple[str, ...] = ()
    metric: str = "acc"
    split: str = "provided"
    num_splits: int = 1
    optional_files: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    description: str = ""
    source: str = ""
    urls: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"DatasetInfo {self.name!r}: task must be one of {TASKS}, "
                             f"got {self.task!r}")
        if self.metric not in METRICS:
            raise ValueError(f"DatasetInfo {self.name!r}: metric must be one of {METRICS}, "
                             f"got {self.metric!r}")
        if self.split not in SPLITS:
            raise ValueError(f"DatasetInfo {self.name!r}: split must be one of {SPLITS}, "
                             f"got {self.split!r}")
        known = {alt for entry in (*self.files, *self.optional_files) for alt in entry.split("|")}
        unknown = sorted(set(self.urls) - known)
        if unknown:
            raise ValueError(f"DatasetInfo {self.name!r}: urls name files that are not in files "
                             f"or optional_files: {unknown}")

    @property
    def keys(self) -> tuple[str, ...]:
        """Normalised lookup keys (the name and all aliases)."""
        return tuple(normalize_name(n) for n in (self.name, *self.aliases))
