"""Sorted expert dispatch vs. dense "all experts on all nodes" vs. a naive expert loop.

Times forward + backward of a routed expert FFN layer (x -> act(x W1 + b1) W2 + b2 per
expert, combined by gate weights; gradients for x, gates and all weights) and measures
peak memory, for N nodes, d features, k experts per node and E in {4, 8, 16, 32}:

- ``sorted``: :func:`graphmoe.ops.dispatch.expert_ffn` (grouped matmul over expert
  segments; Triton on CUDA, PyTorch on CPU).
- ``dense``: GMoE-style (Wang et al. 2023): every expert on every node, outputs stacked
  to ``[N, E, out]`` and combined by the dense gate matrix.
- ``dense_fused``: all experts on all nodes too, but with the gates folded into the
  hidden units so that the second layer and the combination are one GEMM (a stronger
  dense baseline, reported as ``vs_dense_fused``).
- ``loop``: a Python loop over experts, gathering each expert's nodes and index_add-ing
  the weighted outputs back.

Peak memory is the growth of the peak resident set during one step on CPU (Linux
``/proc/self/status`` VmHWM, reset before each step), ``max_memory_allocated`` on CUDA.
Timings on a shared machine are noisy: methods are interleaved and the median is kept.

    python benchmarks/moe_dispatch.py [--quick] [--device cpu|cuda]

Ends with one JSON line: ``{"benchmark": "moe_dispatch", "speedup": {...},
"memory_ratio": {...}}`` (speedup = baseline time / sorted time, memory_ratio = sorted
peak / dense peak).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

# On a shared machine, OpenMP threads that spin while waiting make every short op up to
# 10x slower once other processes hold the cores; sleeping waiters keep timings sane.
# (Must be set before torch loads libgomp; an explicit setting wins.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from graphmoe.ops.dispatch import expert_ffn  # noqa: E402

Inputs = dict[str, torch.Tensor]


def make_inputs(n: int, d: int, num_experts: int, k: int, device: str, seed: int = 0) -> Inputs:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_experts, generator=gen)
    weight, index = logits.softmax(-1).topk(k, dim=-1)
    bound = d**-0.5
    tensors = {
        "x": torch.randn(n, d, generator=gen),
        "combine_weight": weight / weight.sum(-1, keepdim=True),
        "w1": (torch.rand(num_experts, d, d, generator=gen) * 2 - 1) * bound,
        "b1": (torch.rand(num_experts, d, generator=gen) * 2 - 1) * bound,
        "w2": (torch.rand(num_experts, d, d, generator=gen) * 2 - 1) * bound,
        "b2": (torch.rand(num_experts, d, generator=gen) * 2 - 1) * bound,
    }
    out = {name: t.to(device).requires_grad_(True) for name, t in tensors.items()}
    out["expert_index"] = index.to(device)
    return out


def sorted_dispatch(t: Inputs) -> torch.Tensor:
    return expert_ffn(t["x"], t["expert_index"], t["combine_weight"], t["w1"], t["w2"],
                      t["b1"], t["b2"], activation=F.gelu)


def _dense_gates(t: Inputs) -> torch.Tensor:
    x = t["x"]
    gates = torch.zeros(x.size(0), t["w1"].size(0), device=x.device, dtype=x.dtype)
    return gates.scatter(1, t["expert_index"], t["combine_weight"])


def _dense_hidden(t: Inputs) -> torch.Tensor:
    num_experts, d, hidden = t["w1"].shape
    h = t["x"] @ t["w1"].permute(1, 0, 2).reshape(d, -1) + t["b1"].reshape(-1)
    return F.gelu(h).view(-1, num_experts, hidden)  # [N, E, H], one GEMM for all experts


def dense_all_experts(t: Inputs) -> torch.Tensor:
    """GMoE-style (Wang et al. 2023): every expert's output on every node, stacked to
    ``[N, E, out]``, scaled by the dense gate matrix and summed."""
    outputs = torch.einsum("neh,eho->neo", _dense_hidden(t), t["w2"]) + t["b2"]
    return (_dense_gates(t).unsqueeze(-1) * outputs).sum(dim=1)


def dense_fused(t: Inputs) -> torch.Tensor:
    r"""Every expert on every node, but the gates scale the hidden units so that all
    second layers and the combination are one GEMM,
    :math:`\sum_e g_{n,e} (\mathbf{h}_{n,e} \mathbf{W}^{(2)}_e + \mathbf{b}^{(2)}_e)
    = [g_{n,1} \mathbf{h}_{n,1}, \dots] [\mathbf{W}^{(2)}_1; \dots] + G \mathbf{B}^{(2)}`:
    a stronger dense baseline than GMoE's, reported alongside."""
    gates = _dense_gates(t)
    h = (_dense_hidden(t) * gates.unsqueeze(-1)).flatten(1)
    return h @ t["w2"].flatten(0, 1) + gates @ t["b2"]


def loop_over_experts(t: Inputs) -> torch.Tensor:
    x, index, weight = t["x"], t["expert_index"], t["combine_weight"]
    out = x.new_zeros(x.size(0), t["w2"].size(2))
    for e in range(t["w1"].size(0)):
        nodes, slots = torch.nonzero(index == e, as_tuple=True)
        h = F.gelu(x[nodes] @ t["w1"][e] + t["b1"][e])
        y = (h @ t["w2"][e] + t["b2"][e]) * weight[nodes, slots].unsqueeze(1)
        out = out.index_add(0, nodes, y)
    return out


METHODS: dict[str, Callable[[Inputs], torch.Tensor]] = {
    "sorted": sorted_dispatch, "dense": dense_all_experts, "dense_fused": dense_fused,
    "loop": loop_over_experts}


def step(fn: Callable[[Inputs], torch.Tensor], t: Inputs, grad: torch.Tensor) -> None:
    for v in t.values():
        v.grad = None
    fn(t).backward(grad)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_step(fn, t: Inputs, grad: torch.Tensor, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    step(fn, t, grad)
    sync(device)
    return time.perf_counter() - start


def peak_memory(fn, t: Inputs, grad: torch.Tensor, device: str) -> int:
    """Peak bytes allocated during one step, above what was live before it."""
    for v in t.values():
        v.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(fn, t, grad)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # CPU: the process's peak resident set (VmHWM, reset through clear_refs) above the
    # resident set before the step. Tensors this large are mmap-ed by malloc and given
    # back on free, so the resident set follows live tensor memory.
    base = _proc_status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step(fn, t, grad)
    return _proc_status("VmHWM") - base


def _mmap_large_allocations() -> None:
    """Makes malloc mmap every block above 64 KiB, so freed tensors leave the resident
    set at once and the peak resident set measures the peak of live tensors."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not found in /proc/self/status")


def run(n: int, d: int, k: int, experts: list[int], repeats: int, device: str) -> dict:
    results = {}
    for num_experts in experts:
        t = make_inputs(n, d, num_experts, k, device)
        grad = torch.randn(n, d, generator=torch.Generator().manual_seed(1)).to(device)
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        for fn in METHODS.values():  # warm-up
            step(fn, t, grad)
        for _ in range(repeats):  # interleaved so that load noise hits every method
            for name, fn in METHODS.items():
                times[name].append(time_step(fn, t, grad, device))
        memory = {name: peak_memory(fn, t, grad, device) for name, fn in METHODS.items()}
        results[num_experts] = {name: (statistics.median(times[name]), memory[name])
                                for name in METHODS}
        del t
    return results


def table(results: dict, baselines: list[str]) -> str:
    names = ["sorted"] + baselines
    header = (f"{'E':>3} | " + " ".join(f"{n + ' ms':>14}" for n in names) + " | "
              + " ".join(f"{'x ' + n:>13}" for n in baselines) + " | "
              + " ".join(f"{n + ' MiB':>15}" for n in names))
    lines = [header, "-" * len(header)]
    for e, r in results.items():
        ts, ms = r["sorted"]
        lines.append(f"{e:>3} | " + " ".join(f"{r[n][0] * 1e3:>14.1f}" for n in names) + " | "
                     + " ".join(f"{r[n][0] / ts:>13.2f}" for n in baselines) + " | "
                     + " ".join(f"{r[n][1] / 2**20:>15.1f}" for n in names))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 20k, 2 repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu":
        _mmap_large_allocations()
    n = args.nodes or (20_000 if args.quick else 100_000)
    repeats = args.repeats or (2 if args.quick else 5)
    d, k, experts = 128, 2, [4, 8, 16, 32]
    print(f"moe_dispatch: N={n}, d=hidden={d}, k={k}, device={args.device}, "
          f"threads={torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"load average {os.getloadavg()[0]:.1f}, median of {repeats} (forward + backward)")
    results = run(n, d, k, experts, repeats, args.device)
    baselines = [name for name in METHODS if name != "sorted"]
    print(table(results, baselines))
    speedup, memory_ratio = {}, {}
    for e, r in results.items():
        time_sorted, mem_sorted = r["sorted"]
        for name in baselines:
            speedup[f"vs_{name}/E={e}"] = round(r[name][0] / time_sorted, 3)
            memory_ratio[f"vs_{name}/E={e}"] = round(mem_sorted / max(r[name][1], 1), 3)
    print(json.dumps({"benchmark": "moe_dispatch", "speedup": speedup,
                      "memory_ratio": memory_ratio, "nodes": n, "features": d, "k": k,
                      "device": args.device}))


if __name__ == "__main__":
    main()
