"""Dense vs CSR node features: forward+backward of a 2-layer GCN / GraphSAGE on a real dataset.

Same model, same weights, ``x`` dense or ``x.to_sparse_csr()``; median of ``--repeats`` after a
warm-up, side by side in one process; checks the outputs agree. Ends with one JSON line.

    OMP_NUM_THREADS=1 GRAPHMOE_DATA=../shared/datasets python benchmarks/sparse_features.py --dataset citeseer
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from graphmoe.data import load_dataset
from graphmoe.models import build_model


def step_ms(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x, edge_index).sum().backward()
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="citeseer")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset)
    dense, sparse = data.x, data.x.to_sparse_csr()
    results = {"dataset": args.dataset, "density": float((dense != 0).float().mean())}
    for backbone in ("gcn", "sage"):
        torch.manual_seed(0)
        model = build_model(backbone, in_channels=data.num_features, hidden_channels=64,
                            num_layers=2, out_channels=int(data.y.max()) + 1)
        with torch.no_grad():
            diff = float((model(dense, data.edge_index) - model(sparse, data.edge_index)).abs().max())
        times = {"dense": [], "csr": []}
        for i in range(args.repeats + 1):
            for name, x in (("dense", dense), ("csr", sparse)):
                ms = step_ms(model, x, data.edge_index)
                if i:
                    times[name].append(ms)
        results[backbone] = {k: round(statistics.median(v), 1) for k, v in times.items()}
        results[backbone]["max_abs_diff"] = diff
        print(backbone, results[backbone], flush=True)
    print(json.dumps({"benchmark": "sparse_features", **results, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
