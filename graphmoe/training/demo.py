"""``graphmoe demo``: MLP vs GCN vs GraphSAGE on the embedded CSBM graph, offline.

The CSBM default mixes homophilous and heterophilous regions, so the demo shows the point of
mixing experts: the graph models win where neighbours share labels, the MLP holds up where they
do not. Plain Lightning Trainers, no logs or checkpoints, last-epoch weights.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch
from rich.table import Table
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.training.datamodule import NodeDataModule
from graphmoe.training.node import NodeClassifier

DEMO_MODELS = ("mlp", "gcn", "sage")
DEMO_EPOCHS = 100
_LABELS = {"mlp": "MLP", "gcn": "GCN", "sage": "GraphSAGE"}

__all__ = ["DEMO_EPOCHS", "DEMO_MODELS", "DemoResult", "demo_table", "region_names", "run_demo"]


@dataclass
class DemoResult:
    """Test accuracy of one backbone, overall and per CSBM region."""

    model: str
    test_acc: float
    region_acc: dict[str, float] = field(default_factory=dict)


@contextmanager
def _quiet_single_thread() -> Iterator[None]:
    """Silence Lightning's info logs and warnings; run torch on one thread meanwhile.

    On a graph this small, intra-op threads cost more than they save, and on a busy machine
    they make every step many times slower.
    """
    log = logging.getLogger("lightning.pytorch")
    level, threads = log.level, torch.get_num_threads()
    log.setLevel(logging.ERROR)
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)
        torch.set_num_threads(threads)


def region_names(data: Data) -> dict[int, str]:
    """Region id -> column name, from the measured edge homophily ``h`` inside each region.

    ``{0: "homophilous (h=0.80)", 1: "heterophilous (h=0.21)"}`` for the default CSBM.
    """
    region = data.region
    src, dst = data.edge_index
    names = {}
    for rid in range(int(region.max()) + 1):
        inside = (region[src] == rid) & (region[dst] == rid)
        if not bool(inside.any()):
            names[rid] = f"region {rid}"
            continue
        h = float((data.y[src[inside]] == data.y[dst[inside]]).float().mean())
        names[rid] = f"{'homophilous' if h >= 0.5 else 'heterophilous'} (h={h:.2f})"
    return names


def _accuracy(pred: Tensor, y: Tensor, mask: Tensor) -> float:
    return float((pred[mask] == y[mask]).float().mean()) if bool(mask.any()) else float("nan")


def _load_demo_graph(seed: int) -> Data:
    """The embedded default graph: ``load_dataset("csbm")``."""
    from graphmoe.data import load_dataset

    return load_dataset("csbm", seed=seed)


def _train_one(name: str, data: Data, epochs: int, seed: int) -> NodeClassifier:
    pl.seed_everything(seed, verbose=False)
    module = NodeClassifier(backbone=name, hidden_channels=64, num_layers=2, dropout=0.5,
                            lr=0.01, weight_decay=5e-4, in_channels=data.num_features,
                            out_channels=int(data.y.max()) + 1, metric="acc")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=NodeDataModule.from_data(data))
    return module


def run_demo(epochs: int = DEMO_EPOCHS, seed: int = 0, models: Sequence[str] = DEMO_MODELS,
             data: Data | None = None) -> tuple[list[DemoResult], Data]:
    """Train each backbone of ``models`` full-batch on ``data`` (default: ``load_dataset("csbm")``)."""
    if data is None:
        data = _load_demo_graph(seed)
    results = []
    with _quiet_single_thread():
        for name in models:
            module = _train_one(name, data, epochs, seed).eval()
            with torch.no_grad():
                pred = module(data.x, data.edge_index).argmax(-1)
            result = DemoResult(_LABELS.get(name, name), _accuracy(pred, data.y, data.test_mask))
            region = getattr(data, "region", None)
            if isinstance(region, Tensor):
                for rid, rname in region_names(data).items():
                    mask = data.test_mask & (region == rid)
                    result.region_acc[rname] = _accuracy(pred, data.y, mask)
            results.append(result)
    return results, data


def demo_table(results: Sequence[DemoResult], data: Data | None = None) -> Table:
    """A Rich table: one row per model, test accuracy overall and per region."""
    regions = list(results[0].region_acc) if results else []
    title = "graphmoe demo: test accuracy on the CSBM graph"
    if data is not None:
        title += f" ({data.num_nodes} nodes, {data.num_edges} edges)"
    table = Table(title=title)
    table.add_column("model")
    table.add_column("test acc", justify="right")
    for region in regions:
        table.add_column(region, justify="right")
    for res in results:
        cells = [res.test_acc, *(res.region_acc[r] for r in regions)]
        table.add_row(res.model, *(f"{v:.3f}" for v in cells))
    return table
