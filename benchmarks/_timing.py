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


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def steady_heap(limit: int = 2**31 - 1) -> bool:
    """Ask glibc's malloc to keep freed memory (no trimming, no per-buffer mmap), so that large
    buffers are not page-faulted in again at every call; the same as starting Python with
    ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` set high. Timings then measure
    the computation, not the allocator's reaction to the order of the calls (paired runs of
    two implementations with different buffer sizes otherwise make one of them fault more).
    Returns whether it applied (glibc only)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, limit) == 1
               for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD))
