"""Message-passing speed: ``graphmoe.ops.aggregate`` vs PyG's own paths, side by side.

Compares, for ``sum``/``mean``/``max``, forward and forward+backward of

* ``agg``:  the raw aggregation ``o_i = reduce_{j -> i} x_j``;
* ``sage``: a SAGEConv layer ``o_i = W_1 x_i + W_2 reduce_{j -> i} x_j``,

for these implementations (all in this process, on the same random graph):

* ``graphmoe``:   ``graphmoe.ops.aggregate(x, edge_index)`` (CSR cached once per graph);
* ``edge_index``: PyG ``MessagePassing`` with ``edge_index`` (gather + scatter);
* ``adj_t``:      PyG ``MessagePassing`` with a ``torch.sparse_csr`` ``adj_t`` (PyG's fastest
  path without pyg-lib / torch-sparse, built once outside the timing);
* ``torch_scatter``: gather + ``torch_scatter.scatter`` (``agg`` only; when installed).

``x`` requires grad (as for a hidden layer), so backward passes go through the aggregation.

    python benchmarks/message_passing.py              # 100k nodes, 1M edges, 64 features
    python benchmarks/message_passing.py --quick      # tiny sizes, a smoke test

Ends with one JSON line: ``{"benchmark": "message_passing", "speedup": {...}, ...}`` where
``speedup[CASE] = baseline_time / graphmoe_time``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch_geometric.nn import SAGEConv, SimpleConv
from torch_geometric.utils import coalesce, to_torch_csr_tensor

from graphmoe.ops import aggregate, to_csr

try:
    import torch_scatter
except ImportError:  # optional extra `graphmoe[scatter]`
    torch_scatter = None

REDUCTIONS = ("sum", "mean", "max")
IMPLS = ("graphmoe", "edge_index", "adj_t", "torch_scatter")


class GraphMoESAGE(torch.nn.Module):
    r"""Same math as PyG's ``SAGEConv`` (``root_weight=True``, no projection/normalisation):
    :math:`\mathbf{o}_i = \mathbf{W}_1 \mathbf{x}_i + \mathbf{W}_2 \cdot
    \operatorname{reduce}_{j \to i} \mathbf{x}_j`, aggregating with ``graphmoe.ops``."""

    def __init__(self, pyg: SAGEConv) -> None:
        super().__init__()
        self.aggr = pyg.aggr
        self.lin_l, self.lin_r = pyg.lin_l, pyg.lin_r  # shared weights: identical outputs

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.lin_l(aggregate(x, edge_index, reduce=self.aggr)) + self.lin_r(x)


def measure(cases: dict[str, Callable[[], Tensor]], grad: Tensor | None, x: Tensor,
            repeats: int, warmup: int, clock: Callable[[], float]) -> dict[str, float]:
    """Median time in ms of each ``fn()`` (plus ``out.backward(grad)`` if ``grad``).

    The implementations take turns inside every repeat, so a burst of load from other
    processes on a shared machine hits all of them alike.
    """
    def step(fn: Callable[[], Tensor]) -> float:
        x.grad = None
        start = clock()
        out = fn()
        if grad is not None:
            out.backward(grad)
        return clock() - start

    for fn in cases.values():
        for _ in range(warmup):
            step(fn)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(step(fn))
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def build_cases(x: Tensor, edge_index: Tensor, adj_t: Tensor, reduce: str
                ) -> dict[str, dict[str, Callable[[], Tensor]]]:
    src, dst = edge_index
    n = x.size(0)
    simple = SimpleConv(aggr=reduce)
    pyg_sage = SAGEConv(x.size(1), x.size(1), aggr=reduce)
    ours_sage = GraphMoESAGE(pyg_sage)
    agg = {
        "graphmoe": lambda: aggregate(x, edge_index, reduce=reduce),
        "edge_index": lambda: simple(x, edge_index),
        "adj_t": lambda: simple(x, adj_t),
    }
    if torch_scatter is not None:
        agg["torch_scatter"] = lambda: _torch_scatter(x, src, dst, n, reduce)
    sage = {
        "graphmoe": lambda: ours_sage(x, edge_index),
        "edge_index": lambda: pyg_sage(x, edge_index),
        "adj_t": lambda: pyg_sage(x, adj_t),
    }
    return {"agg": agg, "sage": sage}


def _torch_scatter(x: Tensor, src: Tensor, dst: Tensor, n: int, reduce: str) -> Tensor:
    out = torch_scatter.scatter(x[src], dst, dim=0, dim_size=n, reduce=reduce)
    return out


def check_same(cases: dict[str, Callable[[], Tensor]], reduce: str) -> None:
    """Every implementation must agree before we time it."""
    with torch.no_grad():
        ref = cases["edge_index"]()
        for name, fn in cases.items():
            if not torch.allclose(fn(), ref, atol=1e-4, rtol=1e-4):
                raise RuntimeError(f"{name} disagrees with PyG edge_index for reduce={reduce}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.system()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--feats", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: process CPU time, robust on a busy shared machine (use "
                             "with --threads 1: spinning threads inflate it otherwise)")
    parser.add_argument("--reduce", nargs="+", default=list(REDUCTIONS), choices=REDUCTIONS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.edges, args.feats, args.repeats = 1000, 10_000, 16, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
    torch.manual_seed(args.seed)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    n, e, f = args.nodes, args.edges, args.feats
    # PyG's adj_t drops duplicate edges, so compare on a simple graph (sorted like PyG's):
    edge_index = coalesce(torch.randint(0, n, (2, e)), num_nodes=n)
    e = edge_index.size(1)
    x = torch.randn(n, f, requires_grad=True)
    grad = torch.randn(n, f)

    # One-off preprocessing, outside the timed loops (reported for completeness):
    start = time.perf_counter()
    to_csr(edge_index, n).transpose()
    csr_ms = 1000 * (time.perf_counter() - start)
    start = time.perf_counter()
    adj_t = to_torch_csr_tensor(edge_index.flip(0), size=(n, n))
    adj_ms = 1000 * (time.perf_counter() - start)

    times: dict[str, float] = {}
    speedup: dict[str, float] = {}
    rows = []
    for reduce in args.reduce:
        for layer, cases in build_cases(x, edge_index, adj_t, reduce).items():
            check_same(cases, reduce)
            for mode, g in (("fwd", None), ("fwd_bwd", grad)):
                case = f"{layer}_{mode}_{reduce}"
                row = measure(cases, g, x, args.repeats, args.warmup, clock)
                for impl, ms in row.items():
                    times[f"{case}_{impl}"] = round(ms, 2)
                for base in ("edge_index", "adj_t", "torch_scatter"):
                    if base in row:
                        speedup[f"{case}_vs_{base}"] = round(row[base] / row["graphmoe"], 2)
                rows.append((case, row))

    machine = (f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} cores, load "
               f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} with "
               f"{torch.get_num_threads()} threads, {args.clock} clock")
    print(f"message passing: {n} nodes, {e} edges, {f} features, median of {args.repeats} "
          f"(+{args.warmup} warmup), {machine}")
    print(f"one-off: graphmoe CSR + transpose {csr_ms:.1f} ms, PyG adj_t {adj_ms:.1f} ms")
    header = f"{'case':<20}" + "".join(f"{impl + ' ms':>18}" for impl in IMPLS)
    header += f"{'x vs edge_index':>17}{'x vs adj_t':>12}"
    print(header)
    print("-" * len(header))
    for case, row in rows:
        line = f"{case:<20}" + "".join(
            f"{row[impl]:>18.1f}" if impl in row else f"{'n/a':>18}" for impl in IMPLS)
        line += f"{row['edge_index'] / row['graphmoe']:>17.2f}"
        line += f"{row['adj_t'] / row['graphmoe']:>12.2f}"
        print(line)
    print(json.dumps({"benchmark": "message_passing", "speedup": speedup, "times_ms": times,
                      "sizes": {"nodes": n, "edges": e, "feats": f},
                      "one_off_ms": {"graphmoe_csr": round(csr_ms, 2),
                                     "pyg_adj_t": round(adj_ms, 2)},
                      "machine": machine}))


if __name__ == "__main__":
    main()
