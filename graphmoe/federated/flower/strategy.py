"""The Flower ``Strategy`` that wraps an algorithm's :class:`FederatedServer`.

Each round, exactly as the in-process engine does it:

1. :meth:`FederatedStrategy.configure_train` samples the round's clients with
   :func:`~graphmoe.federated.simulation.sample_clients` and sends client ``i`` its own
   message holding ``server.incoming(i)``: FED-PUB's personalised model, the global model of
   FedAvg/FedProx/FedPer (without the local head), nothing for Local or before the first
   aggregation;
2. :meth:`FederatedStrategy.aggregate_train` calls ``server.aggregate`` on the updates that
   arrived (in client order); error replies, missing replies and non-finite updates are left
   out and logged;
3. :meth:`FederatedStrategy.configure_evaluate` asks every client for its local metrics and
   :meth:`FederatedStrategy.aggregate_evaluate` appends the round to the
   :class:`~graphmoe.federated.history.FederatedHistory`.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from graphmoe.federated.algorithms import ClientUpdate, FederatedServer
from graphmoe.federated.flower.client import PARTITION_ID
from graphmoe.federated.flower.records import (
    ARRAYS,
    CONFIG,
    METRICS,
    record_to_update,
    to_arrays,
)
from graphmoe.federated.history import METRICS as EVAL_METRICS
from graphmoe.federated.history import FederatedHistory, RoundRecord
from graphmoe.federated.simulation import sample_clients

__all__ = ["FederatedStrategy"]

log = logging.getLogger("graphmoe.federated")


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: ")


def _reason(msg: Message) -> str:
    """The error of a failed reply, shortened to the client's exception line when Flower
    wrapped it in a traceback (``RuntimeError: ...``)."""
    reason = str(msg.error.reason) if msg.has_error() else ""
    lines = [line.strip() for line in reason.splitlines()]
    found = [line for line in lines if _EXCEPTION_LINE.match(line)
             and "ClientAppException" not in line and "RayTaskError" not in line]
    return found[0] if found else reason[:300]


class FederatedStrategy(Strategy):
    r"""A message-based Flower strategy running a graphmoe federated algorithm's server.

    Clients are identified by their SuperNode's ``partition-id``; :meth:`connect` learns which
    node holds which client before the first round.

    Args:
        server (FederatedServer): ``algorithm.server()``.
        num_clients (int): Number of clients (SuperNodes) of the run.
        history (FederatedHistory): Receives one :class:`RoundRecord` per round.
        fraction (float): Fraction of clients that train each round. (default: ``1.0``)
        seed (int): Seed of the run (client sampling). (default: ``0``)
        on_round (callable, optional): Called with each finished :class:`RoundRecord`.
    """

    def __init__(self, server: FederatedServer, num_clients: int, history: FederatedHistory,
                 fraction: float = 1.0, seed: int = 0,
                 on_round: Callable[[RoundRecord], Any] | None = None) -> None:
        self.server = server
        self.num_clients = int(num_clients)
        self.history = history
        self.fraction = float(fraction)
        self.seed = int(seed)
        self.on_round = on_round
        self.nodes: dict[int, int] = {}  # client id -> node id
        self._clients: dict[int, int] = {}  # node id -> client id
        self._round: dict[str, Any] = {}

    # -- client discovery --------------------------------------------------------------------

    def connect(self, grid: Grid, timeout: float = 3600.0) -> dict[int, int]:
        """Waits for ``num_clients`` SuperNodes, asks each its ``partition-id`` (a ``query``
        message; the client loads its partition on the way) and returns client -> node."""
        deadline = time.monotonic() + timeout
        while len(node_ids := sorted(grid.get_node_ids())) < self.num_clients:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(node_ids)} of {self.num_clients} SuperNodes "
                                   f"connected within {timeout:.0f} s")
            time.sleep(0.05)
        messages = [Message(RecordDict({CONFIG: ConfigRecord()}), dst_node_id=node,
                            message_type="query") for node in node_ids]
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        errors = [_reason(m) for m in replies if m.has_error()]
        if errors or len(replies) < len(node_ids):
            raise RuntimeError(f"{len(errors) or len(node_ids) - len(replies)} SuperNodes could "
                               f"not load their client: {errors[0] if errors else 'no reply'}")
        nodes = {int(m.content[METRICS][PARTITION_ID]): m.metadata.src_node_id for m in replies}
        missing = sorted(set(range(self.num_clients)) - set(nodes))
        if missing or len(nodes) != len(replies):
            raise RuntimeError(f"the SuperNodes must hold partition-ids 0..{self.num_clients - 1} "
                               f"once each; missing {missing}")
        self.nodes = nodes
        self._clients = {node: cid for cid, node in nodes.items()}
        return nodes

    def _message(self, cid: int, kind: str, rnd: int, arrays: ArrayRecord | None) -> Message:
        content = RecordDict({CONFIG: ConfigRecord({"server-round": rnd})})
        if arrays is not None:
            content[ARRAYS] = arrays
        return Message(content, dst_node_id=self.nodes[cid], message_type=kind,
                       group_id=str(rnd))

    def _client_of(self, msg: Message) -> int:
        return self._clients[msg.metadata.src_node_id]

    # -- training ------------------------------------------------------------------------------

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """One message per sampled client, each with that client's own incoming weights."""
        participants = sample_clients(self.num_clients, self.fraction, self.seed, server_round)
        self._round = {"start": time.perf_counter(), "participants": participants, "failed": {}}
        messages = []
        shared: dict[int, ArrayRecord] = {}  # FedAvg: one record for the same dict
        for cid in participants:
            incoming = self.server.incoming(cid)
            record = None
            if incoming is not None:
                record = shared.setdefault(id(incoming), to_arrays(incoming))
            messages.append(self._message(cid, "train", server_round, record))
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """``server.aggregate`` over the valid updates; the others are logged as failed."""
        failed: dict[int, str] = self._round["failed"]
        updates: dict[int, ClientUpdate] = {}
        for msg in replies:
            cid = self._client_of(msg)
            if msg.has_error():
                failed[cid] = _reason(msg)
                continue
            update = record_to_update(msg.content)
            if not update.is_finite():
                failed[cid] = "FloatingPointError: non-finite weights"
                continue
            updates[cid] = update
        for cid in self._round["participants"]:
            if cid not in updates and cid not in failed:
                failed[cid] = "no reply before the timeout"
        for cid, reason in sorted(failed.items()):
            log.warning("round %d: client %d left out of the aggregation (%s)", server_round,
                        cid, reason)
        updates = dict(sorted(updates.items()))
        self.server.aggregate(updates, server_round)
        losses = [u.metrics["train_loss"] for u in updates.values() if "train_loss" in u.metrics]
        metrics = MetricRecord({"train_loss": sum(losses) / len(losses)}) if losses else None
        weights = self.server.global_weights
        return (to_arrays(weights) if weights is not None else None), metrics

    # -- evaluation ----------------------------------------------------------------------------

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Every client evaluates its own model (nothing is sent to it)."""
        return [self._message(cid, "evaluate", server_round, None)
                for cid in range(self.num_clients)]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Records the round (per-client metrics; ``nan`` for a client that did not answer)
        and returns the means over clients."""
        clients = {cid: dict.fromkeys(EVAL_METRICS, math.nan) for cid in range(self.num_clients)}
        for msg in replies:
            cid = self._client_of(msg)
            if msg.has_error():
                log.warning("round %d: client %d failed to evaluate (%s)", server_round, cid,
                            _reason(msg))
                continue
            clients[cid] = {k: float(v) for k, v in msg.content[METRICS].items()}
        record = RoundRecord(server_round, clients, list(self._round["participants"]),
                             dict(sorted(self._round["failed"].items())),
                             time.perf_counter() - self._round["start"])
        self.history.rounds.append(record)
        if self.on_round is not None:
            self.on_round(record)
        means = {k: v for k, v in record.means().items() if not math.isnan(v)}
        return MetricRecord(means) if means else None

    def summary(self) -> None:
        log.info("%s(server=%r, clients=%d, fraction=%s, seed=%d)", type(self).__name__,
                 self.server, self.num_clients, self.fraction, self.seed)
