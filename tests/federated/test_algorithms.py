"""Algorithms: FedAvg weighting, FED-PUB's similarity weights and personalised aggregation,
penalties with real gradients, local keys, registry and option errors."""
from __future__ import annotations

import math

import pytest
import torch

from graphmoe.federated.algorithms import (
    ALGORITHMS,
    ClientUpdate,
    FedAvgServer,
    FedPubServer,
    build_algorithm,
    personalized_weights,
    proxy_graph,
)

SMALL = {"hidden_channels": 16}  # small models keep the suite fast


def _update(value: float, n: int, embedding=None) -> ClientUpdate:
    return ClientUpdate({"w": torch.full((2, 3), value), "b": torch.tensor([value, -value])}, n,
                        embedding)


def test_fedavg_weights_by_training_size_exactly():
    server = FedAvgServer()
    out = server.aggregate({0: _update(1.0, 10), 3: _update(4.0, 30), 5: _update(-2.0, 60)}, 1)
    expected = (10 * 1.0 + 30 * 4.0 + 60 * -2.0) / 100
    assert set(out) == {0, 3, 5}
    for weights in out.values():
        torch.testing.assert_close(weights["w"], torch.full((2, 3), expected))
        torch.testing.assert_close(weights["b"], torch.tensor([expected, -expected]))
    assert server.incoming(7) is server.global_weights  # a client that did not take part
    assert server.aggregate({}, 2) == {}  # nothing survived: the global model stays
    torch.testing.assert_close(server.incoming(0)["w"], torch.full((2, 3), expected))


def test_fedpub_similarity_weights_exactly():
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    alpha = personalized_weights(e, tau=3.0)
    s = 1 / math.sqrt(2)
    sim = torch.tensor([[1.0, s, 0.0], [s, 1.0, s], [0.0, s, 1.0]], dtype=torch.float64)
    expected = torch.exp(3 * sim) / torch.exp(3 * sim).sum(dim=1, keepdim=True)
    torch.testing.assert_close(alpha, expected)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="tau"):
        personalized_weights(e, tau=0.0)


def test_fedpub_server_sends_each_client_its_personalised_model():
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    updates = {2: _update(1.0, 5, e[0]), 4: _update(2.0, 5, e[1]), 9: _update(6.0, 10, e[2])}
    server = FedPubServer(tau=5.0)
    out = server.aggregate(updates, 1)
    alpha = personalized_weights(e, 5.0).float()
    thetas = torch.tensor([1.0, 2.0, 6.0])
    for row, cid in enumerate((2, 4, 9)):
        expected = float(alpha[row] @ thetas)
        torch.testing.assert_close(out[cid]["w"], torch.full((2, 3), expected))
        assert server.incoming(cid) is out[cid]
    torch.testing.assert_close(server.incoming(7)["w"], torch.full((2, 3), 3.75))  # by size
    assert len({round(float(out[c]["w"][0, 0]), 6) for c in out}) == 3
    with pytest.raises(ValueError, match="embedding"):
        server.aggregate({0: _update(1.0, 1)}, 2)


def test_local_keys_never_leave_the_client(cora_clients):
    client = cora_clients[0]
    expected = {"local": None, "fedavg": set(), "fedprox": set(),
                "fedper": {"classifier.weight", "classifier.bias"},
                "fedpub": {"convs.0.lin.mask", "convs.1.lin.mask", "classifier.mask"}}
    for name, local in expected.items():
        algorithm = build_algorithm(name, **SMALL)
        model = algorithm.build_model(client.num_features, 7)
        keys = set(model.state_dict())
        local = keys if local is None else local
        assert algorithm.local_keys(model) == local, name
        update = algorithm.fit(algorithm.init_client(client, model), client, None, 1)
        assert set(update.weights) == keys - local, name
        assert update.num_examples == int(client.train_mask.sum())
        assert (update.embedding is not None) == (name == "fedpub")
        with pytest.raises(ValueError, match="local key"):
            if local:
                algorithm.load_incoming(algorithm.init_client(client, model),
                                        {next(iter(local)): torch.zeros(1)})
            else:
                raise ValueError("local key (none to test)")


def test_fedpub_penalties_have_real_gradients(cora_clients):
    """The reference computes both terms from detached ``state_dict()`` tensors: no gradient."""
    client = cora_clients[0]
    algorithm = build_algorithm("fedpub", l1=0.5, loc_l2=0.25, **SMALL)
    state = algorithm.init_client(client, algorithm.build_model(client.num_features, 7))
    model = state.model
    with torch.no_grad():
        model.convs[0].lin.mask.mul_(-1)  # negative entries: the L1 gradient is -l1
    incoming = {k: v + 0.1 for k, v in algorithm.shared_weights(model).items()}
    penalty = algorithm.penalty(state, incoming)
    penalty.backward()
    for name, p in model.named_parameters():
        if name.endswith(".mask"):
            torch.testing.assert_close(p.grad, 0.5 * torch.sign(p.detach()))
        else:
            torch.testing.assert_close(p.grad, 2 * 0.25 * (p.detach() - incoming[name]))


@pytest.mark.parametrize("option", ["l1", "loc_l2"])
def test_fedpub_penalties_move_the_parameters(cora_clients, option):
    client = cora_clients[1]
    params, incoming_of = {}, {}
    for value in (0.0, 0.1):
        algorithm = build_algorithm("fedpub", local_epochs=3, **{option: value}, **SMALL)
        torch.manual_seed(0)
        model = algorithm.build_model(client.num_features, 7)
        state = algorithm.init_client(client, model)
        # theta starts at theta_incoming: the proximal term acts from the second local step on
        incoming = incoming_of[value] = algorithm.shared_weights(model)
        torch.manual_seed(1)
        algorithm.fit(state, client, incoming, 2)
        params[value] = {k: v.clone() for k, v in model.state_dict().items()}
    moved = [k for k in params[0.0] if not torch.equal(params[0.0][k], params[0.1][k])]
    if option == "l1":
        assert {"convs.0.lin.mask", "classifier.mask"} <= set(moved)
        assert params[0.1]["classifier.mask"].abs().sum() < params[0.0]["classifier.mask"].abs().sum()
    else:
        assert {"convs.0.lin.weight", "convs.1.lin.weight", "classifier.weight"} <= set(moved)
        start = incoming_of[0.1]
        for key in ("convs.1.lin.weight", "classifier.weight"):  # pulled towards theta_incoming
            assert (params[0.1][key] - start[key]).norm() < (params[0.0][key] - start[key]).norm()


def test_fedprox_penalty_gradient(cora_clients):
    client = cora_clients[0]
    algorithm = build_algorithm("fedprox", mu=0.2, **SMALL)
    state = algorithm.init_client(client, algorithm.build_model(client.num_features, 7))
    assert algorithm.penalty(state, None) is None
    incoming = {k: torch.zeros_like(v) for k, v in algorithm.shared_weights(state.model).items()}
    algorithm.penalty(state, incoming).backward()
    for p in state.model.parameters():
        torch.testing.assert_close(p.grad, 0.2 * p.detach())


def test_proxy_graph_is_seeded_and_block_diagonal():
    a, b = proxy_graph(7, seed=3), proxy_graph(7, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
    assert a.x.shape == (500, 7)
    assert torch.equal(a.edge_index[0] // 100, a.edge_index[1] // 100)  # p_out = 0
    assert not torch.equal(a.x, proxy_graph(7, seed=4).x)


def test_fedpub_embedding_is_computed_in_eval_mode(cora_clients):
    client = cora_clients[0]
    algorithm = build_algorithm("fedpub", **SMALL)
    state = algorithm.init_client(client, algorithm.build_model(client.num_features, 7))
    state.model.train()
    first, second = algorithm.embedding(state), algorithm.embedding(state)
    assert first.shape == (16,) and torch.equal(first, second)


def test_client_state_round_trip(cora_clients):
    client = cora_clients[2]
    algorithm = build_algorithm("fedpub", **SMALL)
    state = algorithm.init_client(client, algorithm.build_model(client.num_features, 7))
    snapshot = state.snapshot()
    algorithm.fit(state, client, None, 1)
    assert not torch.equal(state.model.state_dict()["classifier.weight"],
                           snapshot["model"]["classifier.weight"])
    state.load_state_dict(snapshot)
    for k, v in state.model.state_dict().items():
        assert torch.equal(v, snapshot["model"][k])


def test_registry_and_option_errors():
    assert set(ALGORITHMS) == {"local", "fedavg", "fedprox", "fedper", "fedpub"}
    assert type(build_algorithm("FED-PUB")).__name__ == "FedPub"
    with pytest.raises(ValueError, match="unknown federated algorithm 'fedsgd'.*fedpub"):
        build_algorithm("fedsgd")
    with pytest.raises(ValueError, match="unknown option 'tua'.*tau"):
        build_algorithm("fedpub", tua=3)
    with pytest.raises(ValueError, match="'tau' must be > 0"):
        build_algorithm("fedpub", tau=0)
    with pytest.raises(ValueError, match="'tau' must be > 0"):
        build_algorithm("fedpub", tau=-1.0)
    with pytest.raises(ValueError, match="'mu'"):
        build_algorithm("fedprox", mu=-1)
    assert "mu=0.01" in repr(build_algorithm("fedprox"))
