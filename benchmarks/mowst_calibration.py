"""Does calibrating the experts make the cross-fitted Mowst gate route node-wise?

The cross-fitted gate compares out-of-fold cross-entropies, and an over-confident MLP pays a
large log-loss for its confident mistakes even where it is more accurate than the GNN. This
study fits one temperature per expert on its out-of-fold logits (minimum NLL, as in Guo et al.,
ICML 2017) and fits the gate ``C = sigmoid(G(d))`` (``G`` a 2-layer MLP on the variance
dispersion ``d``, 2,000 Adam steps) on the out-of-fold Mowst loss
``mean_v [C_v CE(z_w / T_w) + (1 - C_v) CE(z_s / T_s)]``, with and without the temperatures.

Experts: graphmoe's MLP and GCN (2 layers, 64 hidden, dropout 0.5, Adam lr 0.01, up to 500
epochs, early stopping on validation accuracy after 50 epochs); out-of-fold logits from 5 copies
trained without their fold. Reports, on the test nodes: each expert's accuracy, the oracle
(per node, the better of the two), the distribution of ``C``, and the accuracy of the random
(expected value) and threshold (``C >= 0.5``) rules.

    OMP_NUM_THREADS=1 GRAPHMOE_DATA=../shared/datasets python benchmarks/mowst_calibration.py \\
        --dataset amherst41 --split 0 --weight-decay 0
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.data import load_dataset
from graphmoe.models import build_model
from graphmoe.models.mowst_confidence import dispersion
from graphmoe.models.mowst_crossfit import make_folds


def train_expert(data: Data, kind: str, mask: Tensor, seed: int, weight_decay: float) -> Tensor:
    """Logits on every node of the epoch with the best validation accuracy."""
    torch.manual_seed(seed)
    y = data.y.view(-1)
    model = build_model(kind, in_channels=data.num_features, hidden_channels=64, num_layers=2,
                        out_channels=int(y.max()) + 1, dropout=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=weight_decay)
    best, best_logits, bad = -1.0, None, 0
    for _ in range(500):
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(data.x, data.edge_index)[mask], y[mask]).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(data.x, data.edge_index)
        acc = float((logits[data.val_mask].argmax(-1) == y[data.val_mask]).float().mean())
        best, best_logits, bad = (acc, logits, 0) if acc > best else (best, best_logits, bad + 1)
        if bad >= 50:
            break
    return best_logits


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """The temperature ``T > 0`` minimising ``CE(logits / T, y)`` (L-BFGS on ``log T``)."""
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], max_iter=100)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.exp())


def fit_gate(d: Tensor, ce_weak: Tensor, ce_strong: Tensor) -> torch.nn.Module:
    torch.manual_seed(0)
    gate = torch.nn.Sequential(torch.nn.Linear(d.size(1), 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 1))
    optimizer = torch.optim.Adam(gate.parameters(), lr=0.01)
    for _ in range(2000):
        optimizer.zero_grad()
        c = torch.sigmoid(gate(d)).view(-1)
        (c * ce_weak + (1 - c) * ce_strong).mean().backward()
        optimizer.step()
    return gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="amherst41")
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, split=args.split)
    if args.dataset in ("cora", "citeseer"):  # the configs' NormalizeFeatures
        data.x = data.x / data.x.sum(1, keepdim=True).clamp(min=1)
    y = data.y.view(-1)
    train = data.train_mask & (y >= 0)
    test = data.test_mask & (y >= 0)
    kinds = ("mlp", "gcn")
    full = {k: train_expert(data, k, train, 0, args.weight_decay) for k in kinds}
    fold = make_folds(train, args.folds, seed=0)
    oof = {k: torch.zeros_like(full[k]) for k in kinds}
    for f in range(args.folds):
        for k in kinds:
            logits = train_expert(data, k, train & (fold != f), 1 + f, args.weight_decay)
            oof[k][fold == f] = logits[fold == f]
    correct = {k: (full[k].argmax(-1) == y).float()[test] for k in kinds}
    report = {"dataset": args.dataset, "split": args.split, "weight_decay": args.weight_decay,
              "test_mlp": float(correct["mlp"].mean()), "test_gcn": float(correct["gcn"].mean()),
              "oracle": float(torch.maximum(correct["mlp"], correct["gcn"]).mean())}
    for calibrated in (False, True):
        temps = {k: fit_temperature(oof[k][train], y[train]) if calibrated else 1.0
                 for k in kinds}
        ce = {k: F.cross_entropy(oof[k][train] / temps[k], y[train], reduction="none")
              for k in kinds}
        gate = fit_gate(dispersion(oof["mlp"][train] / temps["mlp"]), ce["mlp"], ce["gcn"])
        with torch.no_grad():
            c = torch.sigmoid(gate(dispersion(full["mlp"] / temps["mlp"]))).view(-1)[test]
        q = torch.quantile(c, torch.tensor([0.1, 0.5, 0.9])).tolist()
        report["calibrated" if calibrated else "uncalibrated"] = {
            "T_mlp": temps["mlp"], "T_gcn": temps["gcn"],
            "oof_ce_mlp": float(ce["mlp"].mean()), "oof_ce_gcn": float(ce["gcn"].mean()),
            "conf_mean": float(c.mean()), "conf_q10_q50_q90": q,
            "to_mlp_threshold": float((c >= 0.5).float().mean()),
            "random_rule": float((c * correct["mlp"] + (1 - c) * correct["gcn"]).mean()),
            "threshold_rule": float(torch.where(c >= 0.5, correct["mlp"], correct["gcn"]).mean()),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
