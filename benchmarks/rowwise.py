"""Row-wise maps of class scores: ``graphmoe.ops`` (``row_softmax``, ``row_log_softmax``,
``row_variance``) vs ATen's ``softmax``, ``log_softmax`` and ``var(dim=-1)``, side by side.

Mowst evaluates these on every node at inference (the weak expert's dispersion, both experts'
probabilities), on ``[num_nodes, num_classes]`` tensors with a handful of columns, where ATen's
CPU kernels take a scalar path. Forward only (no autograd, as at inference) and, with
``--grad``, forward + backward. The implementations take turns within every repeat (median).

    OMP_NUM_THREADS=1 python benchmarks/rowwise.py                 # 100k rows, 2..40 columns
    GRAPHMOE_CPU_KERNELS=0 python benchmarks/rowwise.py            # the composite formulas only
    python benchmarks/rowwise.py --quick                           # small sizes, a smoke test

Without autograd graphmoe's maps run compiled row loops where the CPU kernels are built
(``csrc/rowwise_cpu.cpp``), the composite formulas otherwise (``GRAPHMOE_CPU_KERNELS=0``).
A fresh 2 MB output is page-faulted in at every call with glibc's default malloc (~1.5 ms
here, more than the computation); ``--steady-heap`` keeps freed memory in the heap.

Ends with one JSON line ``{"benchmark": "rowwise", "speedup": {CASE: aten / graphmoe}, ...}``;
CASE is ``<op>@<columns>`` (``<op>+grad@<columns>`` with ``--grad``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import torch
from _timing import CLOCKS, medians, paired_times, steady_heap  # benchmarks/_timing.py

from graphmoe.ops import cpu_kernels, row_log_softmax, row_softmax, row_variance

OPS = {  # name -> (graphmoe, ATen)
    "softmax": (row_softmax, lambda t: t.softmax(-1)),
    "log_softmax": (row_log_softmax, lambda t: t.log_softmax(-1)),
    "variance": (row_variance, lambda t: t.var(-1, unbiased=False)),
}
def case(fn, x: torch.Tensor, grad: bool):
    if not grad:
        return lambda: fn(x)
    leaf = x.clone().requires_grad_()

    def step():
        fn(leaf).sum().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, nargs="+", default=[2, 5, 8, 15, 16, 40])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--grad", action="store_true", help="also forward + backward")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--steady-heap", action="store_true",
                        help="keep freed memory in malloc (no page faults for fresh outputs)")
    args = parser.parse_args()
    steady = steady_heap() if args.steady_heap else False
    rows, repeats = (2_000, 3) if args.quick else (args.rows, args.repeats)
    speedup, times = {}, {}
    for columns in args.columns:
        x = torch.randn(rows, columns, generator=torch.Generator().manual_seed(columns)) * 3.0
        for grad in (False, True) if args.grad else (False,):
            for op, (ours, aten) in OPS.items():
                name = f"{op}{'+grad' if grad else ''}@{columns}"
                with torch.set_grad_enabled(grad):
                    t = medians(paired_times({"graphmoe": case(ours, x, grad),
                                              "aten": case(aten, x, grad)},
                                             repeats, CLOCKS[args.clock]))
                speedup[name] = t["aten"] / t["graphmoe"]
                times[name] = t
                print(f"{name:>22s}  ATen {t['aten'] * 1e3:7.2f} ms  graphmoe "
                      f"{t['graphmoe'] * 1e3:7.2f} ms  x{speedup[name]:.2f}", flush=True)
    print(json.dumps({"benchmark": "rowwise", "speedup": speedup, "times_s": times,
                      "rows": rows, "threads": torch.get_num_threads(), "clock": args.clock,
                      "steady_heap": steady, "compiled": cpu_kernels.available(),
                      "machine": platform.processor() or platform.machine(),
                      "loadavg": os.getloadavg(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
