"""Dropout on CPU: ``graphmoe.ops.dropout`` (uniform draws) vs ``torch.nn.functional.dropout``.

Forward (training mode, no autograd) and forward + backward on activations of a few sizes, the
two taking turns within every repeat (median). Same distribution: each entry kept with
probability ``1 - p`` and scaled by ``1 / (1 - p)`` (``tests/ops/test_dropout.py``).

    OMP_NUM_THREADS=1 python benchmarks/dropout.py --clock cpu
    python benchmarks/dropout.py --quick

Ends with one JSON line ``{"benchmark": "dropout", "speedup": {CASE: torch / graphmoe}, ...}``;
CASE is ``<mode>@<rows>x<columns>``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import torch
import torch.nn.functional as F
from _timing import CLOCKS, medians, paired_times  # benchmarks/_timing.py

from graphmoe.ops import dropout


def step(fn, x: torch.Tensor, p: float, grad: torch.Tensor | None):
    if grad is None:
        def forward():
            with torch.no_grad():
                fn(x, p, True)
        return forward

    def forward_backward():
        fn(x, p, True).backward(grad)
    return forward_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[18_660, 100_000])
    parser.add_argument("--columns", type=int, default=64)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args()
    rows, repeats = ([500], 3) if args.quick else (args.rows, args.repeats)
    clock = CLOCKS[args.clock]
    speedup, times = {}, {}
    for n in rows:
        x = torch.randn(n, args.columns, requires_grad=True)
        for mode, grad in (("fwd", None), ("fwd_bwd", torch.randn(n, args.columns))):
            fns = {"graphmoe": step(dropout, x, args.p, grad),
                   "torch": step(F.dropout, x, args.p, grad)}
            median = medians(paired_times(fns, repeats, clock))
            case = f"{mode}@{n}x{args.columns}"
            speedup[case] = median["torch"] / median["graphmoe"]
            times[case] = median
            print(f"{case:>18s}  torch {median['torch'] * 1e3:7.2f} ms  graphmoe "
                  f"{median['graphmoe'] * 1e3:7.2f} ms  x{speedup[case]:.2f}", flush=True)
    print(json.dumps({"benchmark": "dropout", "speedup": speedup, "times_s": times, "p": args.p,
                      "threads": torch.get_num_threads(), "clock": args.clock,
                      "machine": platform.processor() or platform.machine(),
                      "loadavg": os.getloadavg(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
