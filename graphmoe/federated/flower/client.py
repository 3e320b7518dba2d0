"""The Flower ``ClientApp``: one graphmoe federated client per SuperNode.

A SuperNode's ``node_config["partition-id"]`` is its client id. The ClientApp rebuilds that
client's subgraph deterministically from the run config
(``load_federated(dataset, mode, num_clients, partition_seed)[partition_id]``, cached per
process), rebuilds the model through the algorithm, and keeps everything that must survive
between rounds (model with its local parameters such as FED-PUB's masks, optimizer moments,
``ClientState.extra``) in ``context.state``; only ``ClientUpdate`` leaves the node.

Messages it answers (``message.content``):

* ``query``: none -> ``metrics``: ``partition-id``, ``num-nodes``, ``num-partitions``;
* ``train``: ``config`` (``server-round``) and, after the first aggregation, ``arrays`` (what
  the server sends this client) -> ``arrays`` (shared weights), ``embedding`` (FED-PUB),
  ``metrics`` (``num-examples``, ``train_loss``);
* ``evaluate``: ``config`` -> ``metrics`` (``val_acc``, ``val_loss``, ``test_acc``,
  ``test_loss`` of the client's own model on its own nodes).

A client that raises (or whose update is not finite) answers with an error: its context is not
updated, so it is rolled back to its state before the round, as in the in-process engine.
"""
from __future__ import annotations

from dataclasses import dataclass

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.federated.algorithms import ClientState, FederatedAlgorithm
from graphmoe.federated.flower.records import (
    ARRAYS,
    CONFIG,
    METRICS,
    from_arrays,
    load_state,
    save_state,
    update_to_record,
)
from graphmoe.federated.flower.settings import FlowerSettings
from graphmoe.federated.simulation import client_seed, federated_clients, fit_client, seed_all

__all__ = ["make_client_app", "client_app", "ClientRuntime"]

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"

# Per-process caches (a Ray actor or a SuperNode serves many messages): partitions and
# algorithm instances (which cache sparse features and FED-PUB's proxy graph).
_PARTITIONS: dict[tuple, tuple[list[Data], int, int]] = {}
_ALGORITHMS: dict[str, FederatedAlgorithm] = {}


@dataclass
class ClientRuntime:
    """What a message handler works with: settings, algorithm, client id and subgraph."""

    settings: FlowerSettings
    algorithm: FederatedAlgorithm
    cid: int
    data: Data
    num_features: int
    num_classes: int

    def restore(self, context: Context) -> ClientState:
        """The client's state from ``context.state``; on the first message, a new one built
        after seeding with the run's seed, exactly as the in-process engine builds it."""
        saved = load_state(context.state)
        if saved is None:
            seed_all(self.settings.seed)  # every client starts from the same model
        model = self.algorithm.build_model(self.num_features, self.num_classes)
        state = self.algorithm.init_client(self.data, model)
        if saved is not None:
            state.load_state_dict(saved)
        return state


class _Received:
    """The one-client view of a server that ``simulation.fit_client`` asks for its weights."""

    def __init__(self, weights: dict[str, Tensor] | None) -> None:
        self.weights = weights

    def incoming(self, client_id: int) -> dict[str, Tensor] | None:
        return self.weights


def _partition(settings: FlowerSettings, root: str | None) -> tuple[list[Data], int, int]:
    key = (settings.dataset, settings.mode, settings.num_clients, settings.partition_seed, root)
    if key not in _PARTITIONS:
        from graphmoe.federated import load_federated

        fed = load_federated(settings.dataset, settings.mode, settings.num_clients,
                             seed=settings.partition_seed, root=root)
        _PARTITIONS.clear()
        _PARTITIONS[key] = federated_clients(fed)
    return _PARTITIONS[key]


def _algorithm(settings: FlowerSettings) -> FederatedAlgorithm:
    key = settings.key()
    if key not in _ALGORITHMS:
        _ALGORITHMS.clear()
        _ALGORITHMS[key] = settings.build_algorithm()
    return _ALGORITHMS[key]


def _partition_id(context: Context, num_clients: int) -> int:
    node = context.node_config
    if PARTITION_ID not in node:
        raise ValueError("this SuperNode has no 'partition-id'; start it with "
                         "--node-config \"partition-id=<i> num-partitions=<n>\"")
    cid = int(node[PARTITION_ID])
    total = int(node.get(NUM_PARTITIONS, num_clients))
    if total != num_clients or not 0 <= cid < num_clients:
        raise ValueError(f"SuperNode partition {cid} of {total} does not fit a run with "
                         f"{num_clients} clients")
    return cid


def runtime(context: Context, defaults: FlowerSettings | None,
            clients: list[Data] | None = None) -> ClientRuntime:
    """The :class:`ClientRuntime` of this node for this run.

    Args:
        context: The node's Flower context (run config, node config, state).
        defaults: Settings that the run config completes or overrides (the simulation
            engine's; ``None`` in a deployment, where the run config holds everything).
        clients: The client graphs themselves, when the run is not reproducible from a
            dataset name (simulation only).
    """
    settings = FlowerSettings.from_run_config(context.run_config, defaults)
    cid = _partition_id(context, settings.num_clients)
    if clients is not None:
        parts = federated_clients(clients)
    elif settings.dataset:
        root = str(context.node_config.get("data-root", "")) or settings.data_root or None
        parts = _partition(settings, root)
    else:
        raise ValueError("the run config names no 'dataset' to rebuild the partition from")
    data, num_features, num_classes = parts[0][cid], parts[1], parts[2]
    return ClientRuntime(settings, _algorithm(settings), cid, data, num_features, num_classes)


def handle_query(msg: Message, context: Context, defaults: FlowerSettings | None,
                 clients: list[Data] | None) -> Message:
    """Reports the node's client id (and loads its partition, so that errors show early)."""
    rt = runtime(context, defaults, clients)
    metrics = {PARTITION_ID: rt.cid, NUM_PARTITIONS: rt.settings.num_clients,
               "num-nodes": int(rt.data.num_nodes)}
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)


def handle_train(msg: Message, context: Context, defaults: FlowerSettings | None,
                 clients: list[Data] | None) -> Message:
    """One round of local training from what the server sent (``None`` in round 1)."""
    rt = runtime(context, defaults, clients)
    rnd = int(msg.content[CONFIG]["server-round"])
    incoming = from_arrays(msg.content[ARRAYS]) if ARRAYS in msg.content.array_records else None
    state = rt.restore(context)
    # seeded as in the in-process engine: a client's randomness depends on (seed, rnd, cid)
    seed_all(client_seed(rt.settings.seed, rnd, rt.cid))
    update = fit_client(rt.algorithm, state, rt.data, _Received(incoming), rt.cid, rnd,
                         rt.settings.faults.get((rnd, rt.cid)))
    save_state(context.state, state.state_dict(), rnd)
    return Message(update_to_record(update), reply_to=msg)


def handle_evaluate(msg: Message, context: Context, defaults: FlowerSettings | None,
                    clients: list[Data] | None) -> Message:
    """Local validation and test metrics of the client's own model."""
    rt = runtime(context, defaults, clients)
    metrics = rt.algorithm.evaluate(rt.restore(context), rt.data)
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)


def make_client_app(defaults: FlowerSettings | None = None,
                    clients: list[Data] | None = None) -> ClientApp:
    """A ``ClientApp`` whose settings are ``defaults`` completed by the run config.

    The handlers only call module-level functions, so when Ray ships the app to its actors
    the per-process caches of this module are the actor's own.
    """
    app = ClientApp()

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return handle_query(msg, context, defaults, clients)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return handle_train(msg, context, defaults, clients)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return handle_evaluate(msg, context, defaults, clients)

    return app


#: The deployment ``ClientApp`` (``graphmoe.federated.flower:client_app``): all settings come
#: from the run config of the Flower app.
client_app = make_client_app()
