"""FED-PUB rounds per second: graphmoe's in-process engine vs the reference code's compute path.

Cora, disjoint METIS partition into 10 clients, FED-PUB (tau 3), 100 rounds, seed 0.

* ``graphmoe``: :func:`graphmoe.federated.run_simulation` without checkpoints, and with a
  checkpoint after every round (``graphmoe_ckpt``, what ``graphmoe federated`` does by default).
* ``reference``: the compute of JinheonBaek/FED-PUB's client and server re-created in this
  process, without its harness (no worker processes, sleeps or per-round disk I/O, which take
  its 100 rounds to 5-7 minutes): PyG's ``MessagePassing`` GCN with the normalisation
  recomputed in every forward, dense features, state dicts converted to numpy and back every
  round, two evaluations before and two after training, numpy/scipy aggregation. Timed over
  ``--baseline-rounds`` rounds and scaled to ``--rounds``.

Times are wall-clock and process CPU time (robust to other processes on a shared machine,
with one thread). Ends with one JSON line: ``{"benchmark": "federated", "speedup":
{"fedpub_cora_disjoint10": reference_s / graphmoe_s, ...}, ...}``.

    OMP_NUM_THREADS=1 python benchmarks/federated.py [--rounds 100] [--baseline-rounds 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # sane timings on a shared machine

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn import Parameter  # noqa: E402
from torch_geometric.nn.conv import MessagePassing  # noqa: E402
from torch_geometric.nn.conv.gcn_conv import gcn_norm  # noqa: E402
from torch_geometric.nn.inits import glorot  # noqa: E402

REFERENCE_REPORTED_S = 300.0  # "5-7 minutes" for these 100 rounds (issue 5): the lower end


def _mask(mask: torch.Tensor, training: bool, l1: float) -> torch.Tensor:
    return mask if training else mask.masked_fill(mask.abs() < l1, 0)


class RefConv(MessagePassing):
    """The reference's MaskedGCNConv: PyG gather-scatter, gcn_norm in every forward."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(aggr="add")
        self.weight = Parameter(torch.empty(d_out, d_in))
        glorot(self.weight)
        self.mask = Parameter(torch.ones(d_out, d_in))
        self.bias = Parameter(torch.zeros(d_out))

    def forward(self, x, edge_index):
        edge_index, w = gcn_norm(edge_index, None, x.size(0))
        x = F.linear(x, self.weight * _mask(self.mask, self.training, 1e-3))
        return self.propagate(edge_index, x=x, edge_weight=w) + self.bias

    def message(self, x_j, edge_weight):
        return edge_weight.view(-1, 1) * x_j


class RefModel(torch.nn.Module):
    def __init__(self, n_feat: int, n_dims: int, n_clss: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = RefConv(n_feat, n_dims), RefConv(n_dims, n_dims)
        self.weight = Parameter(torch.empty(n_clss, n_dims))
        torch.nn.init.xavier_uniform_(self.weight)
        self.mask = Parameter(torch.ones(n_clss, n_dims))
        self.bias = Parameter(torch.zeros(n_clss))

    def forward(self, x, edge_index, is_proxy=False):
        x = F.dropout(F.relu(self.conv1(x, edge_index)), training=self.training)
        x = self.conv2(x, edge_index)
        if is_proxy:
            return x
        x = F.dropout(F.relu(x), training=self.training)
        return F.linear(x, self.weight * _mask(self.mask, self.training, 1e-3), self.bias)


def aggregate(local_weights: list[dict], ratio) -> dict:
    """The reference server's aggregation: per key, a numpy sum over clients."""
    return {k: np.sum([w[k] * ratio[j] for j, w in enumerate(local_weights)], 0)
            for k in local_weights[0]}


def reference_rounds(fed, rounds: int, proxy, tau: float = 3.0) -> float:
    """Runs ``rounds`` rounds the reference's way; returns the seconds per round."""
    from scipy.spatial.distance import cosine

    torch.manual_seed(0)
    clients = []
    for c in fed.clients:
        model = RefModel(fed.num_features, 128, fed.num_classes)
        clients.append((c, model, torch.optim.Adam(model.parameters(), lr=0.01,
                                                   weight_decay=1e-6)))
    incoming: dict[int, dict] = {}

    @torch.no_grad()
    def validate(model, c, mask):
        model.eval()
        out = model(c.x, c.edge_index)
        return (out[mask].argmax(1) == c.y[mask]).float().mean().item(), \
            F.cross_entropy(out[mask], c.y[mask]).item()

    start = time.perf_counter()
    for _ in range(rounds):
        local_weights, sizes, embeddings = [], [], []
        for cid, (c, model, opt) in enumerate(clients):
            prev = None
            if cid in incoming:
                state = model.state_dict()
                new = {k: state[k] if "mask" in k else torch.tensor(v)
                       for k, v in incoming[cid].items()}
                model.load_state_dict(new)
                prev = {k: torch.tensor(v) for k, v in incoming[cid].items()}
            validate(model, c, c.val_mask), validate(model, c, c.test_mask)
            model.train()
            opt.zero_grad()
            loss = F.cross_entropy(model(c.x, c.edge_index)[c.train_mask], c.y[c.train_mask])
            for name, param in model.state_dict().items():  # detached, as in the reference
                if "mask" in name:
                    loss = loss + torch.norm(param.float(), 1) * 1e-3
                elif prev is not None:
                    loss = loss + torch.norm(param.float() - prev[name], 2) * 1e-3
            loss.backward()
            opt.step()
            _ = sum(int((p.abs() < 1e-3).sum()) for k, p in model.state_dict().items()
                    if "mask" in k)  # sparsity log
            validate(model, c, c.val_mask), validate(model, c, c.test_mask)
            model.eval()
            with torch.no_grad():
                emb = model(proxy.x, proxy.edge_index, is_proxy=True).mean(0).numpy()
            local_weights.append({k: v.clone().detach().cpu().numpy()
                                  for k, v in model.state_dict().items()})
            sizes.append(1)
            embeddings.append(emb)
        n = len(clients)
        sim = np.array([[1 - cosine(embeddings[i], embeddings[j]) for j in range(n)]
                        for i in range(n)])
        sim = np.exp(tau * sim)
        sim = sim / sim.sum(axis=1)[:, None]

        aggregate(local_weights, np.array(sizes) / np.sum(sizes))  # the server's global model
        incoming = {i: aggregate(local_weights, sim[i]) for i in range(n)}
    return (time.perf_counter() - start) / rounds


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--baseline-rounds", type=int, default=20,
                        help="rounds of the reference-style run (0: skip), scaled to --rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--no-checkpoint", action="store_true", help="skip the checkpointed run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from graphmoe.federated import build_algorithm, load_federated, run_simulation
    from graphmoe.federated.algorithms import proxy_graph

    fed = load_federated("cora", "disjoint", 10)
    run_simulation(fed, build_algorithm("fedpub", tau=3.0), rounds=2, progress=False)  # warm-up
    history, wall, cpu = timed(lambda: run_simulation(
        fed, build_algorithm("fedpub", tau=3.0), rounds=args.rounds, seed=0, progress=False))
    times = {"graphmoe": {"wall_s": wall, "cpu_s": cpu}}
    if not args.no_checkpoint:
        with tempfile.TemporaryDirectory() as out:
            _, wall, cpu = timed(lambda: run_simulation(
                fed, build_algorithm("fedpub", tau=3.0), rounds=args.rounds, seed=0,
                out_dir=out, progress=False))
        times["graphmoe_ckpt"] = {"wall_s": wall, "cpu_s": cpu}
    if args.baseline_rounds:
        proxy = proxy_graph(fed.num_features, seed=1234)
        _, wall, cpu = timed(lambda: reference_rounds(fed, args.baseline_rounds, proxy))
        scale = args.rounds / args.baseline_rounds
        times["reference"] = {"wall_s": wall * scale, "cpu_s": cpu * scale}
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"FED-PUB, Cora disjoint 10 clients, {args.rounds} rounds ({machine})")
    for name, t in times.items():
        print(f"  {name:<14} wall {t['wall_s']:7.1f} s   cpu {t['cpu_s']:7.1f} s   "
              f"{args.rounds / t['wall_s']:6.2f} rounds/s (wall)")
    print(f"  test acc (best val round): {100 * history.result()['test_acc']:.2f}")
    g = times["graphmoe"]
    speedup = {"fedpub_cora_disjoint10_vs_reported": round(REFERENCE_REPORTED_S / g["wall_s"], 2)}
    if "reference" in times:
        speedup["fedpub_cora_disjoint10"] = round(times["reference"]["cpu_s"] / g["cpu_s"], 2)
        speedup["fedpub_cora_disjoint10_wall"] = round(times["reference"]["wall_s"] / g["wall_s"], 2)
    print(json.dumps({
        "benchmark": "federated", "speedup": speedup,
        "rounds_per_s": round(args.rounds / g["wall_s"], 2),
        "rounds_per_cpu_s": round(args.rounds / g["cpu_s"], 2),
        "seconds_per_100_rounds": round(100 * g["wall_s"] / args.rounds, 1),
        "times_s": {k: {m: round(v, 2) for m, v in t.items()} for k, t in times.items()},
        "test_acc": round(history.result()["test_acc"], 4),
        "rounds": args.rounds, "machine": machine,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
