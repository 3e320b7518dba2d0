"""Side-by-side timing shared by the benchmark scripts (a helper, not a benchmark).

The implementations take turns within every repeat, so a change of load on a shared machine
hits them alike; ``cpu`` is the process's CPU time (with one thread, robust to other jobs).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def paired_times(fns: dict[str, Callable[[], object]], repeats: int,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Every time of each function over ``repeats`` rounds (after one warm-up call each), the
    functions taking turns within every round."""
    for fn in fns.values():
        fn()  # warm-up (caches, allocator)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(ts) for name, ts in times.items()}
