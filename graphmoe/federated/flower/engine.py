"""``run_flower``: a federated run through Flower's simulation engine (Ray backend)."""
from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from graphmoe.federated.algorithms import FederatedAlgorithm
from graphmoe.federated.flower.client import make_client_app
from graphmoe.federated.flower.server import make_server_app
from graphmoe.federated.flower.settings import FlowerSettings
from graphmoe.federated.history import FederatedHistory, RoundRecord
from graphmoe.federated.simulation import federated_clients, parse_faults

__all__ = ["run_flower", "backend_config"]

log = logging.getLogger("graphmoe.federated")


def backend_config(num_clients: int, num_cpus: float = 1.0,
                   verbose: bool = False) -> dict[str, Any]:
    """Flower's Ray backend config: ``num_cpus`` per ClientApp (one Ray actor each), no GPU,
    and a Ray instance no larger than the clients can use (every actor imports torch); the
    actors' output reaches this process only when ``verbose`` (failures come back as error
    replies either way)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        available = os.cpu_count() or 1
    total = max(num_cpus, min(float(available), num_clients * num_cpus))
    return {"client_resources": {"num_cpus": num_cpus, "num_gpus": 0.0},
            "init_args": {"num_cpus": total, "num_gpus": 0, "log_to_driver": verbose,
                          "logging_level": "INFO" if verbose else "ERROR"}}


def _same_clients(a: list[Data], b: list[Data]) -> bool:
    keys = ("global_id", "edge_index", "train_mask", "val_mask", "test_mask")
    return len(a) == len(b) and all(
        getattr(x, k, None) is not None and torch.equal(getattr(x, k), getattr(y, k))
        for x, y in zip(a, b) for k in keys)


def _rebuildable(fed: Any, clients: list[Data], root: str) -> bool:
    """Whether ``load_federated`` with ``fed``'s name, mode, size and seed gives exactly its
    clients (then each ClientApp rebuilds its own partition instead of receiving it)."""
    if not all(hasattr(fed, k) for k in ("name", "mode", "num_clients", "seed")):
        return False
    from graphmoe.federated import load_federated

    try:
        rebuilt = load_federated(fed.name, fed.mode, fed.num_clients, seed=fed.seed, root=root)
    except Exception as err:  # not on disk here, another root, ...: ship the graphs instead
        log.debug("cannot rebuild the partition from its name (%s)", err)
        return False
    return _same_clients(clients, rebuilt.clients)


def _settings(fed: Any, algorithm: FederatedAlgorithm, num_clients: int, rounds: int,
              fraction: float, seed: int, faults: dict[tuple[int, int], str],
              rebuild: bool, root: str) -> FlowerSettings:
    spec = {"dataset": fed.name, "mode": fed.mode, "partition_seed": int(fed.seed),
            "data_root": root} if rebuild else {}
    return FlowerSettings(**spec, num_clients=num_clients, algorithm=algorithm.name,
                          options=algorithm.options(), rounds=int(rounds),
                          local_epochs=algorithm.local_epochs, fraction=float(fraction),
                          seed=int(seed), faults=faults)


@contextmanager
def _quiet(verbose: bool):
    """Keeps Flower's per-round INFO log and Ray's start-up tips off the console (graphmoe
    logs failures itself) unless ``verbose``."""
    if verbose:
        yield
        return
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _progress(enabled: bool, console: Any):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=console)


def _check(rounds: int, fraction: float, local_epochs: int | None, resume: bool) -> None:
    if int(rounds) < 1:
        raise ValueError(f"'rounds' must be >= 1, got {rounds}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"'fraction' must be in (0, 1], got {fraction}")
    if local_epochs is not None and int(local_epochs) < 1:
        raise ValueError(f"'local_epochs' must be >= 1, got {local_epochs}")
    if resume:
        raise ValueError("the flower engine cannot resume a run: each client's state lives in "
                         "its Flower context, which ends with the run; drop --resume or use "
                         "--engine inprocess")


def run_flower(
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
    num_cpus: float = 1.0,
    backend: Mapping[str, Any] | None = None,
    timeout: float = 3600.0,
    verbose: bool = False,
) -> FederatedHistory:
    """Runs ``rounds`` rounds of ``algorithm`` as a Flower ``ServerApp`` and one ``ClientApp``
    per client in Flower's simulation engine; the same arguments and result as
    :func:`~graphmoe.federated.simulation.run_simulation`.

    Each client runs on its own virtual SuperNode (``partition-id`` = client id) in a Ray
    actor of ``num_cpus`` CPUs; it rebuilds its subgraph from ``fed``'s dataset name, mode,
    size and seed (when ``load_federated`` reproduces ``fed``; other client lists are shipped
    to the actors) and keeps its state, FED-PUB's masks included, in its Flower context. The
    server side is :class:`~graphmoe.federated.flower.strategy.FederatedStrategy` around
    ``algorithm.server()``. Clients are seeded as in the in-process engine, so both engines
    give the same result up to floating-point summation order.

    Args:
        fed, algorithm, rounds, local_epochs, fraction, seed, faults: As in
            :func:`~graphmoe.federated.simulation.run_simulation`.
        out_dir (path, optional): Created if missing (the caller writes its outputs there).
        resume (bool): Not supported: raises :class:`ValueError` when ``True``.
        checkpoint_every (int): Ignored (a Flower run keeps no checkpoint).
        progress (bool): Show a Rich progress bar over rounds.
        console: The :class:`rich.console.Console` of the progress bar.
        num_cpus (float): CPUs of each ClientApp's Ray actor.
        backend (dict, optional): Flower backend config replacing :func:`backend_config`.
        timeout (float): Seconds the server waits for one round's replies.
        verbose (bool): Show Flower's and Ray's own log.

    Returns:
        The run's :class:`~graphmoe.federated.history.FederatedHistory`.
    """
    from flwr.simulation import run_simulation as flower_simulation

    from graphmoe.data.cache import resolve_root

    clients, _, _ = federated_clients(fed)
    _check(rounds, fraction, local_epochs, resume)
    if local_epochs is not None:
        algorithm.local_epochs = int(local_epochs)
    root = str(resolve_root(None).absolute())
    rebuild = _rebuildable(fed, clients, root)
    settings = _settings(fed, algorithm, len(clients), rounds, fraction, seed,
                         parse_faults(faults), rebuild, root)
    settings.timeout = float(timeout)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    history = FederatedHistory(algorithm.name, len(clients), options=algorithm.options(),
                               seed=seed)
    start = time.perf_counter()
    with _progress(progress, console) as bar:
        on_round = None
        if bar is not None:
            task = bar.add_task(f"{algorithm.name} (flower)", total=rounds, status="")

            def on_round(record: RoundRecord) -> None:
                status = (f"val {record.mean('val_acc'):.4f}  test {record.mean('test_acc'):.4f}"
                          + (f"  [red]{len(record.failed)} failed[/red]" if record.failed else ""))
                bar.update(task, advance=1, status=status)

        with _quiet(verbose):
            flower_simulation(
                server_app=make_server_app(settings, history, on_round),
                client_app=make_client_app(settings, None if rebuild else clients),
                num_supernodes=len(clients),
                backend_config=dict(backend or backend_config(len(clients), num_cpus, verbose)),
                verbose_logging=verbose)
    if len(history.rounds) < rounds:
        raise RuntimeError(f"the Flower simulation stopped after {len(history.rounds)} of "
                           f"{rounds} rounds (run with verbose=True to see Flower's log)")
    history.wall_time = time.perf_counter() - start
    return history
