"""FED-PUB reproduction grid: datasets x partitions x algorithms x seeds, in-process engine.

Each (dataset, partition) runs ``configs/federated/<dataset>_<mode><n>.yaml`` through
:func:`graphmoe.federated.run.run_federated` once per seed (output in
``<out>/<dataset>_<mode><n>/seed<k>``; ``--resume`` continues interrupted runs and skips
finished ones). The metric is the mean local test accuracy over clients at the round with the
best mean local validation accuracy. Datasets whose files are missing are skipped. Writes
``results.json`` and ``results.md`` in ``--out`` and ends with one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/federated_experiments.py                      # full grid
    OMP_NUM_THREADS=1 python benchmarks/federated_experiments.py --datasets cora \\
        --partitions disjoint10,overlapping30 --seeds 0                               # two cells
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # sane timings on a shared machine

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "federated"
DATASETS = ["cora", "citeseer", "photo", "pubmed", "computers", "arxiv"]
PARTITIONS = ["disjoint5", "disjoint10", "disjoint20", "overlapping10", "overlapping30",
              "overlapping50"]
ALGORITHMS = ["local", "fedavg", "fedprox", "fedper", "fedpub"]
# The reference repository's README (JinheonBaek/FED-PUB), Cora, 100 rounds.
REFERENCE = {"cora_disjoint10": {"fedpub": 81.44, "fedavg": 68.80},
             "cora_overlapping30": {"fedpub": 75.79, "fedavg": 54.44}}


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def run_cell(cell: str, seed: int, algorithms: list[str], rounds: int | None, out: Path,
             resume: bool) -> dict[str, dict] | None:
    from graphmoe.data import DatasetNotFoundError
    from graphmoe.federated.config import FederatedConfig, load_config
    from graphmoe.federated.run import run_federated

    config = load_config(CONFIGS / f"{cell}.yaml")
    config = FederatedConfig(**{**config.__dict__, "seed": seed,
                                **({"rounds": rounds} if rounds else {})})
    config = config.select([a for a in algorithms
                            if any(a in (s.label, s.name) for s in config.algorithms)])
    try:
        histories = run_federated(config, out=str(out / cell / f"seed{seed}"), resume=resume,
                                  progress=sys.stderr.isatty())
    except (DatasetNotFoundError, FileNotFoundError) as err:
        print(f"skipping {cell}: {' '.join(str(err).split())[:200]}", flush=True)
        return None
    return {label: h.result() for label, h in histories.items()}


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def markdown(table: dict[str, dict[str, list[float]]], algorithms: list[str],
             seeds: list[int], rounds: str) -> str:
    lines = [f"Mean local test accuracy (%) at the best validation round, {rounds} rounds, "
             f"seeds {', '.join(map(str, seeds))} (mean ± std over seeds); reference: the "
             f"FED-PUB repository's README.", "",
             "| dataset / partition | " + " | ".join(algorithms) + " | reference |",
             "|---" * (len(algorithms) + 2) + "|"]
    for cell, results in table.items():
        ref = ", ".join(f"{k} {v:.2f}" for k, v in REFERENCE.get(cell, {}).items()) or "-"
        lines.append(f"| {cell} | " + " | ".join(_fmt(results.get(a, [])) for a in algorithms)
                     + f" | {ref} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=_csv, default=DATASETS,
                        help=f"comma-separated, from {','.join(DATASETS)}")
    parser.add_argument("--partitions", type=_csv, default=PARTITIONS,
                        help=f"comma-separated, from {','.join(PARTITIONS)}")
    parser.add_argument("--algorithms", type=_csv, default=ALGORITHMS)
    parser.add_argument("--seeds", type=lambda v: [int(s) for s in _csv(v)], default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=None, help="override the configs' 100")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "federated_experiments")
    parser.add_argument("--resume", action="store_true", help="continue/skip finished runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cells = [f"{d}_{p}" for d in args.datasets for p in args.partitions]
    unknown = [c for c in cells if not (CONFIGS / f"{c}.yaml").is_file()]
    if unknown:
        parser.error(f"no config for {', '.join(unknown)} in {CONFIGS}")
    args.out.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, list[float]]] = {}
    runs: list[dict] = []
    start = time.perf_counter()
    for cell in cells:
        for seed in args.seeds:
            results = run_cell(cell, seed, args.algorithms, args.rounds, args.out, args.resume)
            if results is None:
                break
            for label, result in results.items():
                table.setdefault(cell, {}).setdefault(label, []).append(result["test_acc"])
                runs.append({"cell": cell, "seed": seed, "algorithm": label, **result})
                print(f"{cell} seed {seed} {label}: test {100 * result['test_acc']:.2f} "
                      f"(best round {result['best_round']}, {result['wall_time_s']:.1f} s)",
                      flush=True)
    rounds = str(args.rounds or 100)
    summary = {cell: {a: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1
                          else 0.0, "n": len(v)} for a, v in res.items()}
               for cell, res in table.items()}
    (args.out / "results.json").write_text(json.dumps(
        {"results": summary, "runs": runs, "reference": REFERENCE}, indent=2) + "\n")
    md = markdown(table, args.algorithms, args.seeds, rounds)
    (args.out / "results.md").write_text(md)
    print(md)
    gaps = {cell: round(100 * summary[cell]["fedpub"]["mean"] - ref["fedpub"], 2)
            for cell, ref in REFERENCE.items() if "fedpub" in summary.get(cell, {})}
    print(json.dumps({
        "benchmark": "federated_experiments",
        "results": {c: {a: round(100 * r["mean"], 2) for a, r in res.items()}
                    for c, res in summary.items()},
        "fedpub_minus_reference": gaps,
        "seeds": args.seeds, "rounds": int(rounds),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
