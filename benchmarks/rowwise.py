"""Row-wise maps of class scores: ``graphmoe.ops`` (``row_softmax``, ``row_log_softmax``,
``row_variance``) vs ATen's ``softmax``, ``log_softmax`` and ``var(dim=-1)``, side by side.

Mowst evaluates these on every node at inference (the weak expert's dispersion, both experts'
probabilities), on ``[num_nodes, num_classes]`` tensors with a handful of columns, where ATen's
CPU kernels take a scalar path. Forward only (no autograd, as at inference) and, with
``--grad``, forward + backward. The implementations take turns within every repeat (median).

    OMP_NUM_THREADS=1 python benchmarks/rowwise.py                 # 100k rows, 2..40 columns
    python benchmarks/rowwise.py --quick                           # small sizes, a smoke test

Ends with one JSON line ``{"benchmark": "rowwise", "speedup": {CASE: aten / graphmoe}, ...}``;
CASE is ``<op>@<columns>`` (``<op>+grad@<columns>`` with ``--grad``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import torch
from _timing import CLOCKS, medians, paired_times  # benchmarks/_timing.py

from graphmoe.ops import row_log_softmax, row_softmax, row_variance

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
    args = parser.parse_args()
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
                      "machine": platform.processor() or platform.machine(),
                      "loadavg": os.getloadavg(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
