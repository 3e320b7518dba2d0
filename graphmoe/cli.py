"""The ``graphmoe`` command line.

Lightning subcommands (a :class:`~lightning.pytorch.cli.LightningCLI` with YAML configs)::

    graphmoe fit --config configs/gcn/cora.yaml
    graphmoe fit --config configs/gcn/cora.yaml --ckpt_path last      # resume the latest run
    graphmoe test --config configs/gcn/cora.yaml --ckpt_path runs/gcn/cora/version_0/checkpoints/last.ckpt
    graphmoe fit --print_config                                       # every option, with defaults

Other commands, dispatched before LightningCLI (see :data:`COMMANDS`)::

    graphmoe datasets [--root R]      # the dataset registry, and what is on disk
    graphmoe demo [--epochs N]        # MLP vs GCN vs GraphSAGE vs Mowst-GCN on the embedded CSBM
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from jsonargparse import Namespace, lazy_instance
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console

from graphmoe.training import (
    BestCheckpoint,
    GraphDataModule,
    NodeClassifier,
    NodeDataModule,
    TaskModule,
)
from graphmoe.training.results import (
    results_table,
    stage_metrics,
    write_predictions,
    write_results,
)

__all__ = ["COMMANDS", "GraphMoECLI", "main"]

RUNS_DIR = "runs"
#: Run-folder prefix per LightningModule class (node classification has none).
TASK_PREFIXES = {"LinkPredictor": "link-"}
DEFAULT_MODEL = f"{NodeClassifier.__module__}.{NodeClassifier.__name__}"
DEFAULT_DATA = f"{NodeDataModule.__module__}.{NodeDataModule.__name__}"
METRICS_FILE = "metrics.csv"


def _stash_metrics(log_dir: Path) -> Path | None:
    """Move ``metrics.csv`` aside before a resumed run reuses ``log_dir`` (CSVLogger deletes it)."""
    path = log_dir / METRICS_FILE
    if not path.is_file():
        return None
    stash = log_dir / f"{METRICS_FILE}.before-resume"
    if stash.is_file():  # an earlier resume was interrupted: keep its rows too
        _concat_csv([stash, path], stash)
        path.unlink()
    else:
        path.rename(stash)
    return stash


def _concat_csv(parts: list[Path], out: Path) -> None:
    import pandas as pd

    frames = [pd.read_csv(p) for p in parts if p.is_file() and p.stat().st_size > 0]
    if frames:
        pd.concat(frames, ignore_index=True, sort=False).to_csv(out, index=False)


def _resume_version(root: Path, ckpt_path: str) -> int | None:
    """The ``version_N`` under ``root`` that a resumed ``fit`` should continue, if any.

    ``"last"``: the highest version holding ``checkpoints/last.ckpt``. A path: the version it
    lives in, when that is ``root/version_N/checkpoints/``. Continuing the same directory keeps
    the checkpoint callback's record of the best epoch (Lightning drops it when the directory
    changes) and one ``metrics.csv`` per run.
    """
    if ckpt_path == "last":
        versions = [p.parent.parent.name for p in root.glob("version_*/checkpoints/last*.ckpt")]
    else:
        path = Path(ckpt_path).resolve()
        inside = path.parent.name == "checkpoints" and path.parent.parent.parent == root.resolve()
        versions = [path.parent.parent.name] if inside else []
    numbers = [int(v.removeprefix("version_")) for v in versions
               if v.removeprefix("version_").isdigit()]
    return max(numbers) if numbers else None


_UNKNOWN_OPTION = re.compile(
    r"Parser key \"(?P<key>[\w.]+)\".*?Problem with given class_path '(?P<cls>[\w.]+)':\s*"
    r"Option '(?P<opt>[\w.]+)' is not accepted", re.S)


class GraphMoEArgumentParser(LightningArgumentParser):
    """Names the full key of an option that the chosen model class does not accept.

    The ``model`` section is a class choice (``class_path``, default ``NodeClassifier``), so
    jsonargparse reports a misspelt option as a failed union match; the first line of the
    error now says ``model.<option>`` and the class it was checked against.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        match = _UNKNOWN_OPTION.search(message)
        if match:
            message = (f"Option '{match['key']}.{match['opt']}' is not accepted by "
                       f"{match['cls']}\n{message}")
        super().error(message, ex)


class GraphMoECLI(LightningCLI):
    """LightningCLI for graphmoe: data sizes linked into the model, best-checkpoint evaluation.

    * ``model`` is any task module (a :class:`~graphmoe.training.TaskModule`): configs without
      a ``class_path`` get :class:`~graphmoe.training.NodeClassifier` (``model: {backbone:
      gcn}``), others name it (``model: {class_path: graphmoe.training.mowst.MowstModule,
      init_args: {...}}``);
    * ``data.num_features``/``num_classes``/``metric`` fill ``model.in_channels``/
      ``out_channels``/``metric``;
    * a :class:`~graphmoe.training.BestCheckpoint` (``checkpoint:`` section) keeps the best
      epoch by the validation metric and ``last.ckpt``;
    * logs go to ``runs/<backbone>/<dataset>/version_N`` (CSV) unless ``trainer.logger`` says
      otherwise; ``fit --ckpt_path last`` continues the latest version of that run;
    * after ``fit``, the best checkpoint is evaluated on validation and test and the metrics are
      written to ``results.json`` in the log directory.
    """

    def __init__(self, args: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", TaskModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("parser_class", GraphMoEArgumentParser)
        kwargs.setdefault("datamodule_class", GraphDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"logger": lazy_instance(CSVLogger, save_dir=RUNS_DIR)})
        kwargs.setdefault("parser_kwargs", {
            "prog": "graphmoe",
            "description": "graphmoe: mixture-of-experts learning on graphs.",
            "epilog": "Other commands: " + ", ".join(
                f"'graphmoe {name}' ({fn.__doc__.strip().splitlines()[0].rstrip('.')})"
                for name, fn in COMMANDS.items()),
        })
        super().__init__(args=args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL},
                             "data": {"class_path": DEFAULT_DATA}})
        parser.link_arguments("data.num_features", "model.init_args.in_channels", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.init_args.out_channels", apply_on="instantiate")
        parser.link_arguments("data.metric", "model.init_args.metric", apply_on="instantiate")

    # -- before instantiation: logger name and resume directory ---------------------------------

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        logger = cfg.get("trainer", {}).get("logger")
        if not (isinstance(logger, Namespace) and str(logger.get("class_path", "")).endswith("CSVLogger")):
            return
        init = logger.init_args
        if init.get("name") in (None, "lightning_logs"):
            init.name = self._run_name(cfg)
        if self.subcommand == "fit" and cfg.get("ckpt_path") and init.get("version") is None:
            root = Path(init.save_dir) / init.name
            init.version = _resume_version(root, cfg.ckpt_path)
            if init.version is not None:
                self._metrics_stash = _stash_metrics(root / f"version_{init.version}")

    def _parse_ckpt_path(self) -> None:
        """Lightning takes the model's hyperparameters from ``--ckpt_path``; graphmoe also takes
        the datamodule's when no ``data`` option was given (``graphmoe test --ckpt_path X``)."""
        super()._parse_ckpt_path()
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if subcommand == "fit" or not ckpt_path or not Path(ckpt_path).is_file():
            return
        defaults = self._parser(subcommand).get_defaults()
        if self.config[subcommand].get("data") != defaults.get("data"):
            return
        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        hparams = {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items()
                   if not k.startswith("_")}
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"data": hparams}}, self.config)

    @staticmethod
    def _run_name(cfg: Namespace) -> str:
        """``<backbone>/<dataset>`` from the config (``gcn/cora``; Mowst: ``mowst-gcn/cora``);
        tasks other than node classification prefix the backbone (``link-gcn/cora``), so runs of
        the same backbone and dataset on different tasks never share a folder."""
        model, data = cfg.get("model") or Namespace(), cfg.get("data") or Namespace()
        prefix = TASK_PREFIXES.get(str(model.get("class_path", "")).rsplit(".", 1)[-1], "")
        model = model.get("init_args", model)
        data = data.get("init_args", data)
        name = model.get("backbone")
        if not name and model.get("strong"):  # a mixture: <variant>-<strong expert>
            name = f"{model.get('variant') or 'mowst'}-{model.get('strong')}"
        return f"{prefix}{name or 'model'}/{data.get('name') or 'data'}"

    # -- trainer: the Rich progress bar; the checkpoint callback only when fitting with checkpoints

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if self.subcommand != "fit" or config.get("enable_checkpointing") is False:
            extra = [cb for cb in extra if not isinstance(cb, ModelCheckpoint)]
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        has_bar = any(isinstance(cb, ProgressBar) for cb in [*callbacks, *extra])
        if config.get("enable_progress_bar") is not False and not has_bar:
            extra.append(RichProgressBar())
        return self._instantiate_trainer(config, extra)

    # -- after fit: evaluate the best checkpoint, write results.json ----------------------------

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        callback = trainer.checkpoint_callback
        ckpt = "best" if callback is not None and getattr(callback, "best_model_path", "") else None
        kwargs = {"datamodule": self.datamodule, "ckpt_path": ckpt, "verbose": False}
        val = trainer.validate(self.model, **kwargs)
        test = trainer.test(self.model, **kwargs)
        results = {"val": stage_metrics(val[0], "val"), "test": stage_metrics(test[0], "test")}
        if not trainer.is_global_zero:
            return
        stash = getattr(self, "_metrics_stash", None)
        if stash is not None:  # resumed run: earlier epochs first, then this run's rows
            metrics = Path(trainer.log_dir) / METRICS_FILE
            _concat_csv([stash, metrics], metrics)
            stash.unlink()
        path = write_results(trainer.log_dir or ".", results)
        which = f"best checkpoint: {Path(callback.best_model_path).name}" if ckpt else "final weights"
        console = Console()
        console.print(results_table(results, title="results", caption=which))
        if ckpt:
            console.print(f"checkpoint: {callback.best_model_path}")
        console.print(f"results: {path}")

    def predict(self, **kwargs: Any) -> None:
        """``trainer.predict``, then save the outputs as ``predictions.pt`` in the log directory."""
        outputs = self.trainer.predict(**kwargs)
        if outputs:
            path = write_predictions(self.trainer.log_dir or ".", outputs)
            Console().print(f"predictions: {path}")


# -- non-Lightning commands ------------------------------------------------------------------


def cmd_federated(argv: list[str]) -> int:
    """Run federated subgraph learning (FED-PUB and baselines) from a YAML config."""
    from graphmoe.federated.run import cmd_federated as run_federated

    return run_federated(argv)


def cmd_topology(argv: list[str]) -> int:
    """Train a link predictor and correlate per-node performance with TC, ATC and degree."""
    from graphmoe.training.topology import cmd_topology as run_topology

    return run_topology(argv)


def _human_size(num_bytes: int | None) -> str:
    if not num_bytes:
        return "-"
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def cmd_datasets(argv: list[str]) -> int:
    """List the registered datasets and which are on disk."""
    parser = argparse.ArgumentParser(prog="graphmoe datasets", description=cmd_datasets.__doc__)
    parser.add_argument("--root", default=None, help="data root (default: $GRAPHMOE_DATA, else ./datasets)")
    args = parser.parse_args(argv)
    from rich.table import Table

    from graphmoe.data import list_datasets, resolve_root

    rows = list_datasets(args.root)
    table = Table(title=f"graphmoe datasets in {resolve_root(args.root)}")
    for column, justify in (("name", "left"), ("task", "left"), ("present", "center"), ("size", "right")):
        table.add_column(column, justify=justify)
    for row in rows:
        present = "[green]yes[/green]" if row.get("present") else "[dim]no[/dim]"
        table.add_row(str(row["name"]), str(row.get("task", "")), present, _human_size(row.get("size_bytes")))
    Console().print(table)
    return 0


def cmd_demo(argv: list[str]) -> int:
    """Compare MLP, GCN, GraphSAGE and Mowst-GCN on the embedded CSBM graph, offline."""
    from graphmoe.training.demo import DEMO_EPOCHS, demo_table, routing_table, run_demo

    parser = argparse.ArgumentParser(prog="graphmoe demo", description=cmd_demo.__doc__)
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="training epochs per model")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    console = Console()
    with console.status("training MLP, GCN, GraphSAGE and Mowst-GCN on the CSBM graph ..."):
        results, data = run_demo(epochs=args.epochs, seed=args.seed)
    console.print(demo_table(results, data))
    routing = routing_table(results)
    if routing is not None:
        console.print(routing)
    return 0


# Commands handled outside LightningCLI; `federated` and `topology` will join them.
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "datasets": cmd_datasets,
    "demo": cmd_demo,
    "federated": cmd_federated,
    "topology": cmd_topology,
}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphmoe`` console script; returns the exit status.

    User errors (``ValueError``/``TypeError`` such as a feature-size mismatch or an unknown
    dataset option, ``FileNotFoundError`` for a dataset missing offline) are printed on one
    line; set ``GRAPHMOE_DEBUG=1`` for the traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            return COMMANDS[args[0]](args[1:])
        GraphMoECLI(args=None if argv is None else args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        if os.environ.get("GRAPHMOE_DEBUG"):
            raise
        print(f"graphmoe: error: {_one_line(err)} (GRAPHMOE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    return 0
