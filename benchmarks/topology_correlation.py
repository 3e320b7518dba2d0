"""Does Topological Concentration predict per-node link prediction better than degree?

Wang et al., "A Topological Perspective on Demystifying GNN-Based Link Prediction Performance",
ICLR 2024, claim that a node's TC on the test split correlates with its per-node link-prediction
performance more strongly than its degree does. This script runs ``graphmoe topology`` (through
:func:`graphmoe.training.topology.run_topology`) for every dataset x backbone x seed and
aggregates the Spearman correlations (mean ± std over seeds) of each node metric with per-node
MRR, Hits@10 and NDCG@10 on the test split (nodes with at least one test edge).

    OMP_NUM_THREADS=1 python benchmarks/topology_correlation.py                 # all, 3 seeds
    python benchmarks/topology_correlation.py --datasets cora usair --seeds 0   # a subset
    python benchmarks/topology_correlation.py --from-runs                       # re-aggregate

Each run writes ``runs/topology/<dataset>_<model>_s<seed>/`` (``summary.json``, ``nodes.csv``,
plots for seed 0). Prints a Markdown table and ends with one JSON line:
``{"benchmark": "topology_correlation", "speedup": {}, "spearman": {"<dataset>/<model>":
{"<metric>~<perf>": mean}}, "tc_beats_degree": {"tc_test_k1~mrr": [wins, runs], ...}}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

DATASETS = ("cora", "citeseer", "usair", "ns", "pb", "yeast", "celegans", "power", "router",
            "ecoli")
MODELS = ("gcn", "sage")
PERFS = ("mrr", "hits@10", "ndcg@10")
COLUMNS = ("tc_test_k1", "tc_test_k2", "atc_test_k2", "tc_train_k1", "degree_train",
           "degree_test", "density_k1", "clustering")
RUNS = Path("runs/topology")


def run_dir(dataset: str, model: str, seed: int) -> Path:
    return RUNS / f"{dataset}_{model}_s{seed}"


def run_all(datasets, models, seeds, epochs: int, force: bool) -> None:
    import torch

    from graphmoe.training.topology import run_topology

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    for dataset in datasets:
        for model in models:
            for seed in seeds:
                out = run_dir(dataset, model, seed)
                if (out / "summary.json").is_file() and not force:
                    continue
                start = time.perf_counter()
                summary = run_topology(dataset, model, out, seed=seed, epochs=epochs,
                                       rank_k=(10, 20), plots=seed == seeds[0], progress=False)
                print(f"{dataset:>9} {model:>4} seed {seed}: test rocauc "
                      f"{summary['results']['test']['rocauc']:.3f}, node mrr "
                      f"{summary['performance']['mrr']:.3f} ({time.perf_counter() - start:.0f} s)",
                      flush=True)


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(datasets, models, seeds) -> dict:
    rows, spearman, wins = [], {}, {}
    for dataset in datasets:
        for model in models:
            summaries = [json.loads((run_dir(dataset, model, s) / "summary.json").read_text())
                         for s in seeds if (run_dir(dataset, model, s) / "summary.json").is_file()]
            if not summaries:
                continue
            key = f"{dataset}/{model}"
            spearman[key] = {}
            row = {"key": key, "runs": len(summaries),
                   "rocauc": _mean_std([s["results"]["test"]["rocauc"] for s in summaries]),
                   "mrr": _mean_std([s["performance"]["mrr"] for s in summaries])}
            for perf in PERFS:
                for col in COLUMNS:
                    vals = [s["correlation"]["spearman"][col][perf] for s in summaries
                            if s["correlation"]["spearman"][col][perf] is not None]
                    row[(col, perf)] = _mean_std(vals)
                    spearman[key][f"{col}~{perf}"] = row[(col, perf)][0]
                for tc in ("tc_test_k1", "tc_test_k2"):
                    won = wins.setdefault(f"{tc}~{perf}", [0, 0])
                    for s in summaries:
                        rho = s["correlation"]["spearman"]
                        a, b = rho[tc][perf], rho["degree_train"][perf]
                        if a is not None and b is not None:
                            won[0] += int(abs(a) > abs(b))
                            won[1] += 1
            rows.append(row)
    return {"rows": rows, "spearman": spearman, "wins": wins}


def markdown(agg: dict, perf: str) -> str:
    head = ["dataset/model", "runs", "test AUC", "node MRR",
            *(f"ρ({c})" for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in agg["rows"]:
        cells = [row["key"], str(row["runs"]), "{:.3f} ± {:.3f}".format(*row["rocauc"]),
                 "{:.3f} ± {:.3f}".format(*row["mrr"])]
        cells += ["{:+.2f} ± {:.2f}".format(*row[(c, perf)]) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--from-runs", action="store_true", help="only aggregate existing runs")
    parser.add_argument("--force", action="store_true", help="re-run finished runs")
    args = parser.parse_args()
    if not args.from_runs:
        run_all(args.datasets, args.models, args.seeds, args.epochs, args.force)
    agg = aggregate(args.datasets, args.models, args.seeds)
    for perf in PERFS:
        print(f"\nSpearman correlation with per-node {perf} on the test split "
              f"(mean ± std over seeds)\n")
        print(markdown(agg, perf))
    print("\n|TC| > |degree_train| (Spearman), runs won / runs:")
    for key, (won, total) in agg["wins"].items():
        print(f"  {key}: {won}/{total}")
    print(json.dumps({"benchmark": "topology_correlation", "speedup": {},
                      "spearman": agg["spearman"], "tc_beats_degree": agg["wins"]}))


if __name__ == "__main__":
    main()
