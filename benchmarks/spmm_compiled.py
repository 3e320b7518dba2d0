"""Is a ``torch.compile``d (Inductor, C++) SpMM faster than ATen's CSR kernel on this CPU?

Times, side by side in one process (median of 9, interleaved), the weighted sum aggregation
``O = 0.index_add(0, row, v * X[col])`` compiled by Inductor (nodes and edges dynamic, width
fixed) against ATen's CSR kernel ``torch.ops.aten._sparse_mm_reduce_impl`` (the one
``graphmoe.ops`` uses), for the CSR and its transpose (the backward pass), float32 and
float64, on a random graph of 100k nodes and 1M edges with 64 features. Prints the compile
time, the largest difference to ATen and whether repeated calls are bit-identical.

    OMP_NUM_THREADS=1 python benchmarks/spmm_compiled.py --threads 1
    python benchmarks/spmm_compiled.py --threads 2                 # Inductor's parallel code
    python benchmarks/spmm_compiled.py --threads 2 --sequential    # generated loop kept serial

Result on the 2-core dev box (docs/results.md, "compiled SpMM"): not integrated.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch._inductor.config as inductor_config

REDUCE = torch.ops.aten._sparse_mm_reduce_impl


def weighted_sum(x, row, col, value, rowptr):
    out = x.new_zeros(rowptr.size(0) - 1, x.size(1))
    return out.index_add_(0, row, x.index_select(0, col) * value.unsqueeze(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sequential", action="store_true",
                        help="make Inductor emit a serial loop (cpp.threads = 1)")
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sequential:
        inductor_config.cpp.threads = 1
    n, e, f = args.nodes, args.edges, args.features
    gen = torch.Generator().manual_seed(0)
    src, dst = torch.randint(0, n, (e,), generator=gen), torch.randint(0, n, (e,), generator=gen)
    perm = torch.argsort(dst * n + src)
    col, row = src[perm], dst[perm]
    rowptr = torch.ops.aten._convert_indices_from_coo_to_csr(row, n)
    perm_t = torch.argsort(col, stable=True)
    row_t, col_t = col[perm_t], row[perm_t]
    rowptr_t = torch.ops.aten._convert_indices_from_coo_to_csr(row_t, n)
    compiled = torch.compile(weighted_sum)

    def call(*tensors):
        for t in tensors:
            torch._dynamo.maybe_mark_dynamic(t, 0)
        return compiled(*tensors)

    results = {}
    for dtype in (torch.float32, torch.float64):
        x, value = torch.randn(n, f, dtype=dtype), torch.rand(e, dtype=dtype)
        value_t = value[perm_t]
        adj = torch.sparse_csr_tensor(rowptr, col, value, (n, n))
        adj_t = torch.sparse_csr_tensor(rowptr_t, col_t, value_t, (n, n))
        start = time.perf_counter()
        out = call(x, row, col, value, rowptr)
        compile_s = time.perf_counter() - start
        out_t = call(x, row_t, col_t, value_t, rowptr_t)
        error = max(float((out - REDUCE(adj, x, "sum")[0]).abs().max()),
                    float((out_t - REDUCE(adj_t, x, "sum")[0]).abs().max()))
        deterministic = all(torch.equal(call(x, row, col, value, rowptr), out) for _ in range(3))
        cases = {"aten": (REDUCE, (adj, x, "sum")),
                 "compiled": (call, (x, row, col, value, rowptr)),
                 "aten_transpose": (REDUCE, (adj_t, x, "sum")),
                 "compiled_transpose": (call, (x, row_t, col_t, value_t, rowptr_t))}
        times = {k: [] for k in cases}
        for _ in range(9):
            for name, (fn, fn_args) in cases.items():
                start = time.perf_counter()
                fn(*fn_args)
                times[name].append(time.perf_counter() - start)
        results[str(dtype).removeprefix("torch.")] = {
            "ms": {k: round(1000 * statistics.median(v), 1) for k, v in times.items()},
            "compile_s": round(compile_s, 1), "max_abs_diff": error,
            "deterministic": deterministic}
        print(dtype, results[str(dtype).removeprefix("torch.")], flush=True)
    print(json.dumps({"benchmark": "spmm_compiled", "threads": args.threads,
                      "sequential": args.sequential, "results": results,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
