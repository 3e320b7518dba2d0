"""The Flower engine: records, settings, the ClientApp/ServerApp pair against the in-process
engine (through a local message loop, and through Flower's simulation engine on Ray)."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import Context, Error, Message, RecordDict  # noqa: E402

from graphmoe.federated import load_federated  # noqa: E402
from graphmoe.federated.algorithms import build_algorithm  # noqa: E402
from graphmoe.federated.flower import (  # noqa: E402
    FlowerSettings,
    make_client_app,
    run_flower,
)
from graphmoe.federated.flower.records import (  # noqa: E402
    ARRAYS,
    load_state,
    record_to_update,
    save_state,
    update_to_record,
)
from graphmoe.federated.flower.server import run_strategy  # noqa: E402
from graphmoe.federated.history import FederatedHistory  # noqa: E402
from graphmoe.federated.simulation import make_clients, run_simulation  # noqa: E402

SMALL = {"hidden_channels": 16}  # as in conftest.py: small models keep the suite fast


class LocalGrid:
    """A Flower ``Grid`` stand-in that delivers each message to a ClientApp in this process,
    one Context per node (what a SuperNode keeps), and records what was sent."""

    def __init__(self, app, num_nodes: int) -> None:
        from flwr.supercore.task_identity import TaskIdentity

        # what a ServerApp process gets from the runtime before it creates messages
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.app = app
        self.contexts = {100 + i: Context(run_id=1, node_id=100 + i,
                                          node_config={"partition-id": i, "num-partitions": num_nodes},
                                          state=RecordDict(), run_config={})
                         for i in range(num_nodes)}
        self.sent: list[Message] = []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            self.sent.append(msg)
            msg.metadata.__dict__["_message_id"] = str(len(self.sent))
            try:
                replies.append(self.app(msg, self.contexts[msg.metadata.dst_node_id]))
            except Exception as err:  # what the SuperNode turns into an error reply
                replies.append(Message(Error(code=0, reason=repr(err)), reply_to=msg))
        return replies


def run_local(clients, algorithm, rounds, fraction=1.0, seed=0, faults=None):
    """The ClientApp and FederatedStrategy of ``run_flower``, without Ray."""
    settings = FlowerSettings(num_clients=len(clients), algorithm=algorithm.name,
                              options=algorithm.options(), rounds=rounds, fraction=fraction,
                              seed=seed, faults=dict(faults or {}))
    grid = LocalGrid(make_client_app(settings, clients), len(clients))
    history = FederatedHistory(algorithm.name, len(clients))
    run_strategy(grid, settings, history)
    return history, grid


def assert_same_history(a: FederatedHistory, b: FederatedHistory, tol: float = 1e-6) -> None:
    assert len(a.rounds) == len(b.rounds)
    for ra, rb in zip(a.rounds, b.rounds):
        assert ra.participants == rb.participants
        assert sorted(ra.failed) == sorted(rb.failed)
        for cid, metrics in ra.clients.items():
            for key, value in metrics.items():
                other = rb.clients[cid][key]
                assert (math.isnan(value) and math.isnan(other)) or abs(value - other) <= tol, \
                    (ra.round, cid, key, value, other)


def test_settings_round_trip_through_a_flat_run_config():
    settings = FlowerSettings(dataset="cora", num_clients=5, algorithm="fedpub",
                              options={"tau": 5.0, "hidden_channels": 16}, rounds=3,
                              faults={(2, 1): "raise"})
    config = settings.to_run_config()
    assert config["num-clients"] == 5 and config["options.tau"] == 5.0
    assert config["faults"] == "2:1:raise"
    assert all(isinstance(v, (bool, int, float, str)) for v in config.values())
    assert FlowerSettings.from_run_config(config) == settings
    override = FlowerSettings.from_run_config({"rounds": 7, "options.tau": 3}, settings)
    assert override.rounds == 7 and override.options["tau"] == 3 and override.dataset == "cora"
    with pytest.raises(ValueError, match="unknown run-config key 'round'"):
        FlowerSettings.from_run_config({"round": 3})
    with pytest.raises(ValueError, match="fraction"):
        FlowerSettings.from_run_config({"fraction": 0})


def test_client_state_survives_a_flower_context(cora_clients):
    algorithm = build_algorithm("fedpub", **SMALL)
    client = cora_clients[0]
    state, twin = make_clients(cora_clients[:1] * 2, algorithm, client.num_features, 7, seed=0)
    for rnd in (1, 2):
        algorithm.fit(state, client, None, rnd)
    context = RecordDict()
    save_state(context, state.state_dict(), rnd=2)
    twin.load_state_dict(load_state(context))
    for key, value in state.model.state_dict().items():
        assert torch.equal(value, twin.model.state_dict()[key]), key
    torch.manual_seed(1)
    a = algorithm.fit(state, client, None, 3)
    torch.manual_seed(1)
    b = algorithm.fit(twin, client, None, 3)  # Adam's moments came through too
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    back = record_to_update(update_to_record(a))
    assert torch.equal(back.embedding, a.embedding) and back.num_examples == a.num_examples
    assert not any(k.endswith(".mask") for k in back.weights)  # masks never leave the client
    assert load_state(RecordDict()) is None


@pytest.mark.parametrize("name", ["local", "fedavg", "fedprox", "fedper", "fedpub"])
def test_apps_reproduce_the_inprocess_engine(cora_clients, caplog, name):
    """ClientApp + FederatedStrategy (without Ray) give exactly the in-process engine's
    rounds, with client sampling and failing clients left out of the aggregation."""
    faults = {(2, 1): "raise", (3, 0): "nan"}
    expected = run_simulation(cora_clients, build_algorithm(name, **SMALL), rounds=3, seed=0,
                              fraction=0.75, faults=faults, progress=False)
    caplog.clear()
    history, _ = run_local(cora_clients, build_algorithm(name, **SMALL), rounds=3,
                           fraction=0.75, faults=faults)
    failed = {(r.round, c) for r in history.rounds for c in r.failed}
    assert failed == {(r, c) for r, c in faults if c in history.rounds[r - 1].participants}
    assert any("left out of the aggregation" in m for m in caplog.messages) == bool(failed)
    assert_same_history(expected, history)


def test_fedpub_sends_each_client_its_own_weights(cora_clients):
    history, grid = run_local(cora_clients, build_algorithm("fedpub", **SMALL), rounds=2)
    train = [m for m in grid.sent if m.metadata.message_type == "train"]
    first, second = train[:len(cora_clients)], train[len(cora_clients):]
    assert not any(ARRAYS in m.content.array_records for m in first)  # nothing before round 1
    received = [m.content[ARRAYS].to_torch_state_dict() for m in second]
    assert not any(k.endswith(".mask") for r in received for k in r)
    key = next(iter(received[0]))
    assert not torch.equal(received[0][key], received[1][key])  # personalised per client
    # the FedAvg server sends one model to all
    _, grid = run_local(cora_clients, build_algorithm("fedavg", **SMALL), rounds=2)
    received = [m.content[ARRAYS].to_torch_state_dict() for m in grid.sent
                if m.metadata.message_type == "train" and ARRAYS in m.content.array_records]
    assert all(torch.equal(r[key], received[0][key]) for r in received)


def test_run_flower_refuses_to_resume(cora_clients):
    with pytest.raises(ValueError, match="cannot resume"):
        run_flower(cora_clients, build_algorithm("fedavg"), rounds=1, resume=True)


@pytest.mark.timeout(600)  # Ray start-up: ~20 s idle, ~40 s on a loaded 2-core machine
@pytest.mark.parametrize("name,faults", [("fedavg", None),
                                          ("fedpub", {(2, 1): "raise", (3, 0): "nan"})])
def test_run_flower_matches_run_simulation(data_root, monkeypatch, name, faults):
    """Same seed, same partition: Flower's simulation engine (Ray) gives the in-process
    engine's per-round metrics, so the headline accuracy is within a point. Each ClientApp
    rebuilds its partition from the dataset name (the data root comes from the environment)."""
    monkeypatch.setenv("GRAPHMOE_DATA", str(data_root))
    fed = load_federated("cora", "disjoint", 3, root=data_root)
    options = {**SMALL, "local_epochs": 5}
    expected = run_simulation(fed, build_algorithm(name, **options), rounds=4, seed=0,
                              faults=faults, progress=False)
    history = run_flower(fed, build_algorithm(name, **options), rounds=4, seed=0,
                         faults=faults, progress=False)
    assert abs(history.result()["test_acc"] - expected.result()["test_acc"]) < 0.01
    assert history.result()["failed_updates"] == (len(faults) if faults else 0)
    assert_same_history(expected, history, tol=1e-4)
    assert history.result()["test_acc"] > 0.4  # learnt: the majority class gives ~0.29
    if faults:
        assert history.rounds[1].failed[1] == "RuntimeError: injected fault in client 1, round 2"
        assert history.rounds[2].failed[0] == "FloatingPointError: non-finite weights"
