"""Issue 3's experiment table: MLP, GCN, GraphSAGE and Mowst / Mowst* with GCN and SAGE experts.

Per dataset (``configs/mowst/<dataset>.yaml`` gives the data: name, transform, sparse features):

1. **Search** (validation only): MLP, GCN and GraphSAGE (2 layers, 64 hidden, Adam lr 0.01,
   at most 500 epochs, early stopping after 50 epochs without a better validation score) for
   ``weight_decay`` in {0, 5e-4} x ``dropout`` in {0.2, 0.5}, on the first two seeds / splits;
   the configuration with the best mean validation score is kept per model.
2. **Baselines**: the kept configuration on ``--seeds`` (the search runs are reused).
3. **Mowst**: ``MowstModule`` with the cross-fitted gate (graphmoe's default, 3 folds, turn
   patience 30), variants Mowst (alternating turns, random rule) and Mowst* (joint, soft
   mixture), each with a GCN and a SAGE strong expert; weight decay and dropout are those kept
   for its strong expert (the two experts share them), on the same seeds / splits. Row
   ``Mowst-GCN-published`` (``--rows``) is the reference recipe (in-sample gate, pretrained
   GCN) under the same settings, to show what cross-fitting changes.

Seeds are the provided splits for datasets that have them (heterophilous, LINKX sets), else the
initialisation seeds on the public or seeded random split. Every run writes a JSON record to
``--out``; an interrupted table resumes (records on disk are not recomputed). Prints the table
and ends with one JSON line.

    OMP_NUM_THREADS=1 GRAPHMOE_DATA=../shared/datasets python benchmarks/mowst_table.py \\
        --datasets cora citeseer actor --workers 2
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mowst_experiments import REPO, SPLIT_DATASETS  # noqa: E402
from mowst_experiments import run_one as run_mowst  # noqa: E402

BASELINES = ("mlp", "gcn", "sage")
GRID = [{"weight_decay": wd, "dropout": p} for wd in (0.0, 5e-4) for p in (0.2, 0.5)]
MOWST_ROWS = {  # table row -> (strong expert, variant of mowst_experiments)
    "Mowst-GCN": ("gcn", "mowst-crossfit"),
    "Mowst-SAGE": ("sage", "mowst-crossfit"),
    "Mowst*-GCN": ("gcn", "star-crossfit"),
    "Mowst*-SAGE": ("sage", "star-crossfit"),
    "Mowst-GCN-published": ("gcn", "mowst-published"),  # the reference recipe, for comparison
}
LABELS = {"mlp": "MLP", "gcn": "GCN", "sage": "GraphSAGE"}


def _data_module(config: str, seed: int):
    from graphmoe.training import NodeDataModule

    data_cfg = yaml.safe_load((REPO / "configs" / "mowst" / f"{config}.yaml").read_text())["data"]
    transform = None
    if "transform" in data_cfg:
        from torch_geometric.transforms import NormalizeFeatures

        transform = NormalizeFeatures()
    name = data_cfg["name"]
    split = seed if name in SPLIT_DATASETS else data_cfg.get("split", 0)  # as run_mowst does
    return NodeDataModule(name=name, split=split, seed=seed,
                          dataset_options=data_cfg.get("dataset_options"), transform=transform,
                          sparse_features=data_cfg.get("sparse_features", False)), split


def run_baseline(job: dict) -> dict:
    """Train one MLP / GCN / SAGE with early stopping; test score of the best validation epoch."""
    from graphmoe.training import MetricEarlyStopping, NodeClassifier

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    pl.seed_everything(job["seed"], verbose=False)
    datamodule, split = _data_module(job["config"], job["seed"])
    module = NodeClassifier(backbone=job["model"], hidden_channels=64, num_layers=2, lr=0.01,
                            dropout=job["dropout"], weight_decay=job["weight_decay"],
                            metric=datamodule.metric)
    best = _KeepBest()
    trainer = pl.Trainer(max_epochs=500, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[MetricEarlyStopping(patience=50), best])
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    module.load_state_dict(best.state)
    val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    key = module.monitor.split("/", 1)[1]
    record = {**job, "split": split, "metric": key, "val": val[f"val/{key}"],
              "test": test[f"test/{key}"], "epochs": trainer.current_epoch,
              "seconds": round(seconds, 1)}
    print(f"{job['config']:>18s} {job['model']:<5s} wd {job['weight_decay']:g} dropout "
          f"{job['dropout']:g} seed {job['seed']}: val {record['val']:.4f} test "
          f"{record['test']:.4f} [{seconds:.0f} s]", flush=True)
    return record


class _KeepBest(pl.Callback):
    """Copies the module's weights whenever the monitored validation score improves."""

    def __init__(self) -> None:
        self.best = -float("inf")
        self.state: dict | None = None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        score = float(trainer.callback_metrics[pl_module.monitor])
        if score > self.best:
            self.best, self.state = score, copy.deepcopy(pl_module.state_dict())


def _cached(path: Path, fn, job: dict) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    record = fn(job)
    path.write_text(json.dumps(record, indent=1, default=float))
    return record


def _baseline_job(out: Path, config: str, model: str, hp: dict, seed: int) -> tuple:
    job = {"config": config, "model": model, "seed": seed, **hp}
    name = f"{config}_{model}_wd{hp['weight_decay']:g}_p{hp['dropout']:g}_{seed}.json"
    return out / "baselines" / name, run_baseline, job


def _mowst_job(out: Path, config: str, row: str, hp: dict, seed: int) -> tuple:
    strong, variant = MOWST_ROWS[row]
    overrides = {"strong": strong, "num_folds": 3, "patience": 30, **hp}
    job = {"config": config, "variant": variant, "seed": seed, "overrides": overrides,
           "out": str(out / "mowst_runs" / row.replace("*", "star")), "max_epochs": 5000}
    name = f"{config}_{row.replace('*', 'star')}_{seed}.json"
    return out / "mowst" / name, run_mowst, job


def _run_all(pool, jobs: list[tuple], run: bool = True) -> list[dict | None]:
    """The jobs' records, computed where missing (``run=False``: ``None`` where missing)."""
    if not run:
        return [json.loads(path.read_text()) if path.exists() else None for path, _, _ in jobs]
    for path, _, _ in jobs:
        path.parent.mkdir(parents=True, exist_ok=True)
    args = [(path, fn, job) for path, fn, job in jobs]
    if pool is None:
        return [_cached(*a) for a in args]
    return list(pool.map(_cached_star, args))


def _cached_star(args: tuple) -> dict:
    return _cached(*args)


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def dataset_table(pool, out: Path, config: str, seeds: list[int], rows: list[str],
                  run: bool = True) -> dict | None:
    """Search, baselines and Mowst rows for one dataset; returns its table cells (``run=False``:
    from the records on disk only, ``None`` before the search is complete)."""
    search_seeds = seeds[:2]
    search = _run_all(pool, [_baseline_job(out, config, m, hp, s) for m in BASELINES
                             for hp in GRID for s in search_seeds], run)
    if any(r is None for r in search):
        return None
    chosen = {}
    for model in BASELINES:
        def val(hp, model=model):
            return statistics.mean(r["val"] for r in search if r["model"] == model
                                   and r["weight_decay"] == hp["weight_decay"]
                                   and r["dropout"] == hp["dropout"])
        chosen[model] = max(GRID, key=val)
    names = [LABELS[m] for m in BASELINES for _ in seeds] + [row for row in rows for _ in seeds]
    jobs = [_baseline_job(out, config, m, chosen[m], s) for m in BASELINES for s in seeds]
    jobs += [_mowst_job(out, config, row, chosen[MOWST_ROWS[row][0]], s) for row in rows
             for s in seeds]
    records = _run_all(pool, jobs, run)
    by_row: dict[str, list[dict]] = {name: [] for name in names}
    for name, record in zip(names, records):
        if record is not None:
            by_row[name].append(record)
    cells: dict[str, dict] = {}
    for model in BASELINES:
        scores = [r["test"] for r in by_row[LABELS[model]]]
        cells[LABELS[model]] = {"test": _mean_std(scores), "n": len(scores), **chosen[model]}
    for row in rows:
        strong = MOWST_ROWS[row][0]
        recs = by_row[row]
        cells[row] = {
            "test": _mean_std([r["test"] for r in recs]), "n": len(recs),
            "weak": _mean_std([r["test_weak"] for r in recs]),
            "strong": _mean_std([r["test_strong"] for r in recs]),
            "conf_mean": _mean_std([r["conf_mean_test"] for r in recs])[0],
            "weak_frac": _mean_std([r["weak_frac_test"] for r in recs])[0],
            **chosen[strong],
        }
    cells["metric"] = search[0]["metric"]
    return cells


def print_table(config: str, cells: dict) -> None:
    print(f"\n{config} ({cells['metric']})")
    for name, cell in cells.items():
        if name == "metric":
            continue
        mean, std = cell["test"]
        extra = ""
        if "conf_mean" in cell:
            extra = (f"  its MLP {100 * cell['weak'][0]:.2f}, its GNN {100 * cell['strong'][0]:.2f},"
                     f" mean C {cell['conf_mean']:.3f}, to MLP {cell['weak_frac']:.3f}")
        print(f"  {name:<12s} {100 * mean:6.2f} +- {100 * std:5.2f} (n={cell['n']}, wd "
              f"{cell['weight_decay']:g}, dropout {cell['dropout']:g}){extra}", flush=True)


def markdown(results: dict[str, dict]) -> str:
    """Two markdown tables: test metric (mean +- std, n) per dataset and model; for the Mowst
    rows, mean C on the test nodes and the test metric of each expert inside the mixture."""
    names = [LABELS[m] for m in BASELINES] + [r for r in MOWST_ROWS if any(
        r in cells for cells in results.values())]
    lines = ["| dataset (metric) | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for config, cells in results.items():
        row = []
        for name in names:
            cell = cells.get(name)
            if cell is None or not cell["n"]:
                row.append("")
                continue
            mean, std = cell["test"]
            row.append(f"{100 * mean:.2f} +- {100 * std:.2f}" + (f" ({cell['n']})"
                                                                   if cell["n"] != 5 else ""))
        lines.append(f"| {config} ({cells['metric']}) | " + " | ".join(row) + " |")
    mowst = [r for r in names if r in MOWST_ROWS]
    lines += ["", "| dataset | " + " | ".join(f"{r}: mean C / its MLP / its GNN" for r in mowst)
              + " |", "|---|" + "---|" * len(mowst)]
    for config, cells in results.items():
        row = []
        for name in mowst:
            cell = cells.get(name)
            row.append("" if cell is None or not cell["n"] else
                       f"{cell['conf_mean']:.3f} / {100 * cell['weak'][0]:.1f} / "
                       f"{100 * cell['strong'][0]:.1f}")
        lines.append(f"| {config} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", required=True, help="configs/mowst/ names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--rows", nargs="+", default=list(MOWST_ROWS)[:4],
                        choices=list(MOWST_ROWS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default="runs/mowst_table")
    parser.add_argument("--report-only", action="store_true",
                        help="tables from the records on disk; run nothing")
    args = parser.parse_args()
    out = Path(args.out)
    results = {}
    run = not args.report_only
    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 and run else None
    try:
        for config in args.datasets:
            cells = dataset_table(pool, out, config, args.seeds, args.rows, run)
            if cells is not None:
                results[config] = cells
                print_table(config, cells)
    finally:
        if pool is not None:
            pool.shutdown()
    print("\n" + markdown(results))
    print(json.dumps({"benchmark": "mowst_table", "results": results, "seeds": args.seeds,
                      "machine": f"{platform.machine()} 1 thread per run, {args.workers} workers",
                      "torch": torch.__version__}, default=float))


if __name__ == "__main__":
    main()
