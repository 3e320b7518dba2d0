"""Mowst inference: the strong expert on the whole graph vs only where it is used.

With a hard inference rule, Mowst needs the GNN's output only on the nodes routed to it.
Conditional inference (``Mowst.predict(..., conditional=True)``) runs the GNN on the L-hop
receptive field of those nodes (``graphmoe.models.mowst_conditional``). This script compares, in
one process on the same graph and model (eval mode), across thresholds that send a given
fraction of the nodes to the weak expert:

* ``gnn``: the strong expert alone: full-graph forward vs receptive-field extraction + forward
  on the subgraph (the part conditional computation changes);
* ``end_to_end``: ``Mowst.predict`` (weak expert + gate + strong expert + routing) with
  ``conditional=False`` vs ``True``;

and checks that the predictions are identical. Graphs:

* the largest real graph present (``cornell5``: 18,660 nodes, 1.58M edges, else ``tolokers``,
  else ``amazon-photo``), with the confidence of an untrained Mowst (thresholds at quantiles of
  C, so routing has no relation to the graph);
* a large sparse CSBM with two regions (``--csbm-nodes``, default 100k nodes, ~1M edges) where
  the gate routes by region (a gate on ``[dispersion, x]`` with a region indicator in ``x``): the
  case a trained Mowst aims at, where the weak expert takes one part of the graph.

    python benchmarks/mowst_inference.py             # both graphs
    python benchmarks/mowst_inference.py --quick     # small sizes, a smoke test

Ends with one JSON line ``{"benchmark": "mowst_inference", "speedup": {CASE: full / conditional},
...}``; CASE is ``<graph>@<fraction to weak>``, ``speedup`` is the GNN part, ``end_to_end`` the
whole prediction; ``gnn_work_skipped`` is ``1 - edge_fraction`` of the subgraph.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import torch
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.models import build_model
from graphmoe.models.mowst import Mowst
from graphmoe.models.mowst_conditional import strong_on_nodes

FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (CSR caches, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def largest_real_graph() -> tuple[str, Data] | None:
    from graphmoe.data import load_dataset

    for name in ("cornell5", "tolokers", "amazon-photo"):
        try:
            return name, load_dataset(name)
        except (FileNotFoundError, ValueError):
            continue
    return None


def region_csbm(num_nodes: int) -> Data:
    """A two-region CSBM with a region-indicator feature appended (what lets a gate on
    ``[dispersion, x]`` route by region)."""
    from graphmoe.data import csbm

    data = csbm(num_nodes=num_nodes, num_features=63, avg_degree=10.0, seed=0)
    data.x = torch.cat([data.x, data.region.float().unsqueeze(-1)], dim=-1)
    return data


def make_model(data: Data, strong: str, hidden: int, gate_input: str) -> Mowst:
    torch.manual_seed(0)
    c = int(data.y.max()) + 1
    f = data.num_features
    weak = build_model("mlp", in_channels=f, hidden_channels=hidden, num_layers=2, out_channels=c)
    gnn = build_model(strong, in_channels=f, hidden_channels=hidden, num_layers=2, out_channels=c)
    return Mowst(weak, gnn, gate_input=gate_input, gate_layers=1).eval()


def bench_graph(name: str, data: Data, model: Mowst, thresholds: dict[float, float],
                repeats: int) -> list[dict]:
    x, ei = data.x, data.edge_index
    rows = []
    with torch.no_grad():
        t_gnn_full = _time(lambda: model.strong(x, ei), repeats)
        for frac, thr in thresholds.items():
            kw = dict(rule="threshold", threshold=thr)
            full = model.predict(x, ei, **kw)
            cond = model.predict(x, ei, conditional=True, **kw)
            identical = bool(torch.equal(full.probs.argmax(-1), cond.probs.argmax(-1)))
            max_diff = float((full.probs - cond.probs).abs().max())
            need = ~cond.weak_mask[0]
            t_gnn_cond = _time(lambda need=need: strong_on_nodes(
                model.strong, x, ei, None, need, model.num_hops), repeats)
            t_e2e_full = _time(lambda kw=kw: model.predict(x, ei, **kw), repeats)
            t_e2e_cond = _time(lambda kw=kw: model.predict(x, ei, conditional=True, **kw),
                               repeats)
            stats = cond.stats
            rows.append({
                "case": f"{name}@{frac:.2f}", "graph": name, "num_nodes": data.num_nodes,
                "num_edges": data.num_edges, "fraction_weak": stats["fraction_weak"],
                "node_fraction": stats["node_fraction"], "edge_fraction": stats["edge_fraction"],
                "gnn_full_s": t_gnn_full, "gnn_cond_s": t_gnn_cond,
                "e2e_full_s": t_e2e_full, "e2e_cond_s": t_e2e_cond,
                "identical_predictions": identical, "max_prob_diff": max_diff,
            })
            print(f"{name:>9s} weak={stats['fraction_weak']:.2f} "
                  f"touched nodes={stats['node_fraction']:.3f} edges={stats['edge_fraction']:.3f} | "
                  f"GNN {t_gnn_full * 1e3:7.1f} -> {t_gnn_cond * 1e3:7.1f} ms "
                  f"(x{t_gnn_cond / t_gnn_full:.2f}) | end-to-end {t_e2e_full * 1e3:7.1f} -> "
                  f"{t_e2e_cond * 1e3:7.1f} ms (x{t_e2e_cond / t_e2e_full:.2f}) | "
                  f"identical={identical}", flush=True)
    return rows


def quantile_thresholds(conf: Tensor, fractions) -> dict[float, float]:
    """Thresholds sending about ``frac`` of the nodes to the weak expert (C >= threshold)."""
    return {f: float(torch.quantile(conf, 1.0 - f)) for f in fractions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--csbm-nodes", type=int, default=100_000)
    parser.add_argument("--strong", default="gcn", help="strong expert (gcn, sage, gat, gin)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-real", action="store_true", help="skip the real graph")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    repeats = 2 if args.quick else args.repeats
    rows: list[dict] = []

    real = None if args.no_real or args.quick else largest_real_graph()
    if real is not None:
        name, data = real
        model = make_model(data, args.strong, args.hidden, "dispersion")
        with torch.no_grad():
            conf = model(data.x, data.edge_index).confidence
        with torch.no_grad():  # spread C (an untrained gate gives every node ~0.5)
            model.gate.lins[0].weight.fill_(50.0)
            d = model(data.x, data.edge_index).dispersion
            model.gate.lins[0].bias.fill_(-50.0 * float(d.median()))
            conf = model(data.x, data.edge_index).confidence
        rows += bench_graph(name, data, model, quantile_thresholds(conf, FRACTIONS), repeats)

    data = region_csbm(2_000 if args.quick else args.csbm_nodes)
    model = make_model(data, args.strong, args.hidden, "dispersion+x")
    with torch.no_grad():  # a gate that learned "indicator 1 -> weak": C = sigmoid(20 u - 10)
        model.gate.lins[0].weight.zero_()
        model.gate.lins[0].weight[0, -1] = 20.0
        model.gate.lins[0].bias.fill_(-10.0)
    region = data.region.bool()
    share = float(region.float().mean())
    u = torch.rand(data.num_nodes, generator=torch.Generator().manual_seed(0))
    for frac in FRACTIONS:
        # region 1 goes to the weak expert (all of it at frac = its share, ~0.5); other fractions
        # move a random part of one region across, which blurs the boundary
        weak = torch.where(region, u < min(1.0, frac / share),
                           u < max(0.0, frac - share) / (1.0 - share))
        routed = data.clone()
        routed.x = data.x.clone()
        routed.x[:, -1] = weak.float()
        rows += bench_graph("csbm", routed, model, {frac: 0.5}, repeats)

    result = {
        "benchmark": "mowst_inference",
        "speedup": {r["case"]: r["gnn_full_s"] / r["gnn_cond_s"] for r in rows},
        "end_to_end": {r["case"]: r["e2e_full_s"] / r["e2e_cond_s"] for r in rows},
        "gnn_work_skipped": {r["case"]: 1.0 - r["edge_fraction"] for r in rows},
        "nodes_skipped": {r["case"]: 1.0 - r["node_fraction"] for r in rows},
        "identical_predictions": all(r["identical_predictions"] for r in rows),
        "rows": rows,
        "strong": args.strong,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
