"""GMoE-GIN vs GIN on MoleculeNet (BBBP: ROC-AUC, ESOL: RMSE), scaffold split, several seeds.

Every run is a real ``graphmoe fit --config ...`` (in-process, as ``gmoe_experiments.py``); the
test metric of the best-validation epoch is read back from the run's ``results.json``. Cases:
``gin/<dataset>`` (``configs/gin/<dataset>.yaml``: GIN with bond features) and
``gmoe_gin/<dataset>`` (``configs/gmoe/<dataset>_gin.yaml``). The split is the deterministic
scaffold split; seeds change the initialisation and the batch order.

    OMP_NUM_THREADS=1 python benchmarks/molecule_experiments.py --only bbbp --runs 3
    OMP_NUM_THREADS=1 python benchmarks/molecule_experiments.py --only esol --runs 3
    OMP_NUM_THREADS=1 python benchmarks/molecule_experiments.py --cases gmoe_gin/bbbp --runs 3
    OMP_NUM_THREADS=1 python benchmarks/molecule_experiments.py --faithful   # configs as written

Without ``--faithful`` a CPU budget is applied to every case alike (:data:`CPU_BUDGET`, recorded
in the JSON as ``"overrides"``). Reference numbers (GMoE paper, Wang et al. NeurIPS 2023,
Tables 1-3, OGB scaffold splits) are printed next to ours.

Ends with one JSON line: ``{"benchmark": "molecule_experiments", "results": {CASE: {...}},
"paper": {...}, "overrides": [...]}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # sane timings on a shared machine

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

#: (label, config) per case.
CASES = [("gin/bbbp", "gin/bbbp.yaml"), ("gmoe_gin/bbbp", "gmoe/bbbp_gin.yaml"),
         ("gin/esol", "gin/esol.yaml"), ("gmoe_gin/esol", "gmoe/esol_gin.yaml")]

#: The GMoE paper's numbers (test metric, mean over its runs): its Tables 1-3 report GCN and
#: GMoE-GCN on the ogbg-mol* datasets.
PAPER = {"bbbp": {"metric": "rocauc", "GCN": 68.87, "GMoE-GCN": 70.28},
         "esol": {"metric": "rmse", "GCN": 1.114, "GMoE-GCN": 1.087}}

#: The CPU budget (2 shared cores): fewer epochs and a smaller hidden size, for both models.
CPU_BUDGET = ["--trainer.max_epochs", "20", "--model.init_args.hidden_channels", "64"]


def run_one(config: str, seed: int, out_dir: Path, extra: list[str]) -> tuple[dict, dict]:
    """``graphmoe fit`` once; returns ``results.json`` and the last epoch's routing load."""
    from graphmoe.cli import GraphMoECLI

    args = ["fit", "--config", str(CONFIGS / config), "--seed_everything", str(seed), *extra,
            "--trainer.logger.init_args.save_dir", str(out_dir),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    cli = GraphMoECLI(args=args)
    log_dir = Path(cli.trainer.log_dir)
    results = json.loads((log_dir / "results.json").read_text())
    return results, routing_load(log_dir / "metrics.csv")


def routing_load(metrics_csv: Path) -> dict:
    """Per layer, the training load per expert of the last epoch (``train/moe/<l>/load/<e>``)."""
    import pandas as pd

    if not metrics_csv.is_file():
        return {}
    frame = pd.read_csv(metrics_csv)
    columns = [c for c in frame.columns if c.startswith("train/moe/") and "/load/" in c]
    if not columns:
        return {}
    last = frame[columns].dropna(how="all").iloc[-1]
    num_experts = 1 + max(int(c.rsplit("/", 1)[1]) for c in columns)
    layers: dict[str, list[float]] = {}
    for column in columns:
        layer, expert = column.split("/")[2], int(column.rsplit("/", 1)[1])
        layers.setdefault(layer, [0.0] * num_experts)[expert] = round(float(last[column]), 3)
    return dict(sorted(layers.items()))

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="seeds 0..runs-1 per case")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="explicit seeds instead of 0..runs-1 (to split work over processes)")
    parser.add_argument("--only", default=None, help="substring filter on case labels")
    parser.add_argument("--cases", nargs="+", default=None,
                        help=f"exact case labels, any of {[label for label, _ in CASES]}")
    parser.add_argument("--faithful", action="store_true",
                        help="run the configs as written (no CPU-budget overrides)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further CLI overrides for every run, e.g. --trainer.max_epochs 50")
    args = parser.parse_args(argv)
    extra = ([] if args.faithful else CPU_BUDGET) + args.extra
    table: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in CASES:
            if args.only is not None and args.only not in label:
                continue
            if args.cases is not None and label not in args.cases:
                continue
            start, scores, loads = time.perf_counter(), [], []
            seeds = args.seeds if args.seeds is not None else list(range(args.runs))
            for seed in seeds:
                results, load = run_one(config, seed, Path(tmp), extra)
                metric, value = next(iter(results["test"].items()))
                scores.append(100.0 * value if metric == "rocauc" else value)
                loads.append(load)
                print(f"{label} seed {seed}: test {metric} {scores[-1]:.3f}", flush=True)
            mean = statistics.mean(scores)
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            digits = 2 if metric == "rocauc" else 3
            table[label] = {"metric": metric, "mean": round(mean, digits),
                            "std": round(std, digits), "seeds": seeds,
                            "scores": [round(s, digits) for s in scores],
                            "seconds": round(time.perf_counter() - start, 1)}
            if any(loads):
                table[label]["train_load_last_epoch"] = loads
            dataset = label.split("/")[1]
            paper = PAPER[dataset]
            print(f"{label:<16} {metric:<7} {mean:.{digits}f} +- {std:.{digits}f} "
                  f"({table[label]['seconds']:.0f} s); paper GCN {paper['GCN']}, "
                  f"GMoE-GCN {paper['GMoE-GCN']}", flush=True)
    out = {"benchmark": "molecule_experiments", "results": table, "paper": PAPER,
           "overrides": extra, "split": "scaffold 80/10/10 (deterministic)",
           "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
           "torch": torch.__version__}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
