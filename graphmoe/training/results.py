"""``results.json``: the machine-readable outcome of a run, shared by every task.

Format (DESIGN.md): ``{"val": {METRIC: value}, "test": {METRIC: value}}`` with metric names as
logged without the stage prefix (``acc``, ``rocauc``, ``mrr``, ``hits@10``). Losses are not
metrics and are left out.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.pt"

__all__ = [
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "results_table",
    "stage_metrics",
    "write_predictions",
    "write_results",
]


def stage_metrics(logged: Mapping[str, float], stage: str) -> dict[str, float]:
    """``{"val/acc": 0.8, "val/loss": 0.6}`` -> ``{"acc": 0.8}`` for ``stage="val"``."""
    prefix = f"{stage}/"
    out: dict[str, float] = {}
    for key, value in logged.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):].removesuffix("_epoch")
        if name.endswith("loss"):
            continue
        out[name] = float(value)
    return out


def write_results(log_dir: str | Path, results: Mapping[str, Mapping[str, float]]) -> Path:
    """Write ``results`` as ``<log_dir>/results.json`` and return the path."""
    path = Path(log_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {
        stage: {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
        for stage, metrics in results.items()
    }
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path


def results_table(
    results: Mapping[str, Mapping[str, float | None]], title: str = "", caption: str = ""
) -> Table:
    """A Rich table with one row per metric and one column per stage."""
    table = Table(title=title or None, caption=caption or None)
    stages = list(results)
    table.add_column("metric")
    for stage in stages:
        table.add_column(stage, justify="right")
    names = sorted({name for metrics in results.values() for name in metrics})
    for name in names:
        cells = [results[stage].get(name) for stage in stages]
        table.add_row(name, *("-" if v is None else f"{v:.4f}" for v in cells))
    return table


def write_predictions(log_dir: str | Path, outputs: list[Any]) -> Path:
    """Concatenate ``predict_step`` outputs (dicts of tensors) into ``<log_dir>/predictions.pt``.

    Outputs of several dataloaders (a list of lists) are flattened first.
    """
    if outputs and isinstance(outputs[0], list):
        outputs = [item for group in outputs for item in group]
    if outputs and isinstance(outputs[0], Mapping):
        merged: Any = {key: torch.cat([out[key] for out in outputs]) for key in outputs[0]}
    else:
        merged = torch.cat(list(outputs))
    path = Path(log_dir) / PREDICTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(merged, path)
    return path
