"""``graphmoe demo``: MLP vs GCN vs GraphSAGE vs Mowst-GCN on the embedded CSBM graph, offline.

The CSBM default mixes homophilous and heterophilous regions, so the demo shows the point of
mixing experts: the graph models win where neighbours share labels, the MLP holds up where they
do not. Mowst-GCN (:class:`~graphmoe.training.mowst.MowstModule`) mixes an MLP and a GCN per node;
the table also shows, per region, the fraction of test nodes it sends to the MLP (the mean
confidence :math:`C`, the expected fraction under the paper's randomized rule). Plain Lightning
Trainers, no logs or checkpoints; the backbones keep their last-epoch weights, Mowst its
best-validated state (its schedule selects on validation).
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

DEMO_MODELS = ("mlp", "gcn", "sage", "mowst")
DEMO_EPOCHS = 100
_LABELS = {"mlp": "MLP", "gcn": "GCN", "sage": "GraphSAGE", "mowst": "Mowst-GCN"}

__all__ = ["DEMO_EPOCHS", "DEMO_MODELS", "DemoResult", "demo_table", "region_names", "routing_table",
           "run_demo"]


@dataclass
class DemoResult:
    """Test accuracy of one backbone, overall and per CSBM region."""

    model: str
    test_acc: float
    region_acc: dict[str, float] = field(default_factory=dict)
    region_weak: dict[str, float] = field(default_factory=dict)
    """Mowst only: per region, the fraction of test nodes routed to the weak expert (mean C)."""


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


def _train_mowst(data: Data, epochs: int, seed: int):
    """Mowst-GCN with a short schedule: both experts pretrained, 3-fold cross-fitted gate."""
    from graphmoe.training.mowst import MowstModule

    pl.seed_everything(seed, verbose=False)
    patience = max(1, min(20, epochs // 5))
    module = MowstModule(weak="mlp", strong="gcn", hidden_channels=64, num_layers=2, dropout=0.5,
                         pretrain="both", gate_fit="crossfit", num_folds=3, lr=0.01,
                         weight_decay=5e-4, patience=patience, max_turn_epochs=epochs,
                         outer_patience=1, max_rounds=2, num_draws=10, seed=seed,
                         in_channels=data.num_features, out_channels=int(data.y.max()) + 1)
    trainer = pl.Trainer(max_epochs=8 * epochs, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=NodeDataModule.from_data(data))
    return module


def _predict(name: str, data: Data, epochs: int, seed: int) -> tuple[Tensor, Tensor | None]:
    """Test-time class predictions of a trained model, and Mowst's confidence per node."""
    if name == "mowst":
        module = _train_mowst(data, epochs, seed)
        module.model.eval()
        with torch.no_grad():
            log_probs = module(data.x, data.edge_index)
            conf = module.model(data.x, data.edge_index).confidence
        return log_probs.argmax(-1), conf
    module = _train_one(name, data, epochs, seed).eval()
    with torch.no_grad():
        return module(data.x, data.edge_index).argmax(-1), None


def run_demo(epochs: int = DEMO_EPOCHS, seed: int = 0, models: Sequence[str] = DEMO_MODELS,
             data: Data | None = None) -> tuple[list[DemoResult], Data]:
    """Train each model of ``models`` full-batch on ``data`` (default: ``load_dataset("csbm")``).

    ``"mowst"`` is Mowst-GCN; its result also holds the fraction routed to the MLP per region.
    """
    if data is None:
        data = _load_demo_graph(seed)
    results = []
    with _quiet_single_thread():
        for name in models:
            pred, conf = _predict(name, data, epochs, seed)
            result = DemoResult(_LABELS.get(name, name), _accuracy(pred, data.y, data.test_mask))
            region = getattr(data, "region", None)
            if isinstance(region, Tensor):
                for rid, rname in region_names(data).items():
                    mask = data.test_mask & (region == rid)
                    result.region_acc[rname] = _accuracy(pred, data.y, mask)
                    if conf is not None and bool(mask.any()):
                        result.region_weak[rname] = float(conf[mask].mean())
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


def routing_table(results: Sequence[DemoResult]) -> Table | None:
    """Per mixture model and region: the fraction of test nodes routed to the weak expert."""
    routed = [res for res in results if res.region_weak]
    if not routed:
        return None
    regions = list(routed[0].region_weak)
    table = Table(title="routing: fraction of test nodes sent to the MLP (mean confidence C)")
    table.add_column("model")
    for region in regions:
        table.add_column(region, justify="right")
    for res in routed:
        table.add_row(res.model, *(f"{res.region_weak[r]:.2f}" for r in regions))
    return table
