r"""``graphmoe topology``: how a node's topology relates to its link-prediction performance.

Wang et al., "A Topological Perspective on Demystifying GNN-Based Link Prediction Performance",
ICLR 2024, find that a node's Topological Concentration (TC: how much its held-out neighbours'
neighbourhoods overlap its own in the training graph) predicts how well a GNN ranks its
held-out links, better than its degree. :func:`run_topology` checks this on one dataset:

1. trains a :class:`~graphmoe.training.link.LinkPredictor` on a seeded link split (or loads a
   checkpoint), keeping the epoch with the best validation metric;
2. ranks every node's candidates (:func:`~graphmoe.training.link.node_link_metrics`):
   per-node Hits@K, MRR and NDCG@K on the evaluation split (test by default);
3. computes per node, on the training graph: exact TC (``K = 1, 2``) of the training and the
   evaluation split, ATC, training and evaluation degree, K-hop density and the clustering
   coefficient (:mod:`graphmoe.metrics`);
4. writes to ``--out``: ``nodes.csv`` (one row per node), ``summary.json`` (Pearson and
   Spearman correlation of each node metric with each performance metric over the nodes that
   have held-out links), ``results.json`` (``{"val": {...}, "test": {...}}``),
   ``perf_vs_tc.png`` (performance per TC / degree bin) and ``tc_distribution.png`` (TC of
   training vs held-out neighbours: the topological distribution shift).

::

    graphmoe topology --dataset Cora --model gcn --out runs/tc_cora
    graphmoe topology --dataset usair --model sage --seed 1 --epochs 200
    graphmoe topology --dataset Cora --ckpt runs/tc_cora/checkpoints/best.ckpt --out runs/tc_cora2
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from graphmoe.training.link_eval import both_directions

__all__ = ["NODE_METRIC_PREFIXES", "cmd_topology", "correlations", "node_topology",
           "run_topology"]

SUMMARY_FILE = "summary.json"
NODES_FILE = "nodes.csv"
#: Column prefixes of the topology metrics (``tc_test_k1``, ``degree_train``, ...).
NODE_METRIC_PREFIXES = ("tc_", "atc_", "degree_", "density_", "clustering")


def _check_ks(ks: Sequence[int], name: str = "K") -> list[int]:
    ks = list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"{name} must be a non-empty list of ints >= 1, got {ks!r}")
    return ks


def node_topology(data: Any, eval_split: str = "test", ks: Sequence[int] = (1, 2),
                  atc_dim: int = 64, seed: int = 0) -> dict[str, Tensor]:
    """The per-node topology metrics of a link split, all on its training graph.

    Columns: ``tc_train_k{K}``, ``tc_{eval_split}_k{K}`` (exact TC), ``atc_{eval_split}_k{K}``,
    ``degree_train``, ``degree_{eval_split}``, ``density_k{K}`` (K-hop subgraph density) and
    ``clustering``. ``eval_split`` is ``"test"`` or ``"val"``.
    """
    from graphmoe.metrics import (
        TopologicalConcentration,
        approximate_tc,
        clustering_coefficient,
        khop_density,
        node_degree,
    )

    ks = _check_ks(ks)
    if eval_split not in ("val", "test"):
        raise ValueError(f"eval_split must be 'val' or 'test', got {eval_split!r}")
    num_nodes = int(data.num_nodes)
    train = data.edge_index
    held = data.get(f"{eval_split}_pos_edge_index")
    if train.numel() == 0:
        raise ValueError("the training graph has no edges: topology metrics need some")
    if held is None or held.numel() == 0:
        raise ValueError(f"the {eval_split} split has no edges (data.{eval_split}_pos_edge_index)")
    held = both_directions(held)
    out: dict[str, Tensor] = {
        "degree_train": node_degree(train, num_nodes),
        f"degree_{eval_split}": node_degree(held, num_nodes),
    }
    for k in ks:
        tc = TopologicalConcentration(train, num_nodes, K=k)
        out[f"tc_train_k{k}"] = tc()
        out[f"tc_{eval_split}_k{k}"] = tc(held, split=eval_split)
        out[f"atc_{eval_split}_k{k}"] = approximate_tc(train, held, num_nodes, K=k, dim=atc_dim,
                                                       seed=seed)
        out[f"density_k{k}"] = khop_density(train, num_nodes, K=k)
    out["clustering"] = clustering_coefficient(train, num_nodes)
    return {k: v.double().cpu() for k, v in out.items()}


def _pearson(x: Any, y: Any) -> float | None:
    import numpy as np

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def correlations(metrics: dict[str, Tensor], performance: dict[str, Tensor],
                 ) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{"pearson": {metric: {perf: r}}, "spearman": {...}}`` over the nodes where every
    performance metric is defined (not ``NaN``). Constant columns give ``None``."""
    from scipy.stats import rankdata

    defined = torch.stack([~torch.isnan(v) for v in performance.values()]).all(0).numpy()
    out: dict[str, dict[str, dict[str, float | None]]] = {"pearson": {}, "spearman": {}}
    for name, values in metrics.items():
        x = values.numpy()[defined]
        out["pearson"][name], out["spearman"][name] = {}, {}
        for perf, pv in performance.items():
            y = pv.double().numpy()[defined]
            out["pearson"][name][perf] = _pearson(x, y)
            out["spearman"][name][perf] = _pearson(rankdata(x), rankdata(y))
    return out


def _tc_vs_degree(spearman: dict[str, dict[str, float | None]], eval_split: str,
                  ) -> dict[str, dict[str, Any]]:
    """Per performance metric: |Spearman| of the best exact TC of the evaluation split and of
    the training degree, and whether TC is the stronger one (the paper's claim)."""
    out: dict[str, dict[str, Any]] = {}
    tc_cols = [c for c in spearman if c.startswith(f"tc_{eval_split}_")]
    perfs = next(iter(spearman.values())).keys() if spearman else []
    for perf in perfs:
        tc = {c: spearman[c][perf] for c in tc_cols if spearman[c][perf] is not None}
        best = max(tc, key=lambda c: abs(tc[c])) if tc else None
        degree = spearman.get("degree_train", {}).get(perf)
        out[perf] = {
            "tc_metric": best, "tc": None if best is None else tc[best], "degree": degree,
            "tc_stronger": None if best is None or degree is None
            else bool(abs(tc[best]) > abs(degree)),
        }
    return out


# -- plots -------------------------------------------------------------------------------------


def _binned(x: Any, y: Any, edges: Any) -> tuple[Any, Any, Any, Any]:
    import numpy as np

    idx = np.clip(np.digitize(x, edges[1:-1]), 0, len(edges) - 2)
    centers, means, sems, counts = [], [], [], []
    for b in range(len(edges) - 1):
        sel = y[idx == b]
        if sel.size == 0:
            continue
        centers.append(0.5 * (edges[b] + edges[b + 1]))
        means.append(sel.mean())
        sems.append(sel.std(ddof=1) / np.sqrt(sel.size) if sel.size > 1 else 0.0)
        counts.append(sel.size)
    return np.array(centers), np.array(means), np.array(sems), np.array(counts)


def plot_performance(path: Path, metrics: dict[str, Tensor], performance: dict[str, Tensor],
                     eval_split: str, bins: int = 10, title: str = "") -> Path:
    """Per-node performance (mean ± s.e.m. per bin) against each exact TC of the evaluation
    split (equal-width bins over [0, 1]) and against the training degree (log bins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    defined = torch.stack([~torch.isnan(v) for v in performance.values()]).all(0).numpy()
    xs = [c for c in metrics if c.startswith(f"tc_{eval_split}_")] + ["degree_train"]
    fig, axes = plt.subplots(1, len(xs), figsize=(4.6 * len(xs), 3.8), squeeze=False)
    for ax, col in zip(axes[0], xs):
        x = metrics[col].numpy()[defined]
        if col.startswith("degree"):
            top = max(2.0, float(x.max()) + 1)
            edges = np.unique(np.round(np.geomspace(1, top, bins + 1)))
            edges[0] = min(edges[0], float(x.min()))
            ax.set_xscale("log")
        else:
            edges = np.linspace(0.0, max(1e-9, float(x.max())), bins + 1)
        for perf, pv in performance.items():
            c, m, s, n = _binned(x, pv.double().numpy()[defined], edges)
            ax.errorbar(c, m, yerr=s, marker="o", ms=3, capsize=2, label=perf)
        ax.set_xlabel(col)
        ax.set_ylabel(f"per-node performance ({eval_split})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "per-node link prediction performance vs topology")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_tc_distribution(path: Path, metrics: dict[str, Tensor], eval_split: str,
                         title: str = "") -> Path:
    """Histograms of TC over training neighbours vs over held-out neighbours, per K (nodes with
    at least one neighbour in the split): the topological distribution shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ks = sorted(int(c.rsplit("_k", 1)[1]) for c in metrics if c.startswith("tc_train_k"))
    fig, axes = plt.subplots(1, len(ks), figsize=(4.6 * len(ks), 3.6), squeeze=False)
    has_train = metrics["degree_train"].numpy() > 1
    has_held = metrics[f"degree_{eval_split}"].numpy() > 0
    for ax, k in zip(axes[0], ks):
        a = metrics[f"tc_train_k{k}"].numpy()[has_train]
        b = metrics[f"tc_{eval_split}_k{k}"].numpy()[has_train & has_held]
        edges = np.linspace(0.0, max(1e-9, float(max(a.max(initial=0), b.max(initial=0)))), 31)
        ax.hist(a, bins=edges, density=True, alpha=0.55, label=f"train (mean {a.mean():.3f})")
        ax.hist(b, bins=edges, density=True, alpha=0.55,
                label=f"{eval_split} (mean {b.mean() if b.size else float('nan'):.3f})")
        ax.set_xlabel(f"TC, K={k}")
        ax.set_ylabel("density of nodes")
        ax.legend(fontsize=7)
    fig.suptitle(title or f"TC of training vs {eval_split} neighbours")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- the run -----------------------------------------------------------------------------------


def _json_clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def _load_checkpoint(path: str | Path, datamodule: Any) -> Any:
    from graphmoe.training.link import LinkPredictor

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    saved = ckpt.get("datamodule_hyper_parameters") or {}
    for key in ("name", "seed", "split", "val_ratio", "test_ratio"):
        if key in saved and saved[key] != getattr(datamodule, key):
            raise ValueError(
                f"the checkpoint {path} was trained on a split with {key}={saved[key]!r} but this "
                f"run uses {key}={getattr(datamodule, key)!r}; its held-out edges would have been "
                f"seen in training: pass the same --dataset/--seed/--split/ratios")
    return LinkPredictor.load_from_checkpoint(path, map_location="cpu")


def run_topology(
    dataset: str,
    model: str = "gcn",
    out: str | Path | None = None,
    *,
    root: str | None = None,
    seed: int = 0,
    split: int = 0,
    epochs: int = 100,
    hidden_channels: int = 64,
    num_layers: int = 2,
    dropout: float = 0.0,
    decoder: str = "dot",
    lr: float = 0.01,
    weight_decay: float = 0.0,
    reweight_alpha: float = 0.0,
    val_ratio: float = 0.05,
    test_ratio: float = 0.1,
    dataset_options: dict[str, Any] | None = None,
    normalize_features: bool = True,
    ks: Sequence[int] = (1, 2),
    rank_k: Sequence[int] = (10, 20),
    atc_dim: int = 64,
    eval_split: str = "test",
    candidates: str | int = "all",
    bins: int = 10,
    ckpt: str | Path | None = None,
    plots: bool = True,
    progress: bool = True,
    accelerator: str = "cpu",
) -> dict[str, Any]:
    """Train (or load) a link predictor on ``dataset`` and correlate per-node topology with
    per-node performance; write the outputs into ``out`` and return the summary dict.

    See the module docstring for the outputs; arguments mirror ``graphmoe topology --help``.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.loggers import CSVLogger
    from rich.console import Console
    from torch_geometric.transforms import NormalizeFeatures

    from graphmoe.training.callbacks import BestCheckpoint
    from graphmoe.training.link import LinkDataModule, LinkPredictor, node_link_metrics
    from graphmoe.training.results import results_table, stage_metrics, write_results

    ks, rank_k = _check_ks(ks, "ks"), _check_ks(rank_k, "rank_k")
    if eval_split not in ("val", "test"):
        raise ValueError(f"eval_split must be 'val' or 'test', got {eval_split!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    out = Path(out or f"runs/topology/{dataset.lower()}_{model}_s{seed}")
    out.mkdir(parents=True, exist_ok=True)
    console = Console(quiet=not progress)
    pl.seed_everything(seed, verbose=False)

    datamodule = LinkDataModule(dataset, root, split=split, seed=seed, val_ratio=val_ratio,
                                test_ratio=test_ratio, dataset_options=dataset_options)
    data = datamodule.data
    if normalize_features and bool((data.x >= 0).all()):  # row-normalise bag-of-words features
        data = NormalizeFeatures()(data.clone())
        datamodule._data = data

    # -- 1. the link predictor ------------------------------------------------------------------
    start = time.perf_counter()
    trainer_kwargs = dict(accelerator=accelerator, devices=1, enable_model_summary=False,
                          logger=CSVLogger(str(out), name="", version=""), log_every_n_steps=1,
                          enable_progress_bar=progress)
    if ckpt is None:
        module = LinkPredictor(model, hidden_channels=hidden_channels, num_layers=num_layers,
                               dropout=dropout, decoder=decoder, lr=lr, weight_decay=weight_decay,
                               reweight_alpha=reweight_alpha, metric=datamodule.metric,
                               node_k=tuple(rank_k), node_candidates=candidates)
        checkpoint = BestCheckpoint(dirpath=str(out / "checkpoints"), filename="best",
                                    save_last=False)
        callbacks = [checkpoint] + ([RichProgressBar()] if progress else [])
        trainer = pl.Trainer(max_epochs=epochs, callbacks=callbacks, **trainer_kwargs)
        trainer.fit(module, datamodule=datamodule)
        module = LinkPredictor.load_from_checkpoint(checkpoint.best_model_path,
                                                    map_location="cpu")
        ckpt_path = checkpoint.best_model_path
    else:
        module = _load_checkpoint(ckpt, datamodule)
        ckpt_path = str(ckpt)
    trainer = pl.Trainer(enable_checkpointing=False, **{**trainer_kwargs, "logger": False,
                                                       "enable_progress_bar": False})
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    results = {"val": stage_metrics(val, "val"), "test": stage_metrics(test, "test")}
    write_results(out, results)
    train_s = time.perf_counter() - start

    # -- 2. per-node performance and topology ---------------------------------------------------
    start = time.perf_counter()
    with console.status(f"ranking every node's candidates ({eval_split} split) ..."):
        module.eval()
        with torch.no_grad():
            z = module.encode(data.x, data.edge_index)
        known = data.edge_index if eval_split == "val" else torch.cat(
            [data.edge_index, data.val_pos_edge_index], dim=1)
        performance = node_link_metrics(z, module.decoder, data[f"{eval_split}_pos_edge_index"],
                                        known, rank_k, candidates,
                                        generator=torch.Generator().manual_seed(seed))
        performance = {k: v.cpu() for k, v in performance.items()}
    with console.status(f"topology metrics (TC K={ks}, ATC, degree, density) ..."):
        metrics = node_topology(data, eval_split, ks, atc_dim, seed)
    corr = correlations(metrics, performance)
    metrics_s = time.perf_counter() - start

    # -- 3. outputs -----------------------------------------------------------------------------
    import pandas as pd

    frame = pd.DataFrame({"node": range(int(data.num_nodes)),
                          **{k: v.numpy() for k, v in metrics.items()},
                          **{k: v.double().numpy() for k, v in performance.items()}})
    frame.to_csv(out / NODES_FILE, index=False)
    evaluated = int(torch.stack([~torch.isnan(v) for v in performance.values()]).all(0).sum())
    summary = {
        "command": "topology", "dataset": str(data.name), "model": model, "seed": seed,
        "split": split, "eval_split": eval_split, "num_nodes": int(data.num_nodes),
        "num_evaluated_nodes": evaluated, "checkpoint": ckpt_path, "results": results,
        "performance": {k: float(torch.nanmean(v.double())) for k, v in performance.items()},
        "correlation": corr,
        "tc_vs_degree": _tc_vs_degree(corr["spearman"], eval_split),
        "time_s": {"train": train_s, "metrics": metrics_s},
    }
    (out / SUMMARY_FILE).write_text(json.dumps(_json_clean(summary), indent=2) + "\n")
    if plots:
        title = f"{data.name}, {model}, seed {seed}"
        plot_performance(out / "perf_vs_tc.png", metrics, performance, eval_split, bins, title)
        plot_tc_distribution(out / "tc_distribution.png", metrics, eval_split, title)
    console.print(results_table(results, title=f"{data.name} / {model}: link prediction"))
    console.print(_correlation_table(corr["spearman"], summary["tc_vs_degree"]))
    console.print(f"outputs: {out}/ ({NODES_FILE}, {SUMMARY_FILE}, results.json"
                  + (", perf_vs_tc.png, tc_distribution.png)" if plots else ")"))
    return summary


def _correlation_table(spearman: dict[str, dict[str, float | None]],
                       verdict: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    perfs = list(next(iter(spearman.values())).keys()) if spearman else []
    table = Table(title="Spearman correlation with per-node performance")
    table.add_column("node metric")
    for perf in perfs:
        table.add_column(perf, justify="right")
    for name, row in spearman.items():
        table.add_row(name, *("-" if row[p] is None else f"{row[p]:+.3f}" for p in perfs))
    table.caption = "TC stronger than degree: " + ", ".join(
        f"{p}: {'yes' if v['tc_stronger'] else 'no' if v['tc_stronger'] is not None else '-'}"
        for p, v in verdict.items())
    return table


# -- command line ------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {value}")
    return value


def cmd_topology(argv: list[str]) -> int:
    """Correlate per-node topology (TC, ATC, degree, density) with per-node link prediction."""
    parser = argparse.ArgumentParser(
        prog="graphmoe topology", description=cmd_topology.__doc__,
        epilog="Writes nodes.csv, summary.json, results.json, perf_vs_tc.png and "
               "tc_distribution.png into --out.")
    parser.add_argument("--dataset", required=True,
                        help="link dataset (usair, ns, pb, yeast, celegans, power, router, ecoli,"
                             " ogbl-*) or node dataset (Cora, CiteSeer, ...)")
    parser.add_argument("--model", default="gcn", help="backbone registry name (gcn, sage, ...)")
    parser.add_argument("--out", default=None,
                        help="output folder (default runs/topology/<dataset>_<model>_s<seed>)")
    parser.add_argument("--root", default=None, help="data root (default $GRAPHMOE_DATA, else "
                                                     "./datasets)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    parser.add_argument("--split", type=int, default=0, help="index of the seeded split")
    parser.add_argument("--epochs", type=int, default=100, help="training epochs")
    parser.add_argument("--hidden", type=int, default=64, help="hidden/embedding size")
    parser.add_argument("--layers", type=int, default=2, help="backbone layers")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--decoder", choices=("dot", "mlp"), default="dot")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--reweight", type=float, default=0.0, metavar="ALPHA",
                        help="TC-guided edge re-weighting strength (0: off)")
    parser.add_argument("--val-ratio", type=float, default=0.05)
    parser.add_argument("--test-ratio", type=float, default=0.1)
    parser.add_argument("--features", choices=("onehot", "random", "constant"), default=None,
                        help="node features of featureless graphs (SEAL sets; default onehot)")
    parser.add_argument("--K", type=int, nargs="+", default=[1, 2], dest="ks",
                        help="walk lengths of TC / ATC / density (each >= 1)")
    parser.add_argument("--rank-k", type=int, nargs="+", default=[10, 20],
                        help="K of per-node Hits@K and NDCG@K")
    parser.add_argument("--atc-dim", type=_positive_int, default=64)
    parser.add_argument("--eval-split", choices=("test", "val"), default="test")
    parser.add_argument("--candidates", default="all",
                        help="per-node ranking over 'all' nodes (default) or N sampled nodes")
    parser.add_argument("--bins", type=int, default=10, help="bins of the performance plot")
    parser.add_argument("--ckpt", default=None, help="evaluate this LinkPredictor checkpoint "
                                                     "instead of training")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.ks):
        parser.error(f"--K values must be >= 1, got {args.ks}")
    if any(k < 1 for k in args.rank_k):
        parser.error(f"--rank-k values must be >= 1, got {args.rank_k}")
    options = {"features": args.features} if args.features else None
    candidates = args.candidates
    if candidates != "all":
        if not candidates.isdigit() or int(candidates) < 1:
            parser.error(f"--candidates must be 'all' or a positive int, got {candidates!r}")
        candidates = int(candidates)
    run_topology(
        args.dataset, args.model, args.out, root=args.root, seed=args.seed, split=args.split,
        epochs=args.epochs, hidden_channels=args.hidden, num_layers=args.layers,
        dropout=args.dropout, decoder=args.decoder, lr=args.lr, reweight_alpha=args.reweight,
        val_ratio=args.val_ratio, test_ratio=args.test_ratio, dataset_options=options,
        ks=args.ks, rank_k=args.rank_k, atc_dim=args.atc_dim, eval_split=args.eval_split,
        candidates=candidates,
        bins=args.bins, ckpt=args.ckpt, plots=not args.no_plots, accelerator=args.accelerator)
    return 0
