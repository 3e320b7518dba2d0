"""Results of ``graphmoe federated``: per-round CSV, ``summary.json``, accuracy plot, table.

``summary.json`` follows the "machine-readable results" section of ``docs/DESIGN.md``: for each
algorithm run, ``test_acc`` is the mean local test accuracy over clients at the round with the
best mean local validation accuracy, and ``wall_time_s`` the run's wall time.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphmoe.federated.history import METRICS, FederatedHistory

__all__ = ["write_rounds_csv", "write_summary", "plot_accuracy", "summary_table", "METRIC"]

METRIC = ("mean local test accuracy over clients at the round with the best mean local "
          "validation accuracy")


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def write_rounds_csv(histories: Mapping[str, FederatedHistory], path: str | os.PathLike) -> Path:
    """One row per (algorithm, round): the means over clients, then every client's
    validation and test accuracy (``client<i>_val_acc``, ``client<i>_test_acc``)."""
    path = Path(path)
    num_clients = max((h.num_clients for h in histories.values()), default=0)
    header = ["algorithm", "round", *(f"mean_{m}" for m in METRICS), "participants",
              "failed", "wall_time_s"]
    header += [f"client{c}_{m}" for c in range(num_clients) for m in ("val_acc", "test_acc")]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for label, history in histories.items():
            for r in history.rounds:
                row: list[Any] = [label, r.round, *(r.mean(m) for m in METRICS),
                                  len(r.participants), " ".join(map(str, sorted(r.failed))),
                                  round(r.wall_time, 4)]
                for c in range(num_clients):
                    metrics = r.clients.get(c, {})
                    row += [metrics.get("val_acc", ""), metrics.get("test_acc", "")]
                writer.writerow(row)
    return path


def write_summary(histories: Mapping[str, FederatedHistory], path: str | os.PathLike,
                  meta: Mapping[str, Any]) -> Path:
    """``summary.json``: ``meta`` (dataset, partition, seeds, engine, ...), the metric's
    definition, and per algorithm label its :meth:`FederatedHistory.result` and options."""
    path = Path(path)
    results = {}
    for label, history in histories.items():
        result = {k: _num(v) for k, v in history.result().items()}
        results[label] = {**result, "algorithm": history.algorithm, "options": history.options}
    payload = {**meta, "metric": METRIC, "algorithms": results}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def plot_accuracy(histories: Mapping[str, FederatedHistory], path: str | os.PathLike,
                  title: str = "") -> Path:
    """PNG: mean local validation and test accuracy vs round, one line per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, metric, name in zip(axes, ("val_acc", "test_acc"), ("validation", "test")):
        for label, history in histories.items():
            rounds = [r.round for r in history.rounds]
            ax.plot(rounds, history.curve(metric), label=label, linewidth=1.5)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"mean local {name} accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary_table(histories: Mapping[str, FederatedHistory], title: str = "federated results"):
    """A :class:`rich.table.Table` of the headline metric per algorithm."""
    from rich.table import Table

    table = Table(title=title, caption=f"test acc: {METRIC}")
    for column in ("algorithm", "test acc", "val acc", "best round", "final test acc",
                   "failed updates", "wall time"):
        table.add_column(column, justify="left" if column == "algorithm" else "right")
    results = {label: h.result() for label, h in histories.items()}
    best = max((r["test_acc"] for r in results.values() if not math.isnan(r["test_acc"])),
               default=None)
    for label, r in results.items():
        test = f"{100 * r['test_acc']:.2f}"
        if best is not None and r["test_acc"] == best:
            test = f"[bold green]{test}[/bold green]"
        table.add_row(label, test, f"{100 * r['val_acc']:.2f}", str(r["best_round"]),
                      f"{100 * r['final_test_acc']:.2f}", str(r["failed_updates"]),
                      f"{r['wall_time_s']:.1f} s")
    return table
