"""Mowst inference: the strong expert on the whole graph vs only where it is used.

With a hard inference rule, Mowst needs the GNN's output only on the nodes routed to it.
Conditional inference (``Mowst.predict(..., conditional=True)``) runs the GNN on the L-hop
receptive field of those nodes (``graphmoe.models.mowst_conditional``). This script compares, in
one process on the same graph and model (eval mode), across thresholds that send a given
fraction of the nodes to the weak expert:

* ``gnn``: the strong expert alone: full-graph forward vs conditional
  (``strong_on_nodes``: receptive field by frontier expansion on the cached CSR, then GCN /
  GraphSAGE layer by layer on shrinking fields, other backbones on the receptive subgraph;
  ``--subgraph`` also times the subgraph path for GCN/SAGE);
* ``end_to_end``: ``Mowst.predict`` (weak expert + gate + strong expert + routing) with
  ``conditional=False`` vs ``True``; the weak expert and the gate (dispersion and :math:`G`),
  which both paths run, are timed alone too (``weak_s``, ``gate_s``), and so is the
  conditional path's receptive field and its node-to-row map (``field_s``: ``expand`` +
  ``layerwise_input``);

and checks that the predictions are identical. Graphs:

* the largest real graph present (``cornell5``: 18,660 nodes, 1.58M edges, else ``tolokers``,
  else ``amazon-photo``), with the confidence of an untrained Mowst (thresholds at quantiles of
  C, so routing has no relation to the graph);
* a large sparse CSBM with two regions (``--csbm-nodes``, default 100k nodes, ~1M edges) where
  the gate routes by region (a gate on ``[dispersion, x]`` with a region indicator in ``x``): the
  case a trained Mowst aims at, where the weak expert takes one part of the graph.

The implementations take turns within every repeat, so a change of load on a shared machine
hits them alike; times are medians over ``--repeats``, ratios (``x0.61``, ``*_ratio``) the
median over the repeats of conditional / full within the repeat. With glibc's default malloc,
the full pass's 25 MB buffers are page-faulted in again after the conditional pass's smaller
ones were freed (the heap is trimmed), which inflates the full pass by up to ~30% in paired runs
(a process that runs one path repeatedly does not pay it); so by default freed memory stays in
the heap (``_timing.steady_heap``, ``"steady_heap": true`` in the JSON line) and the computation
alone is measured; ``--default-malloc`` measures with glibc's settings.

    GRAPHMOE_DATA=../shared/datasets python benchmarks/mowst_inference.py   # both graphs
    python benchmarks/mowst_inference.py --no-real --fractions 0.5          # CSBM, half routed
    python benchmarks/mowst_inference.py --quick     # small sizes, a smoke test

Ends with one JSON line ``{"benchmark": "mowst_inference", "speedup": {CASE: full / conditional},
...}``; CASE is ``<graph>@<fraction to weak>``, ``speedup`` is the GNN part, ``end_to_end`` the
whole prediction (both: full / conditional, the inverse of the paired ratio);
``gnn_work_skipped`` is ``1 - aggregation_fraction`` (edges aggregated over
all layers, over what full inference aggregates); ``rows`` has every measurement, the fractions
of nodes and edges touched and the load average before and after. ``e2e_ratio_bound`` (``bound``
in the printed line) is the end-to-end ratio that a conditional GNN costing exactly
``aggregation_fraction`` of the full GNN, with no fixed cost, would reach with the measured weak
expert, gate and combination, which both paths run on every node: about as far as exact
conditional computation of the GNN can bring the whole prediction.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import warnings

import torch
from _timing import CLOCKS, medians, paired_times, steady_heap  # benchmarks/_timing.py
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.models import build_model
from graphmoe.models.mowst import Mowst
from graphmoe.models.mowst_conditional import expand, layerwise_input, strong_on_nodes
from graphmoe.ops import to_csr

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)  # to the weak expert; 1 - these go to the GNN
REAL_GRAPHS = ["cornell5", "tolokers", "amazon-photo"]


CLOCK = CLOCKS["wall"]


def _paired(fns: dict, repeats: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median time of each function and all its times (:func:`_timing.paired_times` with
    ``--clock``)."""
    times = paired_times(fns, repeats, CLOCK)
    return medians(times), times


def _ratio(times: dict[str, list[float]], new: str, old: str) -> float:
    """Median over the repeats of ``new / old`` within each repeat: the paired estimate, which
    cancels what the machine's load does to both within a repeat (steadier than the ratio of
    the medians on a busy shared machine)."""
    return statistics.median(a / b for a, b in zip(times[new], times[old]))


def largest_real_graph(names: list[str], root: str | None) -> list[tuple[str, Data]]:
    """The first of ``names`` present under the data root (all of them with ``--all-real``)."""
    from graphmoe.data import load_dataset

    found = []
    for name in names:
        try:
            found.append((name, load_dataset(name, root)))
        except (FileNotFoundError, ValueError):
            continue
    return found


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
                repeats: int, subgraph: bool = False, max_fraction: float = 0.9) -> list[dict]:
    x, ei = data.x, data.edge_index
    csr = to_csr(ei, data.num_nodes)
    rows = []
    with torch.no_grad():
        for frac, thr in thresholds.items():
            kw = dict(rule="threshold", threshold=thr)
            full = model.predict(x, ei, **kw)
            kw_cond = dict(kw, conditional=True, max_fraction=max_fraction)
            cond = model.predict(x, ei, **kw_cond)
            identical = bool(torch.equal(full.probs.argmax(-1), cond.probs.argmax(-1)))
            max_diff = float((full.probs - cond.probs).abs().max())
            need = ~cond.weak_mask[0]
            weak_logits = model.weak(x, ei)
            fns = {
                "weak": lambda: model.weak(x, ei),  # shared by both paths, with the gate
                "gate": lambda weak_logits=weak_logits: model.gate_logit(weak_logits, x),
                # the conditional path's fixed cost: receptive field and node-to-row map
                "field": lambda need=need: layerwise_input(
                    x, ei, csr, None, expand(csr, need, model.num_hops)),
                "gnn_full": lambda: model.strong(x, ei),
                "gnn_cond": lambda need=need: strong_on_nodes(
                    model.strong, x, ei, None, need, model.num_hops, max_fraction),
                "e2e_full": lambda kw=kw: model.predict(x, ei, **kw),
                "e2e_cond": lambda kw=kw_cond: model.predict(x, ei, **kw),
            }
            if subgraph:  # the receptive-subgraph path, without layer-wise evaluation
                fns["gnn_subgraph"] = lambda need=need: strong_on_nodes(
                    model.strong, x, ei, None, need, model.num_hops, max_fraction,
                    layerwise=False)
            t, times = _paired(fns, repeats)
            ratio = {"gnn": _ratio(times, "gnn_cond", "gnn_full"),
                     "e2e": _ratio(times, "e2e_cond", "e2e_full")}
            if subgraph:
                ratio["subgraph"] = _ratio(times, "gnn_subgraph", "gnn_full")
            stats = cond.stats
            share = stats.get("aggregation_fraction", stats["edge_fraction"])
            # a conditional GNN costing exactly its share of the aggregated edges, no fixed cost
            ideal_e2e = (t["e2e_full"] - (1.0 - share) * t["gnn_full"]) / t["e2e_full"]
            rows.append({
                "case": f"{name}@{frac:.2f}", "graph": name, "num_nodes": data.num_nodes,
                "num_edges": data.num_edges, "fraction_weak": stats["fraction_weak"],
                "fraction_strong": float(need.float().mean()),
                "node_fraction": stats["node_fraction"], "edge_fraction": stats["edge_fraction"],
                "aggregation_fraction": share, "e2e_ratio_bound": ideal_e2e,
                "layerwise": stats.get("layerwise", 0.0), "full_graph": stats["full_graph"],
                **{f"{k}_s": v for k, v in t.items()},
                **{f"{k}_ratio": v for k, v in ratio.items()},
                "identical_predictions": identical, "max_prob_diff": max_diff,
            })
            sub = f" subgraph x{ratio['subgraph']:.2f} |" if subgraph else ""
            print(f"{name:>9s} strong={rows[-1]['fraction_strong']:.2f} "
                  f"touched nodes={stats['node_fraction']:.3f} edges={stats['edge_fraction']:.3f} "
                  f"agg={rows[-1]['aggregation_fraction']:.3f} | "
                  f"GNN {t['gnn_full'] * 1e3:7.1f} -> {t['gnn_cond'] * 1e3:7.1f} ms "
                  f"(x{ratio['gnn']:.2f}) |{sub} end-to-end "
                  f"{t['e2e_full'] * 1e3:7.1f} -> {t['e2e_cond'] * 1e3:7.1f} ms "
                  f"(x{ratio['e2e']:.2f}, bound x{ideal_e2e:.2f}) | shared: weak expert "
                  f"{t['weak'] * 1e3:.1f} ms, gate {t['gate'] * 1e3:.1f} ms | "
                  f"field {t['field'] * 1e3:.1f} ms | "
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
    parser.add_argument("--repeats", type=int, default=15,
                        help="paired rounds; ratios are the median over them (the host is noisy)")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                        help="fractions of the nodes sent to the weak expert")
    parser.add_argument("--real", nargs="+", default=REAL_GRAPHS,
                        help="real graphs to try, in order (the first present is used)")
    parser.add_argument("--all-real", action="store_true", help="every --real graph present")
    parser.add_argument("--root", default=None, help="data root (default: $GRAPHMOE_DATA)")
    parser.add_argument("--no-real", action="store_true", help="skip the real graph")
    parser.add_argument("--no-csbm", action="store_true", help="skip the CSBM")
    parser.add_argument("--max-fraction", type=float, default=0.9,
                        help="conditional inference falls back to the full graph at this share "
                             "of edges (first layer) or nodes (field); 1.0 never falls back")
    parser.add_argument("--subgraph", action="store_true",
                        help="also time the receptive-subgraph path (no layer-wise evaluation)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or the process's CPU time (use with one thread)")
    parser.add_argument("--steady-heap", dest="steady_heap", action="store_true", default=True,
                        help="keep freed memory in malloc (no page faults from trimming), so "
                             "that the order of the paired calls does not change their cost "
                             "(the default)")
    parser.add_argument("--default-malloc", dest="steady_heap", action="store_false",
                        help="glibc's default malloc settings: the full pass's buffers are "
                             "page-faulted in again after the conditional pass (flatters it)")
    args = parser.parse_args()
    steady = steady_heap() if args.steady_heap else False
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    warnings.filterwarnings("ignore")
    repeats = 2 if args.quick else args.repeats
    fractions = tuple(args.fractions)
    rows: list[dict] = []
    load_before = os.getloadavg()

    real = [] if args.no_real or args.quick else largest_real_graph(args.real, args.root)
    for name, data in real if args.all_real else real[:1]:
        model = make_model(data, args.strong, args.hidden, "dispersion")
        with torch.no_grad():
            conf = model(data.x, data.edge_index).confidence
        with torch.no_grad():  # spread C (an untrained gate gives every node ~0.5)
            model.gate.lins[0].weight.fill_(50.0)
            d = model(data.x, data.edge_index).dispersion
            model.gate.lins[0].bias.fill_(-50.0 * float(d.median()))
            conf = model(data.x, data.edge_index).confidence
        rows += bench_graph(name, data, model, quantile_thresholds(conf, fractions), repeats,
                            args.subgraph, args.max_fraction)
    if not args.no_csbm:
        rows += bench_csbm(args, fractions, repeats)

    result = {
        "benchmark": "mowst_inference",
        "speedup": {r["case"]: 1.0 / r["gnn_ratio"] for r in rows},
        "end_to_end": {r["case"]: 1.0 / r["e2e_ratio"] for r in rows},
        "gnn_work_skipped": {r["case"]: 1.0 - r["aggregation_fraction"] for r in rows},
        "nodes_skipped": {r["case"]: 1.0 - r["node_fraction"] for r in rows},
        "identical_predictions": all(r["identical_predictions"] for r in rows),
        "rows": rows,
        "strong": args.strong,
        "max_fraction": args.max_fraction,
        "threads": torch.get_num_threads(), "clock": args.clock, "steady_heap": steady,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_before_after": [load_before, os.getloadavg()],
        "torch": torch.__version__,
    }
    print(json.dumps(result))


def bench_csbm(args: argparse.Namespace, fractions: tuple[float, ...], repeats: int) -> list[dict]:
    """The region-routed CSBM: region 1 to the weak expert (see the module docstring)."""
    rows = []
    data = region_csbm(2_000 if args.quick else args.csbm_nodes)
    model = make_model(data, args.strong, args.hidden, "dispersion+x")
    with torch.no_grad():  # a gate that learned "indicator 1 -> weak": C = sigmoid(20 u - 10)
        model.gate.lins[0].weight.zero_()
        model.gate.lins[0].weight[0, -1] = 20.0
        model.gate.lins[0].bias.fill_(-10.0)
    region = data.region.bool()
    share = float(region.float().mean())
    u = torch.rand(data.num_nodes, generator=torch.Generator().manual_seed(0))
    for frac in fractions:
        # region 1 goes to the weak expert (all of it at frac = its share, ~0.5); other fractions
        # move a random part of one region across, which blurs the boundary
        weak = torch.where(region, u < min(1.0, frac / share),
                           u < max(0.0, frac - share) / (1.0 - share))
        routed = data.clone()
        routed.x = data.x.clone()
        routed.x[:, -1] = weak.float()
        rows += bench_graph("csbm", routed, model, {frac: 0.5}, repeats, args.subgraph,
                            args.max_fraction)
    return rows


if __name__ == "__main__":
    main()
