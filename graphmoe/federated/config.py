"""The YAML config of ``graphmoe federated``: one partition, several algorithms run in turn.

.. code-block:: yaml

    dataset: cora
    mode: disjoint          # or overlapping
    num_clients: 10
    rounds: 100
    seed: 0
    algorithms:
      - local
      - fedavg
      - {name: fedprox, mu: 0.01}
      - fedper
      - {name: fedpub, tau: 3}

An algorithm entry is a name or a mapping with ``name``, an optional ``label`` (its name in
the outputs; default: the name) and the algorithm's options
(:func:`~graphmoe.federated.algorithms.build_algorithm`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from graphmoe.federated.algorithms import build_algorithm

__all__ = ["AlgorithmSpec", "FederatedConfig", "load_config", "ENGINES", "MODES"]

ENGINES = ("inprocess", "flower")
MODES = ("disjoint", "overlapping")


@dataclass
class AlgorithmSpec:
    """One algorithm of a config: registry ``name``, output ``label`` and ``options``."""

    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, entry: Any, where: str) -> AlgorithmSpec:
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{where} must be an algorithm name or a mapping with 'name', "
                             f"got {entry!r}")
        options = dict(entry)
        name = str(options.pop("name"))
        label = str(options.pop("label", name))
        spec = cls(name, label, options)
        spec.build()  # unknown algorithm or option, tau <= 0, ...: fail at load time
        return spec

    def build(self):
        return build_algorithm(self.name, **self.options)


@dataclass
class FederatedConfig:
    """Settings of a ``graphmoe federated`` run.

    Attributes:
        dataset: A :func:`graphmoe.data.load_dataset` name (``cora``, ``citeseer``, ``pubmed``,
            ``amazon-photo``, ``amazon-computers``, ``ogbn-arxiv``, ...).
        mode: ``disjoint`` or ``overlapping``.
        num_clients: Number of clients (overlapping: a multiple of 5).
        partition_seed: Seed of the split and the partition.
        seed: Seed of the training runs.
        rounds, local_epochs, fraction: Communication rounds, local epochs per round, fraction
            of clients sampled per round.
        checkpoint_every: Rounds between checkpoints (``--resume`` restarts from the last).
        root: Data root (default ``$GRAPHMOE_DATA``, else ``./datasets``).
        out: Output directory (default ``runs/federated/<dataset>_<mode><num_clients>``).
        engine: ``inprocess`` or ``flower``.
        algorithms: The algorithms, run in turn on the same partition.
    """

    dataset: str
    mode: str = "disjoint"
    num_clients: int = 10
    partition_seed: int = 1234
    seed: int = 0
    rounds: int = 100
    local_epochs: int = 1
    fraction: float = 1.0
    checkpoint_every: int = 1
    root: str | None = None
    out: str | None = None
    engine: str = "inprocess"
    algorithms: list[AlgorithmSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"'mode' must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"'engine' must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for key in ("num_clients", "rounds", "local_epochs", "checkpoint_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{key}' must be an integer >= 1, got {value!r}")
        if not isinstance(self.fraction, (int, float)) or not 0 < self.fraction <= 1:
            raise ValueError(f"'fraction' must be in (0, 1], got {self.fraction!r}")
        if not self.algorithms:
            raise ValueError("'algorithms' must list at least one algorithm")
        labels = [a.label for a in self.algorithms]
        duplicates = sorted({lab for lab in labels if labels.count(lab) > 1})
        if duplicates:
            raise ValueError(f"algorithm labels must be unique; repeated: {', '.join(duplicates)} "
                             f"(give each entry a distinct 'label')")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/federated/{self.dataset}_{self.mode}{self.num_clients}")

    @classmethod
    def valid_keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> FederatedConfig:
        if not isinstance(raw, dict):
            raise ValueError(f"{source} must be a mapping of settings, got {type(raw).__name__}")
        valid = cls.valid_keys()
        unknown = [k for k in raw if k not in valid]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in {source}; valid keys: "
                             f"{', '.join(valid)}")
        if "dataset" not in raw:
            raise ValueError(f"{source} has no 'dataset'")
        entries = raw.get("algorithms") or []
        if not isinstance(entries, list):
            raise ValueError(f"'algorithms' in {source} must be a list, got {entries!r}")
        specs = [AlgorithmSpec.parse(e, f"algorithms[{i}]") for i, e in enumerate(entries)]
        return cls(**{**raw, "algorithms": specs})

    def select(self, names: list[str]) -> FederatedConfig:
        """The config restricted to ``names``: each is a label, else an algorithm name (then
        every entry of that algorithm)."""
        chosen: list[AlgorithmSpec] = []
        for name in names:
            match = ([a for a in self.algorithms if a.label == name]
                     or [a for a in self.algorithms if a.name == name])
            if not match:
                raise ValueError(f"--algorithms: {name!r} is not in the config; it has "
                                 f"{', '.join(a.label for a in self.algorithms)}")
            chosen += [a for a in match if a not in chosen]
        return FederatedConfig(**{**self.__dict__, "algorithms": chosen})

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "algorithms"}
        out["algorithms"] = [{"name": a.name, "label": a.label, **a.options}
                             for a in self.algorithms]
        return out


def load_config(path: str | os.PathLike) -> FederatedConfig:
    """Reads and checks a config file (unknown keys, algorithms and options are errors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open() as f:
        raw = yaml.safe_load(f)
    return FederatedConfig.from_dict(raw or {}, source=str(path))
