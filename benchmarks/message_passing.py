"""Message-passing speed: ``graphmoe.ops.aggregate`` vs PyG's own paths, side by side.

Compares, for ``sum``/``mean``/``max``, forward and forward+backward of

* ``agg``:  the raw aggregation ``o_i = reduce_{j -> i} x_j``;
* ``sage``: a SAGEConv layer ``o_i = W_1 x_i + W_2 reduce_{j -> i} x_j + b`` (PyG's defaults
  otherwise: ``root_weight=True``, ``bias=True``, no normalisation or projection),
* ``gcn`` (``sum`` only): a GCNConv layer with PyG's defaults (self-loops, symmetric
  normalisation, ``cached=False``: PyG normalises at every call, graphmoe once per graph),

for these implementations (all in this process, on the same random graph):

* ``graphmoe``:   ``graphmoe.ops.aggregate(x, edge_index)`` and ``graphmoe.models.SAGEConv``
  (with the PyG layer's weights copied in; CSR cached once per graph);
* ``edge_index``: PyG ``MessagePassing`` with ``edge_index`` (gather + scatter), and PyG's own
  ``SAGEConv``;
* ``adj_t``:      the same PyG modules with a ``torch.sparse_csr`` ``adj_t`` (PyG's fastest
  path without pyg-lib / torch-sparse, built once outside the timing);
* ``torch_scatter``: gather + ``torch_scatter.scatter`` (``agg`` only; when installed);
* ``floor`` (``--floor``; ``sage`` with sum/mean only): not an implementation but a bound, the
  bare ATen products a layer built on ATen's SpMM has to run, without autograd: forward one
  GEMM and one SpMM plus the root GEMM, backward one SpMM, four GEMMs and the bias sum.
  ``edge_index ms / floor ms`` was the most such a layer could gain over PyG here (~3x); the
  compiled CPU kernel (``graphmoe.ops.cpu_kernels``) is what goes beyond it.

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
from torch_geometric.nn import GCNConv, SAGEConv, SimpleConv
from torch_geometric.utils import coalesce, to_torch_csr_tensor

from graphmoe.models import GCNConv as GraphMoEGCNConv
from graphmoe.models import SAGEConv as GraphMoESAGEConv
from graphmoe.ops import aggregate, cpu_kernels, to_csr

try:
    import torch_scatter
except ImportError:  # optional extra `graphmoe[scatter]`
    torch_scatter = None

REDUCTIONS = ("sum", "mean", "max")
IMPLS = ("graphmoe", "edge_index", "adj_t", "torch_scatter", "floor")
_SPMM = torch.ops.aten._sparse_mm_reduce_impl  # the CPU SpMM graphmoe.ops uses


class _Bare:
    """Output of the ``floor`` case: ``backward(grad)`` runs the backward products."""

    def __init__(self, out: Tensor, backward: Callable[[Tensor], None]) -> None:
        self.out, self.backward = out, backward


def _sage_floor(x: Tensor, edge_index: Tensor, sage: torch.nn.Module, reduce: str
                ) -> Callable[[], _Bare]:
    r"""The products of :math:`\mathbf{A}(\mathbf{X}\mathbf{W}_l^\top) + \mathbf{b} +
    \mathbf{X}\mathbf{W}_r^\top` and of its gradients, with nothing else."""
    csr = to_csr(edge_index, x.size(0))
    kind = "mean" if reduce == "mean" else "ones"
    adj = csr.sparse(csr.values(x.dtype, kind))
    adj_t = csr.sparse(csr.values(x.dtype, kind + "_t"), transpose=True)
    w_l, b, w_r = (t.detach() for t in (sage.lin_l.weight, sage.lin_l.bias, sage.lin_r.weight))
    x = x.detach()

    def backward(grad: Tensor) -> None:
        grad_h = _SPMM(adj_t, grad, "sum")[0]
        (grad_h.t() @ x, grad.t() @ x, grad.sum(0))
        torch.mm(grad_h, w_l).addmm_(grad, w_r)

    def forward() -> _Bare:
        out = _SPMM(adj, x @ w_l.t(), "sum")[0]
        return _Bare(out.addmm_(x, w_r.t()).add_(b), backward)
    return forward


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


def build_cases(x: Tensor, edge_index: Tensor, adj_t: Tensor, reduce: str, floor: bool = False
                ) -> dict[str, dict[str, Callable[[], Tensor]]]:
    src, dst = edge_index
    n = x.size(0)
    simple = SimpleConv(aggr=reduce)
    pyg_sage = SAGEConv(x.size(1), x.size(1), aggr=reduce)
    ours_sage = GraphMoESAGEConv(x.size(1), x.size(1), aggr=reduce)
    ours_sage.load_state_dict(pyg_sage.state_dict())  # same weights: same outputs
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
    if floor and reduce != "max" and x.device.type == "cpu":
        sage["floor"] = _sage_floor(x, edge_index, pyg_sage, reduce)
    if reduce != "sum":
        return {"agg": agg, "sage": sage}
    pyg_gcn = GCNConv(x.size(1), x.size(1))  # normalisation at every call (cached=False)
    ours_gcn = GraphMoEGCNConv(x.size(1), x.size(1))
    ours_gcn.load_state_dict(pyg_gcn.state_dict())
    # No adj_t case: on graphs with self-loops (this random graph has a few) PyG's GCNConv gives
    # different outputs on a sparse adj_t than on edge_index (measured: 6 loops among 10k edges,
    # max abs diff 0.22; 2e-7 without loops), so the two are not the same layer here.
    gcn = {
        "graphmoe": lambda: ours_gcn(x, edge_index),
        "edge_index": lambda: pyg_gcn(x, edge_index),
    }
    return {"agg": agg, "sage": sage, "gcn": gcn}


def _torch_scatter(x: Tensor, src: Tensor, dst: Tensor, n: int, reduce: str) -> Tensor:
    out = torch_scatter.scatter(x[src], dst, dim=0, dim_size=n, reduce=reduce)
    return out


def check_same(cases: dict[str, Callable[[], Tensor]], reduce: str) -> None:
    """Every implementation must agree before we time it."""
    with torch.no_grad():
        ref = cases["edge_index"]()
        for name, fn in cases.items():
            out = fn()
            out = out.out if isinstance(out, _Bare) else out
            if not torch.allclose(out, ref, atol=1e-4, rtol=1e-4):
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
    parser.add_argument("--floor", action="store_true",
                        help="also time the bare SpMM + GEMM products of a SAGE layer (a bound)")
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
    bound: dict[str, float] = {}  # edge_index / floor: the best any SpMM + GEMM layer can do
    rows = []
    for reduce in args.reduce:
        for layer, cases in build_cases(x, edge_index, adj_t, reduce, args.floor).items():
            check_same(cases, reduce)
            for mode, g in (("fwd", None), ("fwd_bwd", grad)):
                case = f"{layer}_{mode}_{reduce}"
                row = measure(cases, g, x, args.repeats, args.warmup, clock)
                for impl, ms in row.items():
                    times[f"{case}_{impl}"] = round(ms, 2)
                for base in ("edge_index", "adj_t", "torch_scatter"):
                    if base in row:
                        speedup[f"{case}_vs_{base}"] = round(row[base] / row["graphmoe"], 2)
                if "floor" in row:
                    bound[f"{case}_vs_edge_index"] = round(row["edge_index"] / row["floor"], 2)
                rows.append((case, row))

    machine = (f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} cores, load "
               f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} with "
               f"{torch.get_num_threads()} threads, {args.clock} clock, compiled CPU kernel "
               f"{'on' if cpu_kernels.available() else 'off (ATen fallback)'}")
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
        line += f"{row['adj_t'] / row['graphmoe']:>12.2f}" if "adj_t" in row else f"{'n/a':>12}"
        print(line)
    if bound:
        print("floor (bare SpMM + GEMM products): edge_index / floor = "
              + ", ".join(f"{case} {ratio:.2f}" for case, ratio in bound.items()))
    extra = {"floor_speedup": bound} if bound else {}
    print(json.dumps({"benchmark": "message_passing", "speedup": speedup, **extra,
                      "times_ms": times,
                      "sizes": {"nodes": n, "edges": e, "feats": f},
                      "one_off_ms": {"graphmoe_csr": round(csr_ms, 2),
                                     "pyg_adj_t": round(adj_ms, 2)},
                      "machine": machine}))


if __name__ == "__main__":
    main()
