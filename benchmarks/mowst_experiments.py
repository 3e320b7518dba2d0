"""Mowst experiments: the gate collapse as published, and what cross-fitting the gate changes.

For each dataset, variant and seed (or split), trains a :class:`~graphmoe.training.mowst.MowstModule`
from ``configs/mowst/<dataset>.yaml`` plus the variant's overrides, and records the test metric
of the mixture and of each expert, the distribution of the confidence ``C`` on the test nodes,
and the fraction routed to the weak expert. Variants:

* ``mowst-published``: ``gate_fit=insample, pretrain=strong`` (the reference recipe);
* ``mowst-crossfit``: ``gate_fit=crossfit, pretrain=both`` (graphmoe's default);
* ``star-published`` / ``star-crossfit``: the same for Mowst* (``variant=mowst_star``).

MLP and GCN baselines are the experts of the ``*-crossfit`` runs right after their pretraining
phase (same hyperparameters, early-stopped on validation), reported as ``MLP``/``GCN``.
Per-node outputs of every run go to ``<out>/<dataset>_<variant>_<seed>.pt`` and two plots per
dataset (confidence vs node homophily; accuracy per confidence bin) to ``--plots``.

    OMP_NUM_THREADS=1 python benchmarks/mowst_experiments.py --datasets citeseer amherst41 \\
        --seeds 0 1 2 --workers 2
    python benchmarks/mowst_experiments.py --quick        # csbm, 1 seed, short schedule

Ends with one JSON line ``{"benchmark": "mowst_experiments", "results": {...}, ...}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "mowst-published": {"gate_fit": "insample", "pretrain": "strong"},
    "mowst-crossfit": {"gate_fit": "crossfit", "pretrain": "both"},
    "star-published": {"variant": "mowst_star", "gate_fit": "insample", "pretrain": "strong"},
    "star-crossfit": {"variant": "mowst_star", "gate_fit": "crossfit", "pretrain": "both"},
}
SPLIT_DATASETS = {"minesweeper", "tolokers", "chameleon_filtered", "squirrel_filtered", "actor",
                  "amherst41", "johnshopkins55", "reed98", "cornell5", "twitch-de"}


def node_homophily(data) -> torch.Tensor:
    """Fraction of a node's in-neighbours with its label (NaN without labelled neighbours)."""
    src, dst = data.edge_index
    y = data.y.view(-1)
    ok = (y[src] >= 0) & (y[dst] >= 0) & (src != dst)
    same = torch.zeros(data.num_nodes).index_add_(0, dst[ok], (y[src[ok]] == y[dst[ok]]).float())
    total = torch.zeros(data.num_nodes).index_add_(0, dst[ok], torch.ones(int(ok.sum())))
    return same / total


def run_one(job: dict) -> dict:
    """Train one (dataset, variant, seed) and return its record (runs in a worker process)."""
    import lightning.pytorch as pl

    from graphmoe.training import NodeDataModule
    from graphmoe.training.mowst import MowstModule

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    config = yaml.safe_load((REPO / "configs" / "mowst" / f"{job['config']}.yaml").read_text())
    init = {**config["model"]["init_args"], **VARIANTS[job["variant"]], **job["overrides"],
            "seed": job["seed"]}
    data_cfg = config["data"]
    transform = None
    if "transform" in data_cfg:
        from torch_geometric.transforms import NormalizeFeatures

        transform = NormalizeFeatures()
    name = data_cfg["name"]
    split = job["seed"] if name in SPLIT_DATASETS else data_cfg.get("split", 0)
    pl.seed_everything(job["seed"], verbose=False)
    datamodule = NodeDataModule(name=name, split=split, seed=job["seed"],
                                dataset_options=data_cfg.get("dataset_options"),
                                transform=transform,
                                sparse_features=data_cfg.get("sparse_features", False))
    module = MowstModule(**{"metric": datamodule.metric, **init})  # ROC-AUC where the dataset says so
    trainer = pl.Trainer(max_epochs=job["max_epochs"], accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    data = datamodule.data
    test = module._evaluate(data, "test")
    val = module._evaluate(data, "val")
    summary = module.routing_summary(data)
    model = module.model.eval()
    with torch.no_grad():
        out = model(data.x, data.edge_index, data.get("edge_weight"))
    record = {
        "dataset": job["config"], "variant": job["variant"], "seed": job["seed"],
        "split": split, "metric": module.metric_key, "val": val["score"], "test": test["score"],
        "test_weak": test["weak_score"], "test_strong": test["strong_score"],
        "conf_test": summary["test"]["conf_quantiles"],
        "conf_mean_test": summary["test"]["conf_mean"],
        "conf_mean_train": summary["train"]["conf_mean"],
        "weak_frac_test": test["weak_frac"],
        "pretrained": module.schedule.get("pretrained"),
        "epochs": trainer.current_epoch, "seconds": round(seconds, 1),
        "turns": [{k: v for k, v in h.items() if not k.startswith("conf_q")}
                  for h in module.schedule["history"]],
    }
    out_dir = Path(job["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"conf": out.confidence, "weak_pred": out.weak.argmax(-1),
                "strong_pred": out.strong.argmax(-1), "y": data.y.view(-1),
                "test_mask": data.test_mask, "homophily": node_homophily(data)},
               out_dir / f"{job['config']}_{job['variant']}_{job['seed']}.pt")
    (out_dir / f"{job['config']}_{job['variant']}_{job['seed']}.json").write_text(
        json.dumps(record, indent=2, default=float))
    print(f"{job['config']:>10s} {job['variant']:<16s} seed {job['seed']}: test {test['score']:.4f} "
          f"(weak {test['weak_score']:.4f}, strong {test['strong_score']:.4f}) mean C "
          f"{summary['test']['conf_mean']:.3f}  [{seconds:.0f} s]", flush=True)
    return record


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(records: list[dict]) -> dict:
    """Mean and std over seeds per (dataset, row): MLP, GCN, and each variant."""
    out: dict[str, dict] = {}
    for ds in sorted({r["dataset"] for r in records}):
        rows: dict[str, list[float]] = {}
        for r in records:
            if r["dataset"] != ds:
                continue
            rows.setdefault(r["variant"], []).append(r["test"])
            if r["variant"].endswith("crossfit") and r.get("pretrained"):
                rows.setdefault("MLP", []).append(r["pretrained"]["weak"]["test"])
                rows.setdefault("GCN", []).append(r["pretrained"]["strong"]["test"])
        conf = {}
        for r in records:
            if r["dataset"] == ds:
                conf.setdefault(r["variant"], []).append(r["conf_mean_test"])
        out[ds] = {name: {"mean": _mean_std(v)[0], "std": _mean_std(v)[1], "n": len(v),
                          **({"conf_mean_test": _mean_std(conf[name])[0]} if name in conf else {})}
                   for name, v in rows.items()}
    return out


def plots(out_dir: Path, plot_dir: Path, datasets: list[str]) -> list[str]:
    """Confidence vs node homophily, and accuracy per confidence bin (published vs crossfit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ds in datasets:
        runs = {v: sorted(out_dir.glob(f"{ds}_{v}_*.pt")) for v in ("mowst-published",
                                                                    "mowst-crossfit")}
        if not runs["mowst-crossfit"]:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for variant, files in runs.items():
            if not files:  # only the cross-fitted runs (e.g. from mowst_table.py)
                continue
            run = torch.load(files[0])
            mask = run["test_mask"] & ~run["homophily"].isnan()
            h, c = run["homophily"][mask], run["conf"][mask]
            bins = torch.linspace(0, 1, 11)
            idx = torch.bucketize(h, bins[1:-1])
            means = [float(c[idx == b].mean()) if bool((idx == b).any()) else float("nan")
                     for b in range(10)]
            axes[0].plot(((bins[:-1] + bins[1:]) / 2).tolist(), means, marker="o", label=variant)
        axes[0].set(xlabel="node homophily (test nodes)", ylabel="mean confidence C",
                    title=f"{ds}: confidence vs homophily", ylim=(-0.02, 1.02))
        axes[0].legend()
        run = torch.load(runs["mowst-crossfit"][0])
        mask = run["test_mask"] & (run["y"] >= 0)
        c, y = run["conf"][mask], run["y"][mask]
        q = torch.quantile(c, torch.linspace(0, 1, 6))
        idx = torch.bucketize(c, q[1:-1])
        labels, acc_w, acc_s = [], [], []
        for b in range(5):
            sel = idx == b
            labels.append(f"{float(q[b]):.3g}-{float(q[b + 1]):.3g}")
            acc_w.append(float((run["weak_pred"][mask][sel] == y[sel]).float().mean()))
            acc_s.append(float((run["strong_pred"][mask][sel] == y[sel]).float().mean()))
        xs = range(5)
        axes[1].bar([x - 0.2 for x in xs], acc_w, width=0.4, label="weak (MLP)")
        axes[1].bar([x + 0.2 for x in xs], acc_s, width=0.4, label="strong (GCN)")
        axes[1].set_xticks(list(xs), labels, rotation=20)
        axes[1].set(xlabel="confidence C quintile (crossfit)", ylabel="test accuracy",
                    title=f"{ds}: accuracy per confidence bin")
        axes[1].legend()
        fig.tight_layout()
        path = plot_dir / f"mowst_{ds}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["citeseer", "amherst41"],
                        help="config names in configs/mowst/")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--num-folds", type=int, default=3)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--max-epochs", type=int, default=5000)
    parser.add_argument("--out", default="runs/mowst_experiments")
    parser.add_argument("--plots", default="docs/img")
    parser.add_argument("--quick", action="store_true", help="csbm, 1 seed, short schedule")
    args = parser.parse_args()
    overrides = {"num_folds": args.num_folds, "patience": args.patience}
    if args.quick:
        args.datasets, args.seeds = ["csbm"], [0]
        overrides.update(patience=5, max_turn_epochs=20, max_rounds=1)
    jobs = [{"config": ds, "variant": v, "seed": s, "overrides": overrides, "out": args.out,
             "max_epochs": args.max_epochs}
            for ds in args.datasets for s in args.seeds for v in args.variants]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            records = list(pool.map(run_one, jobs))
    else:
        records = [run_one(job) for job in jobs]
    results = table(records)
    for ds, rows in results.items():
        print(f"\n{ds}")
        for name, cell in rows.items():
            extra = f"  mean C {cell['conf_mean_test']:.3f}" if "conf_mean_test" in cell else ""
            print(f"  {name:<16s} {100 * cell['mean']:6.2f} +- {100 * cell['std']:5.2f}"
                  f" (n={cell['n']}){extra}")
    written = plots(Path(args.out), Path(args.plots), args.datasets)
    print(json.dumps({"benchmark": "mowst_experiments", "results": results, "plots": written,
                      "overrides": overrides, "seeds": args.seeds,
                      "machine": f"{platform.machine()} 1 thread per run, {args.workers} workers",
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
