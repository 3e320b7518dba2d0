"""GMoE-GCN vs GCN (and GMoE with a shared expert): accuracy and per-expert load.

Every run is a real ``graphmoe fit --config ...`` (in-process, like
``benchmarks/node_classification.py``); the metric is read back from the run's
``results.json``. After each GMoE run, the best checkpoint (already loaded by ``fit``) routes
the whole graph once in eval mode, and the fraction of (node, expert) assignments that each
expert received is recorded per layer, with the share of the hop-1 / hop-2 experts and the
normalised load entropy (1 = perfectly balanced).

    OMP_NUM_THREADS=1 python benchmarks/gmoe_experiments.py --suite planetoid --runs 5
    OMP_NUM_THREADS=1 python benchmarks/gmoe_experiments.py --suite heterophily --runs 3
    OMP_NUM_THREADS=1 python benchmarks/gmoe_experiments.py --suite speed

``--suite speed`` times one GMoEConv layer (forward + backward) three ways on a random graph:
sparse dispatch (graphmoe), every expert on every node with the aggregation shared per hop
(``GMoEConv.dense_forward``), and the reference code's scheme (each expert a GCN layer of its
own: E propagations, every node through every expert).

Ends with one JSON line: ``{"benchmark": "gmoe_experiments/<suite>", "results": {...}}``
(``"speedup"`` for the speed suite: reference time / graphmoe time).
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
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # sane timings on a shared machine

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@dataclass
class Case:
    """One (model, dataset) cell; ``vary`` is ``"seed"`` or ``"split"``."""

    label: str
    config: str
    vary: str = "seed"
    overrides: list[str] = field(default_factory=list)


SHARED = ["--model.backbone_kwargs.num_shared_experts", "1"]


def _cases(dataset: str, vary: str) -> list[Case]:
    return [Case(f"gcn/{dataset}", f"gcn/{dataset}.yaml", vary),
            Case(f"gmoe/{dataset}", f"gmoe/{dataset}.yaml", vary),
            Case(f"gmoe+shared/{dataset}", f"gmoe/{dataset}.yaml", vary, SHARED)]


SUITES: dict[str, list[Case]] = {
    "planetoid": _cases("cora", "seed") + _cases("citeseer", "seed"),
    "heterophily": _cases("minesweeper", "split") + _cases("tolokers", "split"),
}

# Platonov et al.'s setup (hidden 512, 5 layers, lr 3e-5, 1000 steps) takes ~40 min per GCN run
# on 2 CPU cores; the CPU budget trains smaller models for fewer steps, GCN and GMoE alike.
CPU_BUDGET = {"heterophily": ["--model.hidden_channels", "64", "--model.num_layers", "3",
                              "--model.lr", "0.003", "--trainer.max_epochs", "200"]}


def routing_load(module, data) -> dict | None:
    """Per-layer expert load of the (best) model in eval mode on the whole graph."""
    model = module.model
    if not hasattr(model, "aux_metrics"):
        return None
    module.eval()
    with torch.no_grad():
        model(data.x, data.edge_index, data.get("edge_weight"))
    metrics = {k: float(v) for k, v in model.aux_metrics().items()}
    layers = []
    for i, conv in enumerate(model.convs):
        layers.append({
            "load": [round(metrics[f"moe/{i}/load/{e}"], 4) for e in range(conv.num_experts)],
            "hops": {str(h): round(metrics[f"moe/{i}/hop{h}"], 4) for h in conv.hops},
            "load_balance": round(metrics[f"moe/{i}/load_balance"], 4),
        })
    return {"layers": layers}


def run_one(case: Case, index: int, out_dir: Path, extra: list[str]) -> tuple[dict, dict | None]:
    """``graphmoe fit`` once; returns ``results.json`` and the routing load."""
    from graphmoe.cli import GraphMoECLI

    vary = ["--seed_everything", str(index)] if case.vary == "seed" else ["--data.split", str(index)]
    args = ["fit", "--config", str(CONFIGS / case.config), *vary, *case.overrides, *extra,
            "--trainer.logger.init_args.save_dir", str(out_dir),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    cli = GraphMoECLI(args=args)
    results = json.loads((Path(cli.trainer.log_dir) / "results.json").read_text())
    return results, routing_load(cli.model, cli.datamodule.data)


def mean_load(loads: list[dict]) -> dict:
    """Average the per-run load tables (same architecture in every run)."""
    out = []
    for i in range(len(loads[0]["layers"])):
        layers = [load["layers"][i] for load in loads]
        out.append({
            "load": [round(statistics.mean(v), 3) for v in zip(*(la["load"] for la in layers))],
            "hops": {h: round(statistics.mean(la["hops"][h] for la in layers), 3)
                     for h in layers[0]["hops"]},
            "load_balance": round(statistics.mean(la["load_balance"] for la in layers), 3),
        })
    return {"layers": out}


def accuracy_suite(args: argparse.Namespace) -> dict:
    cases = [c for c in SUITES[args.suite] if args.only is None or args.only in c.label]
    extra = ([] if args.faithful else CPU_BUDGET.get(args.suite, [])) + args.extra
    table: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            start, scores, loads = time.perf_counter(), [], []
            for index in range(args.runs):
                results, load = run_one(case, index, Path(tmp), extra)
                metric, value = next(iter(results["test"].items()))
                scores.append(100.0 * value)
                if load is not None:
                    loads.append(load)
            mean = statistics.mean(scores)
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            row = {"metric": metric, "mean": round(mean, 2), "std": round(std, 2),
                   "runs": args.runs, "vary": case.vary, "scores": [round(s, 2) for s in scores],
                   "seconds": round(time.perf_counter() - start, 1)}
            if loads:
                row["routing"] = mean_load(loads)
            table[case.label] = row
            print(f"{case.label:<28} {metric:<7} {mean:6.2f} +- {std:5.2f}  "
                  f"({row['seconds']:.0f} s)", flush=True)
            if loads:
                for i, layer in enumerate(row["routing"]["layers"]):
                    print(f"    layer {i}: load {layer['load']} hops {layer['hops']} "
                          f"balance {layer['load_balance']}", flush=True)
    return {"benchmark": f"gmoe_experiments/{args.suite}", "results": table, "overrides": extra}


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (builds the cached CSR)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_layer(conv, x: torch.Tensor, edge_index: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median forward + backward seconds of one GMoEConv computed three ways."""
    from graphmoe.models.conv.gcn_conv import gcn_propagate

    def sparse():
        out, aux = conv(x, edge_index)
        (out.square().mean() + aux.loss).backward()

    def dense_shared():
        routing = conv.router(x)
        out = conv.dense_forward(x, edge_index, routing=routing)
        (out.square().mean() + conv.auxiliary(routing).loss).backward()

    def reference():
        # GMoE's code: every expert is a GCN layer of its own (its own propagation).
        routing = conv.router(x)
        gates = routing.dense_weight()
        _, norm, loop = conv._norm(x, edge_index, None)
        out = 0
        for e in range(conv.num_experts):
            h = x @ conv.weight[e]
            for _ in range(conv.hops[int(conv.hop_of_expert[e])]):
                h = gcn_propagate(h, edge_index, norm, loop)
            out = out + gates[:, e:e + 1] * (h + conv.bias[e])
        (out.square().mean() + conv.auxiliary(routing).loss).backward()

    return {name: _time(fn, repeats) for name, fn in
            (("sparse", sparse), ("dense_shared", dense_shared), ("reference", reference))}


def speed_suite(args: argparse.Namespace) -> dict:
    from graphmoe.models import GMoEConv

    n, d, num_edges = args.nodes, args.channels, args.nodes * 10
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen, requires_grad=True)
    edge_index = torch.randint(0, n, (2, num_edges), generator=gen)
    speedup, times = {}, {}
    for num_experts in args.experts:
        conv = GMoEConv(d, d, num_experts=num_experts, k=2, router="topk", backend="torch")
        torch.nn.init.normal_(conv.router.gate.weight)
        t = time_layer(conv, x, edge_index, args.repeats)
        times[f"E={num_experts}"] = {k: round(v * 1e3, 1) for k, v in t.items()}
        speedup[f"E={num_experts}"] = round(t["reference"] / t["sparse"], 2)
        speedup[f"E={num_experts}/vs_dense_shared"] = round(t["dense_shared"] / t["sparse"], 2)
        print(f"E={num_experts:<3} sparse {t['sparse'] * 1e3:8.1f} ms   dense (shared hops) "
              f"{t['dense_shared'] * 1e3:8.1f} ms   reference-style {t['reference'] * 1e3:8.1f} ms",
              flush=True)
    return {"benchmark": "gmoe_experiments/speed", "speedup": speedup, "times_ms": times,
            "nodes": n, "edges": num_edges, "channels": d, "k": 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=[*sorted(SUITES), "speed"], default="planetoid")
    parser.add_argument("--runs", type=int, default=5, help="seeds or splits per case")
    parser.add_argument("--only", default=None, help="substring filter on case labels")
    parser.add_argument("--faithful", action="store_true",
                        help="run the configs as written (no CPU-budget overrides)")
    parser.add_argument("--nodes", type=int, default=20000, help="speed suite: nodes")
    parser.add_argument("--channels", type=int, default=64, help="speed suite: features")
    parser.add_argument("--experts", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further CLI overrides for every run, e.g. --trainer.max_epochs 50")
    args = parser.parse_args(argv)
    out = speed_suite(args) if args.suite == "speed" else accuracy_suite(args)
    out.update(machine=f"{platform.machine()} {torch.get_num_threads()} threads",
               torch=torch.__version__)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
