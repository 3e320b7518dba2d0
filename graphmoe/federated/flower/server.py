"""The Flower ``ServerApp``: runs :class:`FederatedStrategy` for the configured rounds."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from graphmoe.federated.flower.settings import FlowerSettings
from graphmoe.federated.flower.strategy import FederatedStrategy
from graphmoe.federated.history import FederatedHistory, RoundRecord

__all__ = ["make_server_app", "server_app", "run_strategy"]

log = logging.getLogger("graphmoe.federated")


def run_strategy(grid: Grid, settings: FlowerSettings, history: FederatedHistory,
                 on_round: Callable[[RoundRecord], Any] | None = None) -> FederatedStrategy:
    """Connects to the run's SuperNodes and runs ``settings.rounds`` rounds, recording them in
    ``history``."""
    algorithm = settings.build_algorithm()
    strategy = FederatedStrategy(algorithm.server(), settings.num_clients, history,
                                 fraction=settings.fraction, seed=settings.seed,
                                 on_round=on_round)
    strategy.connect(grid, timeout=settings.timeout)
    start = time.perf_counter()
    strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=settings.rounds,
                   timeout=settings.timeout)
    history.wall_time = time.perf_counter() - start
    return strategy


def _write_outputs(settings: FlowerSettings, history: FederatedHistory) -> None:
    from graphmoe.federated.outputs import plot_accuracy, write_rounds_csv, write_summary

    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label = settings.algorithm
    (out / "history.json").write_text(json.dumps(history.to_dict(), default=str) + "\n")
    histories = {label: history}
    meta = {"dataset": settings.dataset, "mode": settings.mode,
            "num_clients": settings.num_clients, "partition_seed": settings.partition_seed,
            "seed": settings.seed, "rounds": settings.rounds,
            "local_epochs": settings.local_epochs, "fraction": settings.fraction,
            "engine": "flower-deployment"}
    write_rounds_csv(histories, out / "rounds.csv")
    write_summary(histories, out / "summary.json", meta)
    plot_accuracy(histories, out / "accuracy.png",
                  title=f"{settings.dataset} {settings.mode} {settings.num_clients} clients")
    log.info("results written to %s", out)


def make_server_app(defaults: FlowerSettings | None = None,
                    history: FederatedHistory | None = None,
                    on_round: Callable[[RoundRecord], Any] | None = None) -> ServerApp:
    """A ``ServerApp`` whose settings are ``defaults`` completed by the run config.

    Args:
        defaults: Settings (the simulation engine's; ``None``: the run config's only).
        history: Receives the rounds (the simulation engine reads it back); a new one if
            ``None``, written to ``out-dir`` when the run config names one.
        on_round: Called after each round (progress bars).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        settings = FlowerSettings.from_run_config(context.run_config, defaults)
        target = history
        if target is None:
            target = FederatedHistory(settings.algorithm, settings.num_clients,
                                      options=settings.build_algorithm().options(),
                                      seed=settings.seed)
        run_strategy(grid, settings, target, on_round)
        if history is None and settings.out_dir:
            _write_outputs(settings, target)

    return app


#: The deployment ``ServerApp`` (``graphmoe.federated.flower:server_app``).
server_app = make_server_app()
