"""The in-process federated engine: all clients in one process, one after another.

>>> fed = load_federated("cora", "disjoint", 10)
>>> history = run_simulation(fed, build_algorithm("fedpub"), rounds=100, seed=0,
...                          out_dir="runs/fed/fedpub")
>>> history.result()["test_acc"]

Determinism: before a client trains in round ``r``, every RNG (``torch``, ``numpy``,
``random``) is seeded with :func:`client_seed` ``(seed, r, client)``, and client sampling
draws from its own generator seeded with ``(seed, r)``. A client's randomness therefore
depends neither on the other clients nor on where a run was interrupted: ``resume=True``
continues from the last checkpoint with exactly the result of an uninterrupted run, and
another engine that seeds the same way reproduces this one.
"""
from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from graphmoe.federated.algorithms.base import (
    ClientState,
    ClientUpdate,
    FederatedAlgorithm,
    FederatedServer,
)
from graphmoe.federated.history import FederatedHistory, RoundRecord

__all__ = ["run_simulation", "fit_client", "parse_faults", "client_seed", "sample_clients",
           "make_clients", "federated_clients", "CHECKPOINT", "FAULTS"]

log = logging.getLogger("graphmoe.federated")

CHECKPOINT = "checkpoint.pt"
FAULTS = ("raise", "nan")


def client_seed(seed: int, rnd: int, client_id: int) -> int:
    """The seed of client ``client_id``'s training in round ``rnd`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, rnd, client_id]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def sample_clients(num_clients: int, fraction: float, seed: int, rnd: int) -> list[int]:
    """The clients that train in round ``rnd``: all if ``fraction == 1``, else
    ``max(1, round(fraction * num_clients))`` of them drawn without replacement."""
    count = max(1, round(fraction * num_clients))
    if count >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng([seed, rnd])
    return sorted(int(i) for i in rng.choice(num_clients, size=count, replace=False))


def federated_clients(fed: Any) -> tuple[list[Data], int, int]:
    """``(clients, num_features, num_classes)`` of a ``FederatedGraph`` or a list of client
    ``Data`` (each with ``x``, ``y``, ``edge_index`` and train/val/test masks)."""
    clients = list(getattr(fed, "clients", fed))
    if not clients:
        raise ValueError("'fed' holds no clients")
    for i, client in enumerate(clients):
        missing = [k for k in ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask")
                   if getattr(client, k, None) is None]
        if missing:
            raise ValueError(f"client {i} has no {', '.join(missing)}")
    num_features = getattr(fed, "num_features", None) or int(clients[0].x.size(1))
    num_classes = getattr(fed, "num_classes", None) or 1 + max(int(c.y.max()) for c in clients)
    if any(int(c.x.size(1)) != num_features for c in clients):
        raise ValueError("clients have different numbers of features")
    return clients, int(num_features), int(num_classes)


def make_clients(clients: Sequence[Data], algorithm: FederatedAlgorithm, num_features: int,
                 num_classes: int, seed: int) -> list[ClientState]:
    """One :class:`ClientState` per client; every model is built after seeding with ``seed``,
    so all clients start from the same weights (as after broadcasting an initial model)."""
    states = []
    for client in clients:
        seed_all(seed)
        states.append(algorithm.init_client(client, algorithm.build_model(num_features, num_classes)))
    return states


def parse_faults(faults: Any) -> dict[tuple[int, int], str]:
    if not faults:
        return {}
    items = faults.items() if isinstance(faults, Mapping) else (((r, c), k) for r, c, k in faults)
    out = {}
    for (rnd, cid), kind in items:
        if kind not in FAULTS:
            raise ValueError(f"fault kind must be one of {FAULTS}, got {kind!r}")
        out[(int(rnd), int(cid))] = kind
    return out


def fit_client(algorithm: FederatedAlgorithm, state: ClientState, client: Data,
                server: FederatedServer, cid: int, rnd: int, fault: str | None) -> ClientUpdate:
    if fault == "raise":
        raise RuntimeError(f"injected fault in client {cid}, round {rnd}")
    update = algorithm.fit(state, client, server.incoming(cid), rnd)
    if fault == "nan":
        for value in update.weights.values():
            if value.is_floating_point():
                value.fill_(float("nan"))
                break
        else:
            if update.embedding is not None:
                update.embedding = torch.full_like(update.embedding, float("nan"))
    if not update.is_finite():
        raise FloatingPointError("non-finite weights")
    return update


def _run_round(algorithm: FederatedAlgorithm, server: FederatedServer, states: list[ClientState],
               clients: list[Data], rnd: int, seed: int, fraction: float,
               faults: dict[tuple[int, int], str]) -> RoundRecord:
    start = time.perf_counter()
    participants = sample_clients(len(clients), fraction, seed, rnd)
    updates: dict[int, ClientUpdate] = {}
    failed: dict[int, str] = {}
    for cid in participants:
        seed_all(client_seed(seed, rnd, cid))
        snapshot = states[cid].snapshot()
        try:
            updates[cid] = fit_client(algorithm, states[cid], clients[cid], server, cid, rnd,
                                       faults.get((rnd, cid)))
        except Exception as err:  # a failing client must not stop the federation
            states[cid].load_state_dict(snapshot)
            failed[cid] = f"{type(err).__name__}: {err}"
            log.warning("round %d: client %d left out of the aggregation (%s)", rnd, cid,
                        failed[cid])
    server.aggregate(updates, rnd)
    metrics = {cid: algorithm.evaluate(states[cid], clients[cid]) for cid in range(len(clients))}
    return RoundRecord(rnd, metrics, participants, failed, time.perf_counter() - start)


def _meta(algorithm: FederatedAlgorithm, num_clients: int, fraction: float, seed: int) -> dict:
    return {"algorithm": algorithm.name, "options": algorithm.options(),
            "num_clients": num_clients, "fraction": fraction, "seed": seed}


def _save_checkpoint(path: Path, meta: dict, states: list[ClientState], server: FederatedServer,
                     history: FederatedHistory) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"meta": meta, "round": history.rounds[-1].round,
                "clients": [s.state_dict() for s in states], "server": server.state_dict(),
                "history": history.to_dict()}, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, meta: dict, states: list[ClientState],
                     server: FederatedServer) -> FederatedHistory:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["meta"] != meta:
        diff = sorted(k for k in meta if ckpt["meta"].get(k) != meta[k])
        raise ValueError(f"cannot resume from {path}: it was written by a run with other "
                         f"settings ({', '.join(diff)} differ); use another output directory "
                         f"or drop --resume")
    for state, saved in zip(states, ckpt["clients"]):
        state.load_state_dict(saved)
    server.load_state_dict(ckpt["server"])
    return FederatedHistory.from_dict(ckpt["history"])


def _progress(enabled: bool, console: Any):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=console,
                    transient=False)


def run_simulation(
    fed: Any,
    algorithm: FederatedAlgorithm,
    rounds: int = 100,
    local_epochs: int | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    faults: Mapping[tuple[int, int], str] | Iterable[tuple[int, int, str]] | None = None,
    *,
    checkpoint_every: int = 1,
    progress: bool = True,
    console: Any = None,
) -> FederatedHistory:
    """Runs ``rounds`` rounds of ``algorithm`` on the clients of ``fed`` in this process.

    Each round: the sampled clients train one after another (each from what the server sent
    it), the server aggregates the updates of those that succeeded, and every client is
    evaluated (local validation/test accuracy and loss of its own model). A client whose
    ``fit`` raises or returns non-finite weights is rolled back to its state before the round,
    left out of the aggregation and logged (``RoundRecord.failed``); the run goes on.

    Args:
        fed: A ``FederatedGraph`` or a list of client ``Data``.
        algorithm: From :func:`~graphmoe.federated.algorithms.build_algorithm`.
        rounds (int): Number of communication rounds.
        local_epochs (int, optional): Overrides ``algorithm.local_epochs``.
        fraction (float): Fraction of clients sampled per round, in ``(0, 1]``.
        seed (int): Seed of the whole run (model initialisation, dropout, sampling).
        out_dir (path, optional): Where ``checkpoint.pt`` is written after each round (every
            ``checkpoint_every`` rounds, and after the last).
        resume (bool): Continue from ``out_dir/checkpoint.pt`` when it exists; the checkpoint
            must come from a run with the same algorithm, options, clients, fraction and seed.
        faults: Injected failures for tests: ``{(round, client): "raise" | "nan"}``.
        checkpoint_every (int): Rounds between checkpoints.
        progress (bool): Show a Rich progress bar over rounds.
        console: The :class:`rich.console.Console` of the progress bar.

    Returns:
        The run's :class:`~graphmoe.federated.history.FederatedHistory`.
    """
    clients, num_features, num_classes = federated_clients(fed)
    if int(rounds) < 1:
        raise ValueError(f"'rounds' must be >= 1, got {rounds}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"'fraction' must be in (0, 1], got {fraction}")
    if int(checkpoint_every) < 1:
        raise ValueError(f"'checkpoint_every' must be >= 1, got {checkpoint_every}")
    if resume and out_dir is None:
        raise ValueError("'resume' needs an 'out_dir' to resume from")
    if local_epochs is not None:
        if int(local_epochs) < 1:
            raise ValueError(f"'local_epochs' must be >= 1, got {local_epochs}")
        algorithm.local_epochs = int(local_epochs)
    fault_plan = parse_faults(faults)
    states = make_clients(clients, algorithm, num_features, num_classes, seed)
    server = algorithm.server()
    meta = _meta(algorithm, len(clients), fraction, seed)
    history = FederatedHistory(algorithm.name, len(clients), options=algorithm.options(), seed=seed)
    path = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = Path(out_dir) / CHECKPOINT
        if resume and path.is_file():
            history = _load_checkpoint(path, meta, states, server)
            if history.rounds and history.rounds[-1].round > rounds:
                raise ValueError(f"cannot resume from {path}: it already holds "
                                 f"{history.rounds[-1].round} rounds, more than {rounds}")
            log.info("resuming %s from round %d", algorithm.name, len(history.rounds))
    first = history.rounds[-1].round + 1 if history.rounds else 1
    elapsed, start = history.wall_time, time.perf_counter()
    with _progress(progress, console) as bar:
        task = None
        if bar is not None:
            task = bar.add_task(f"{algorithm.name}", total=rounds, completed=first - 1, status="")
        for rnd in range(first, rounds + 1):
            record = _run_round(algorithm, server, states, clients, rnd, seed, fraction, fault_plan)
            history.rounds.append(record)
            history.wall_time = elapsed + time.perf_counter() - start
            if path is not None and (rnd % checkpoint_every == 0 or rnd == rounds):
                _save_checkpoint(path, meta, states, server, history)
            if bar is not None:
                status = (f"val {record.mean('val_acc'):.4f}  test {record.mean('test_acc'):.4f}"
                          + (f"  [red]{len(record.failed)} failed[/red]" if record.failed else ""))
                bar.update(task, advance=1, status=status)
    return history
