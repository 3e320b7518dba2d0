"""Topology metrics speed and memory: graphmoe's TC/ATC vs a set-based brute force.

Cases (every timing runs in its own spawned process, so peak memory is per case):

* ``tc_k{K}_{size}``: exact Topological Concentration of all nodes for the train, validation
  and test splits (85/5/10 % of the edges), K = 1 and 2, on uniform random graphs of 10k, 100k
  and 1M undirected edges (mean degree 8): ``graphmoe.metrics.TopologicalConcentration`` vs
  ``brute_force_tc``, the reference code's algorithm (``cal_tc`` in YuWVandy/Topo_LP_GNN:
  per node, per split neighbour, walk lists, ``Counter`` and set intersections), stopped
  after ``--time-limit`` seconds;
* ``atc_k2_{size}``: ``graphmoe.metrics.approximate_tc`` (K = 2, 64 dimensions) on the
  training split (no baseline; the target is < 10 s at 1M edges on 2 cores);
* ``cora_tc_k{1,3}``: TC of the three splits of Cora (70/10/20 %, the reference's split sizes);
  for scale the reference code itself takes 0.13 s (K = 1) and 1.0 s (K = 3) on this machine.

Peak memory is the rise of the process's resident set (``VmHWM``, reset through
``/proc/self/clear_refs``; else ``ru_maxrss``) over its size once the inputs are built.
On a small shared machine the times are noisy: compare ratios, not absolute numbers.

    python benchmarks/topology.py            # 10k, 100k, 1M edges + Cora
    python benchmarks/topology.py --quick    # 10k and 100k edges + Cora, shorter time limit

Ends with one JSON line: ``{"benchmark": "topology", "speedup": {CASE: baseline / ours},
"times_s": {...}, "memory": {...}, "memory_ratio": {CASE: ours / baseline}}``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

CORA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "planetoid_cora"
QUOTED_REFERENCE_S = {"cora_tc_k1": 0.13, "cora_tc_k3": 1.0}


# ---------------------------------------------------------------------------------------------
# Graphs

def random_graph(num_edges: int, mean_degree: int = 8, seed: int = 0) -> tuple[int, np.ndarray]:
    """``num_edges`` distinct undirected edges ``[E, 2]`` (u < v) among ``2E / mean_degree``
    nodes, uniformly at random."""
    rng = np.random.default_rng(seed)
    num_nodes = 2 * num_edges // mean_degree
    pairs = rng.integers(0, num_nodes, size=(int(num_edges * 1.1) + 16, 2))
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    pairs = np.unique(pairs, axis=0)
    return num_nodes, pairs[rng.permutation(len(pairs))[:num_edges]]


def split_edges(pairs: np.ndarray, val: float, test: float, seed: int = 0) -> dict[str, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(len(pairs))
    n_val, n_test = int(val * len(pairs)), int(test * len(pairs))
    return {
        "val": pairs[perm[:n_val]],
        "test": pairs[perm[n_val : n_val + n_test]],
        "train": pairs[perm[n_val + n_test :]],
    }


def cora_pairs() -> tuple[int, np.ndarray]:
    from torch_geometric.io import read_planetoid_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = read_planetoid_data(str(CORA), "cora")
    ei = data.edge_index.numpy().T
    return data.num_nodes, np.unique(np.sort(ei[ei[:, 0] != ei[:, 1]], axis=1), axis=0)


# ---------------------------------------------------------------------------------------------
# The brute force: the reference code's algorithm, node by node

def _walk_lists(adj: dict[int, set[int]], start: int, K: int) -> list[list[int]]:
    """Endpoints of all walks of length 1..K from ``start``, one list entry per walk."""
    hops, frontier = [], [start]
    for _ in range(K):
        frontier = [v for u in frontier for v in adj[u]]
        hops.append(frontier)
    return hops


def brute_force_tc(sets: dict[str, dict[int, set[int]]], num_nodes: int, K: int) -> dict:
    train = sets["train"]
    beta = num_nodes / sum(len(train[i]) for i in range(num_nodes))
    out: dict[str, list[float]] = {"train": [], "val": [], "test": []}
    for i in range(num_nodes):
        hops_i = _walk_lists(train, i, K)
        count_i, set_i = [Counter(h) for h in hops_i], [set(h) for h in hops_i]
        for split, min_degree in (("val", 1), ("test", 1), ("train", 2)):
            neighbours = sets[split][i]
            if not neighbours or len(train[i]) < min_degree:
                out[split].append(0.0)
                continue
            ratios = []
            for j in neighbours:
                set_j = [set(h) for h in _walk_lists(train, j, K)]
                num = den = 0.0
                for k1 in range(K):
                    total = sum(count_i[k1].values())
                    for k2 in range(K):
                        w = beta ** (k1 + k2)
                        num += w * sum(count_i[k1][v] for v in set_i[k1] & set_j[k2])
                        den += w * (total - (split == "train" and k1 == k2 == 0))
                ratios.append(num / den)
            out[split].append(sum(ratios) / len(ratios))
    return out


# ---------------------------------------------------------------------------------------------
# One case in its own process

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _prepare(spec: dict):
    """Build the inputs of ``spec`` (untimed) and return the function to time."""
    if spec["impl"] == "brute":
        sets = {}
        for split, pairs in spec["splits"].items():
            adj: dict[int, set[int]] = defaultdict(set)
            for u, v in pairs.tolist():
                adj[u].add(v)
                adj[v].add(u)
            sets[split] = adj
        return lambda: brute_force_tc(sets, spec["num_nodes"], spec["K"])

    import torch

    from graphmoe.metrics import TopologicalConcentration, approximate_tc

    def undirected(pairs: np.ndarray) -> torch.Tensor:
        ei = torch.from_numpy(np.ascontiguousarray(pairs.T))
        return torch.cat([ei, ei.flip(0)], dim=1)

    ei = {split: undirected(pairs) for split, pairs in spec["splits"].items()}
    n, K = spec["num_nodes"], spec["K"]
    if spec["impl"] == "atc":
        return lambda: approximate_tc(ei["train"], num_nodes=n, K=K, dim=64, seed=0)

    def ours():
        tc = TopologicalConcentration(ei["train"], n, K)
        return tc(), tc(ei["val"], "val"), tc(ei["test"], "test")

    return ours


def _child(conn, spec: dict) -> None:
    fn = _prepare(spec)
    conn.send("ready")
    exact = _reset_peak()
    base_kb = _status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = float("inf")
    for _ in range(spec["repeat"]):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    peak_kb = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send((best, max(peak_kb - base_kb, 0) / 1024))


def measure(spec: dict, time_limit: float) -> tuple[float, float] | None:
    """(best time in s, peak memory in MiB) of ``spec``, or None past ``time_limit`` seconds."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, spec), daemon=True)
    proc.start()
    try:
        if parent.poll(600) and parent.recv() == "ready" and parent.poll(time_limit):
            return parent.recv()
        return None
    finally:
        proc.kill()
        proc.join()


# ---------------------------------------------------------------------------------------------

def run_cases(args: argparse.Namespace) -> list[dict]:
    rows = []
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    for num_edges in sizes:
        n, pairs = random_graph(num_edges, seed=args.seed)
        splits = split_edges(pairs, 0.05, 0.10, seed=args.seed)
        label = f"{num_edges // 1000}k" if num_edges < 1_000_000 else f"{num_edges // 1_000_000}M"
        repeat = 3 if num_edges <= 100_000 else 1
        for K in (1, 2):
            rows.append(run_pair(f"tc_k{K}_{label}", n, num_edges, K, splits, repeat, args))
        spec = {"impl": "atc", "num_nodes": n, "K": 2, "splits": splits, "repeat": repeat}
        rows.append({"case": f"atc_k2_{label}", "nodes": n, "edges": num_edges,
                     "ours": measure(spec, 600), "brute": None})
    n, pairs = cora_pairs()
    splits = split_edges(pairs, 0.10, 0.20, seed=args.seed)
    for K in (1, 3):
        rows.append(run_pair(f"cora_tc_k{K}", n, len(pairs), K, splits, 5, args))
    return rows


def run_pair(case, n, num_edges, K, splits, repeat, args) -> dict:
    ours = measure({"impl": "tc", "num_nodes": n, "K": K, "splits": splits, "repeat": repeat}, 600)
    brute = measure({"impl": "brute", "num_nodes": n, "K": K, "splits": splits, "repeat": 1},
                    args.time_limit)
    return {"case": case, "nodes": n, "edges": num_edges, "ours": ours, "brute": brute}


def _cell(value: float | None, fmt: str, missing: str = "-") -> str:
    return missing if value is None else format(value, fmt)


def report(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"topology metrics, {os.cpu_count()} cores (shared: times are noisy); TC = train+val+"
          f"test splits; brute force stopped after {args.time_limit:.0f} s")
    header = (f"{'case':<14}{'nodes':>9}{'edges':>10}{'ours s':>10}{'brute s':>10}{'speedup':>9}"
              f"{'ours MiB':>10}{'brute MiB':>11}")
    print(header)
    print("-" * len(header))
    speedup, times, memory, ratio = {}, {}, {}, {}
    for row in rows:
        case, brute = row["case"], row["brute"]
        ours_s, ours_mib = row["ours"] or (float("nan"), float("nan"))  # nan: ours timed out
        brute_s, brute_mib = brute if brute else (None, None)
        has_baseline = not case.startswith("atc")
        times[case] = {"ours": round(ours_s, 4)}
        memory[case] = {"ours_mib": round(ours_mib, 1)}
        if has_baseline:
            times[case]["brute_force"] = (round(brute_s, 4) if brute
                                          else f"> {args.time_limit:.0f}")
            memory[case]["brute_force_mib"] = brute and round(brute_mib, 1)
        if brute:
            speedup[case] = round(brute_s / ours_s, 2)
            ratio[case] = round(ours_mib / max(brute_mib, 0.1), 3)
        if case in QUOTED_REFERENCE_S:
            times[case]["reference_quoted"] = QUOTED_REFERENCE_S[case]
            speedup[f"{case}_vs_quoted_reference"] = round(QUOTED_REFERENCE_S[case] / ours_s, 2)
        print(f"{case:<14}{row['nodes']:>9}{row['edges']:>10}{ours_s:>10.4f}"
              f"{_cell(brute_s, '.3f', 'timeout' if has_baseline else '-'):>10}"
              f"{_cell(speedup.get(case), '.1f'):>9}{ours_mib:>10.1f}"
              f"{_cell(brute_mib, '.1f'):>11}")
    print(json.dumps({"benchmark": "topology", "speedup": speedup, "times_s": times,
                      "memory": memory, "memory_ratio": ratio}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k edges only")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds before the brute force is stopped (default 120, quick 30)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.time_limit is None:
        args.time_limit = 30.0 if args.quick else 120.0
    report(run_cases(args), args)


if __name__ == "__main__":
    main()
