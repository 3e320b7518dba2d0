"""Aggregation on a subset of the targets, and GCN's self-loop term fused into the product.

Compares, in one process on one random graph (no gradient, as in inference):

* ``rows``: the rows of a share of the targets, by ``graphmoe.ops.aggregate_rows`` (compiled:
  straight from the graph's CSR; ``gathered``: the fallback that gathers a sub-CSR) against the
  whole-graph ``aggregate`` (which computes every row) and ``aggregate(...)[rows]``; and with a
  compact input read through ``x_index`` (a layer after the first of a receptive field). Rows
  in increasing order (as Mowst's receptive fields give them, hop by hop) and in random order
  (each row's entries then lie anywhere in the CSR);
* ``self``: ``aggregate(..., self_weight=s)`` (one pass of the compiled kernel) against the
  product followed by ``out.add_(s[:, None] * x)`` (what ``gcn_propagate`` did before).

Times are medians over ``--repeats`` rounds in which the implementations take turns; ratios are
against the whole-graph product. Ends with one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/row_subset.py --clock cpu
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import torch
from _timing import CLOCKS, medians, paired_times  # benchmarks/_timing.py

from graphmoe.ops import aggregate, aggregate_rows, cpu_kernels, to_csr


def graph(num_nodes: int, num_edges: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    return edge_index, torch.rand(num_edges, generator=gen)


def bench_rows(edge_index, weight, num_nodes, width, share, order, repeats, clock) -> dict:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(num_nodes, width, generator=gen)
    rows = torch.randperm(num_nodes, generator=gen)[:int(share * num_nodes)]
    if order == "sorted":
        rows = rows.sort().values
    csr = to_csr(edge_index, num_nodes)
    x_index = torch.empty(num_nodes, dtype=torch.long)
    x_index[rows] = torch.arange(rows.numel())
    sources = torch.zeros(num_nodes, dtype=torch.bool)
    sources[csr.col] = True  # a compact input holding every node read (here: all but a few)
    compact = sources.nonzero().view(-1)
    x_index[compact] = torch.arange(compact.numel())
    x_compact = x.index_select(0, compact)
    fns = {
        "whole_graph": lambda: aggregate(x, csr, weight),
        "whole_graph_then_select": lambda: aggregate(x, csr, weight).index_select(0, rows),
        "rows": lambda: aggregate_rows(x, csr, rows, weight),
        "rows_x_index": lambda: aggregate_rows(x_compact, csr, rows, weight, x_index=x_index),
    }
    compiled = cpu_kernels.spmm_sum_rows
    try:  # the fallback: a gathered sub-CSR
        cpu_kernels.spmm_sum_rows = lambda *args: None
        gathered = aggregate_rows(x, csr, rows, weight)
    finally:
        cpu_kernels.spmm_sum_rows = compiled

    def gathered_fn():
        cpu_kernels.spmm_sum_rows = lambda *args: None
        try:
            return aggregate_rows(x, csr, rows, weight)
        finally:
            cpu_kernels.spmm_sum_rows = compiled

    fns["rows_gathered"] = gathered_fn
    reference = aggregate(x, csr, weight).index_select(0, rows)
    exact = bool(torch.equal(aggregate_rows(x, csr, rows, weight), reference)
                 and torch.equal(aggregate_rows(x_compact, csr, rows, weight, x_index=x_index),
                                 reference))
    t = medians(paired_times(fns, repeats, clock))
    return {"width": width, "share": share, "order": order,
            **{f"{k}_s": v for k, v in t.items()},
            "rows_ratio": t["rows"] / t["whole_graph"],
            "identical": exact,
            "gathered_max_diff": float((gathered - reference).abs().max())}


def bench_self(edge_index, weight, num_nodes, width, repeats, clock) -> dict:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(num_nodes, width, generator=gen)
    self_weight = torch.rand(num_nodes, generator=gen)
    csr = to_csr(edge_index, num_nodes)
    fns = {
        "product_then_add": lambda: aggregate(x, csr, weight).add_(self_weight.unsqueeze(-1) * x),
        "fused": lambda: aggregate(x, csr, weight, self_weight=self_weight),
    }
    diff = float((fns["fused"]() - fns["product_then_add"]()).abs().max())
    t = medians(paired_times(fns, repeats, clock))
    return {"width": width, **{f"{k}_s": v for k, v in t.items()},
            "fused_ratio": t["fused"] / t["product_then_add"], "max_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--widths", type=int, nargs="+", default=[5, 64])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.edges, args.repeats = 2_000, 20_000, 2
    clock = CLOCKS[args.clock]
    edge_index, weight = graph(args.nodes, args.edges)
    rows, selfs = [], []
    with torch.no_grad():
        for width in args.widths:
            for share, order in ((s, o) for s in args.shares for o in ("sorted", "random")):
                r = bench_rows(edge_index, weight, args.nodes, width, share, order, args.repeats,
                               clock)
                rows.append(r)
                print(f"rows  F={width:3d} share={share:.1f} {order:>6s} | whole graph "
                      f"{r['whole_graph_s'] * 1e3:6.2f} ms | then select "
                      f"{r['whole_graph_then_select_s'] * 1e3:6.2f} | aggregate_rows "
                      f"{r['rows_s'] * 1e3:6.2f} (x{r['rows_ratio']:.2f}) | with x_index "
                      f"{r['rows_x_index_s'] * 1e3:6.2f} | gathered {r['rows_gathered_s'] * 1e3:6.2f}"
                      f" | identical={r['identical']}", flush=True)
            s = bench_self(edge_index, weight, args.nodes, width, args.repeats, clock)
            selfs.append(s)
            print(f"self  F={width:3d} | product + add {s['product_then_add_s'] * 1e3:6.2f} ms | "
                  f"fused {s['fused_s'] * 1e3:6.2f} ms (x{s['fused_ratio']:.2f}) | max diff "
                  f"{s['max_diff']:.1e}", flush=True)
    print(json.dumps({
        "benchmark": "row_subset", "nodes": args.nodes, "edges": args.edges,
        "compiled": cpu_kernels.available(), "rows": rows, "self": selfs,
        "speedup": {f"rows_F{r['width']}@{r['share']}_{r['order']}": 1.0 / r["rows_ratio"]
                    for r in rows}
        | {f"self_F{s['width']}": 1.0 / s["fused_ratio"] for s in selfs},
        "threads": torch.get_num_threads(), "clock": args.clock,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
