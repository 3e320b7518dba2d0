"""``graphmoe federated``: run the algorithms of a config on one partition and write results.

    graphmoe federated --config configs/federated/fedpub_cora_disjoint10.yaml
    graphmoe federated --config X.yaml --engine flower --out runs/fed --algorithms fedavg,fedpub
    graphmoe federated --config X.yaml --resume          # continue an interrupted run

Outputs in the output directory: ``rounds.csv`` (per round: means and per-client local
validation/test accuracy), ``summary.json`` (per algorithm: mean local test accuracy at the
best validation round, wall time), ``accuracy.png``, ``partition.png`` (label distribution per
client, for a partition made by :func:`~graphmoe.federated.load_federated`), ``config.yaml`` and,
per algorithm label,
``<label>/checkpoint.pt`` and ``<label>/history.json``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from graphmoe.federated.config import ENGINES, FederatedConfig, load_config
from graphmoe.federated.history import FederatedHistory
from graphmoe.federated.outputs import plot_accuracy, summary_table, write_rounds_csv, write_summary

__all__ = ["run_federated", "cmd_federated", "get_engine"]

log = logging.getLogger("graphmoe.federated")


def get_engine(name: str) -> Callable[..., FederatedHistory]:
    """``run_simulation`` for ``"inprocess"``, ``graphmoe.federated.flower.run_flower`` for
    ``"flower"`` (a clear error when that engine or Flower is not installed)."""
    if name == "inprocess":
        from graphmoe.federated.simulation import run_simulation

        return run_simulation
    if name == "flower":
        try:
            module = importlib.import_module("graphmoe.federated.flower")
        except ModuleNotFoundError as err:
            if err.name == "graphmoe.federated.flower":
                raise ValueError("the flower engine is not available in this version of "
                                 "graphmoe (graphmoe/federated/flower.py is missing); use "
                                 "--engine inprocess") from err
            if err.name and err.name.split(".")[0] == "flwr":
                raise ValueError("the flower engine needs Flower: pip install "
                                 "'graphmoe[flower]'") from err
            raise
        return module.run_flower
    raise ValueError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")


def _write_outputs(config: FederatedConfig, out: Path, histories: dict[str, FederatedHistory],
                   engine: str, partition: list[dict] | None) -> dict[str, Path]:
    meta = {"dataset": config.dataset, "mode": config.mode, "num_clients": config.num_clients,
            "partition_seed": config.partition_seed, "seed": config.seed,
            "rounds": config.rounds, "local_epochs": config.local_epochs,
            "fraction": config.fraction, "engine": engine,
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads"}
    if partition is not None:
        meta["clients"] = [{k: v for k, v in c.items() if k != "label_histogram"}
                           for c in partition]
    title = f"{config.dataset} {config.mode} {config.num_clients} clients"
    return {"csv": write_rounds_csv(histories, out / "rounds.csv"),
            "summary": write_summary(histories, out / "summary.json", meta),
            "plot": plot_accuracy(histories, out / "accuracy.png", title=title)}


def run_federated(config: FederatedConfig, *, engine: str | None = None, out: str | None = None,
                  resume: bool = False, progress: bool = True, console: Any = None,
                  fed: Any = None) -> dict[str, FederatedHistory]:
    """Runs every algorithm of ``config`` in turn on one partition; writes the outputs after
    each algorithm (so a partial run leaves valid files). ``fed`` replaces the partition that
    ``config`` names (tests, custom client lists)."""
    from rich.console import Console

    console = console or Console()
    engine = engine or config.engine
    runner = get_engine(engine)
    out_dir = Path(out) if out is not None else config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    if fed is None:
        from graphmoe.federated import load_federated

        with console.status(f"partitioning {config.dataset} ({config.mode}, "
                            f"{config.num_clients} clients) ..."):
            fed = load_federated(config.dataset, config.mode, config.num_clients,
                                 seed=config.partition_seed, root=config.root)
    summary = getattr(fed, "summary", None)
    partition = summary() if callable(summary) else None
    if callable(getattr(fed, "plot_label_distribution", None)):
        fed.plot_label_distribution(out_dir / "partition.png")
    histories: dict[str, FederatedHistory] = {}
    extra = {"checkpoint_every": config.checkpoint_every, "progress": progress,
             "console": console}
    paths: dict[str, Path] = {}
    for spec in config.algorithms:
        algorithm = spec.build()
        run_dir = out_dir / spec.label
        history = runner(fed, algorithm, config.rounds, config.local_epochs, config.fraction,
                         config.seed, run_dir, resume=resume, **extra)
        (run_dir / "history.json").write_text(json.dumps(history.to_dict(), default=str) + "\n")
        histories[spec.label] = history
        paths = _write_outputs(config, out_dir, histories, engine, partition)
    console.print(summary_table(histories, title=f"{config.dataset} {config.mode} "
                                f"{config.num_clients} clients, {config.rounds} rounds, "
                                f"seed {config.seed} ({engine})"))
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")
    return histories


def cmd_federated(argv: list[str]) -> int:
    """Run federated subgraph learning (FED-PUB and baselines) from a YAML config."""
    parser = argparse.ArgumentParser(prog="graphmoe federated", description=cmd_federated.__doc__)
    parser.add_argument("--config", required=True, help="YAML config (configs/federated/*.yaml)")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="simulation engine (default: the config's, else inprocess)")
    parser.add_argument("--out", default=None, help="output directory")
    parser.add_argument("--resume", action="store_true",
                        help="continue each algorithm from its last checkpoint in the output directory")
    parser.add_argument("--seed", type=int, default=None, help="training seed")
    parser.add_argument("--rounds", type=int, default=None, help="communication rounds")
    parser.add_argument("--algorithms", default=None,
                        help="comma-separated labels or names of the config's algorithms to run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    overrides = {k: v for k, v in (("seed", args.seed), ("rounds", args.rounds)) if v is not None}
    if overrides:
        config = FederatedConfig(**{**config.__dict__, **overrides})
    if args.algorithms:
        config = config.select([a.strip() for a in args.algorithms.split(",") if a.strip()])
    run_federated(config, engine=args.engine, out=args.out, resume=args.resume,
                  progress=not args.no_progress)
    return 0
