"""The in-process engine: determinism, resume equality, faults, sampling, checkpoints."""
from __future__ import annotations

import math

import pytest
import torch

from graphmoe.federated.algorithms import build_algorithm
from graphmoe.federated.simulation import client_seed, run_simulation, sample_clients

SMALL = {"hidden_channels": 16}


def _run(clients, name="fedpub", rounds=3, **kwargs):
    options = kwargs.pop("options", {})
    return run_simulation(clients, build_algorithm(name, **SMALL, **options), rounds=rounds,
                          progress=False, **kwargs)


def test_runs_are_deterministic_given_the_seed(cora_clients):
    a = _run(cora_clients, seed=1)
    b = _run(cora_clients, seed=1)
    c = _run(cora_clients, seed=2)
    assert a.metrics() == b.metrics()
    assert a.metrics() != c.metrics()
    assert [r.round for r in a.rounds] == [1, 2, 3]
    assert all(set(m) == {"val_acc", "val_loss", "test_acc", "test_loss"}
               for r in a.rounds for m in r.clients.values())
    result = a.result()
    best = max(a.rounds, key=lambda r: r.mean("val_acc"))
    assert result["test_acc"] == best.mean("test_acc") and result["best_round"] == best.round


@pytest.mark.parametrize("name", ["fedpub", "fedavg"])
def test_resume_gives_the_same_history_as_an_uninterrupted_run(cora_clients, tmp_path, name):
    full = _run(cora_clients, name, rounds=6, seed=0, out_dir=tmp_path / "full")
    _run(cora_clients, name, rounds=3, seed=0, out_dir=tmp_path / "cut")
    resumed = _run(cora_clients, name, rounds=6, seed=0, out_dir=tmp_path / "cut", resume=True,
                   fraction=1.0)
    assert [r.round for r in resumed.rounds] == list(range(1, 7))
    assert resumed.metrics() == full.metrics()
    again = _run(cora_clients, name, rounds=6, seed=0, out_dir=tmp_path / "cut", resume=True)
    assert again.metrics() == full.metrics()  # nothing left to run: the saved history
    with pytest.raises(ValueError, match="other settings.*seed"):
        _run(cora_clients, name, rounds=6, seed=5, out_dir=tmp_path / "cut", resume=True)


def test_resume_with_client_sampling_and_sparse_checkpoints(cora_clients, tmp_path):
    kwargs = {"seed": 0, "fraction": 0.5}
    full = _run(cora_clients, rounds=5, **kwargs)
    _run(cora_clients, rounds=4, out_dir=tmp_path, checkpoint_every=2, **kwargs)
    resumed = _run(cora_clients, rounds=5, out_dir=tmp_path, resume=True, **kwargs)
    assert resumed.metrics() == full.metrics()
    assert all(len(r.participants) == 2 for r in full.rounds)


@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_a_failing_client_is_left_out_and_the_run_goes_on(cora_clients, kind, caplog):
    faults = {(2, 1): kind, (3, 0): kind}
    history = _run(cora_clients, "fedavg", rounds=4, seed=0, faults=faults)
    assert list(history.rounds[1].failed) == [1] and list(history.rounds[2].failed) == [0]
    assert not history.rounds[0].failed and not history.rounds[3].failed
    reason = history.rounds[1].failed[1]
    assert ("injected fault" in reason) if kind == "raise" else ("non-finite" in reason)
    assert "left out of the aggregation" in caplog.text
    for record in history.rounds:
        assert all(math.isfinite(m["val_loss"]) for m in record.clients.values())
    clean = _run(cora_clients, "fedavg", rounds=4, seed=0)
    assert clean.metrics()[0] == history.metrics()[0]
    assert clean.metrics()[1] != history.metrics()[1]


def test_failed_clients_do_not_reach_the_server(cora_clients, monkeypatch):
    from graphmoe.federated.algorithms.fedpub import FedPubServer

    seen = []
    original = FedPubServer.aggregate

    def spy(self, updates, rnd):
        seen.append(sorted(updates))
        assert all(u.is_finite() for u in updates.values())
        return original(self, updates, rnd)

    monkeypatch.setattr(FedPubServer, "aggregate", spy)
    _run(cora_clients, rounds=2, seed=0, faults=[(1, 2, "nan"), (2, 3, "raise")])
    assert seen == [[0, 1, 3], [0, 1, 2]]


def test_client_sampling_and_seeds():
    assert sample_clients(10, 1.0, 0, 1) == list(range(10))
    picked = sample_clients(10, 0.3, 0, 1)
    assert len(picked) == 3 and picked == sample_clients(10, 0.3, 0, 1)
    assert len({tuple(sample_clients(10, 0.3, 0, r)) for r in range(1, 20)}) > 1
    assert client_seed(0, 1, 2) == client_seed(0, 1, 2) != client_seed(0, 2, 1)


def test_bad_arguments(cora_clients, tmp_path):
    with pytest.raises(ValueError, match="'fraction'"):
        _run(cora_clients, fraction=0.0)
    with pytest.raises(ValueError, match="'rounds'"):
        _run(cora_clients, rounds=0)
    with pytest.raises(ValueError, match="fault kind"):
        _run(cora_clients, faults={(1, 0): "explode"})
    with pytest.raises(ValueError, match="'resume' needs"):
        _run(cora_clients, resume=True)
    with pytest.raises(ValueError, match="no clients"):
        _run([])


def test_local_epochs_override_and_local_only(cora_clients):
    algorithm = build_algorithm("local", **SMALL)
    history = run_simulation(cora_clients, algorithm, rounds=2, local_epochs=3, progress=False)
    assert algorithm.local_epochs == 3
    assert len(history.rounds) == 2
    assert torch.isfinite(torch.tensor(history.curve("test_acc"))).all()


def test_fedavg_with_one_client_is_local_training(cora_clients):
    one = cora_clients[:1]
    local = _run(one, "local", rounds=4, seed=3)
    for name in ("fedavg", "fedper"):
        assert _run(one, name, rounds=4, seed=3).metrics() == local.metrics(), name


def test_fedavg_equals_the_reference_implementation(cora_clients, tmp_path):
    """FedAvg as JinheonBaek/FED-PUB computes it (models/nets.py's GCN of PyG ``GCNConv``s,
    models/fedavg/{client,server}.py): each client keeps its own Adam, whose state persists
    across rounds while ``load_state_dict`` overwrites the weights with the global model; one
    full-batch step; local validation/test accuracy of the locally trained model; the server
    averages the clients' state dicts (uniformly: equal training sizes here). Same init, same
    dropout draws: the same per-round accuracies and the same final models."""
    import torch.nn.functional as F
    from torch import nn
    from torch_geometric.nn import GCNConv

    from graphmoe.federated.simulation import CHECKPOINT, seed_all
    from graphmoe.ops import dropout

    class RefGCN(nn.Module):
        def __init__(self, f, d, c):
            super().__init__()
            self.conv1, self.conv2, self.clsif = GCNConv(f, d), GCNConv(d, d), nn.Linear(d, c)

        def forward(self, x, edge_index):
            # graphmoe's dropout (F.dropout's distribution, drawn from uniform numbers on CPU):
            # the same draws as the simulation's model, so the runs must match exactly
            x = dropout(F.relu(self.conv1(x, edge_index)), training=self.training)
            x = dropout(F.relu(self.conv2(x, edge_index)), training=self.training)
            return self.clsif(x)

    ref_keys = {"convs.0.lin.weight": "conv1.lin.weight", "convs.0.bias": "conv1.bias",
                "convs.1.lin.weight": "conv2.lin.weight", "convs.1.bias": "conv2.bias",
                "classifier.weight": "clsif.weight", "classifier.bias": "clsif.bias"}
    assert len({int(c.train_mask.sum()) for c in cora_clients}) == 1  # uniform == size-weighted
    seed, rounds = 3, 4
    algorithm = build_algorithm("fedavg", **SMALL)
    history = run_simulation(cora_clients, algorithm, rounds=rounds, seed=seed, progress=False,
                             out_dir=tmp_path)

    num_features, num_classes = cora_clients[0].x.size(1), 1 + max(int(c.y.max()) for c in cora_clients)
    seed_all(seed)
    init = algorithm.build_model(num_features, num_classes).state_dict()
    glob = {ref_keys[k]: v.clone() for k, v in init.items()}
    models = [RefGCN(num_features, 16, num_classes) for _ in cora_clients]
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.01, weight_decay=1e-6) for m in models]
    for rnd in range(1, rounds + 1):
        states = []
        for cid, (client, model, opt) in enumerate(zip(cora_clients, models, optimizers)):
            model.load_state_dict(glob)  # the reference's set_state_dict: weights replaced in place
            seed_all(client_seed(seed, rnd, cid))
            model.train()
            opt.zero_grad()
            out = model(client.x, client.edge_index)
            F.cross_entropy(out[client.train_mask], client.y[client.train_mask]).backward()
            opt.step()
            model.eval()
            with torch.no_grad():
                pred = model(client.x, client.edge_index).argmax(-1)
            for split in ("val", "test"):
                mask = client[f"{split}_mask"]
                ours = history.rounds[rnd - 1].clients[cid][f"{split}_acc"]
                assert ours == pytest.approx(float((pred[mask] == client.y[mask]).float().mean()))
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        glob = {k: sum(s[k] for s in states) / len(states) for k in states[0]}

    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    for cid, model in enumerate(models):
        ours = saved["clients"][cid]["model"]
        for key, ref_key in ref_keys.items():
            torch.testing.assert_close(ours[key], model.state_dict()[ref_key], atol=1e-5, rtol=1e-4)
    for key, ref_key in ref_keys.items():
        torch.testing.assert_close(saved["server"]["global"][key], glob[ref_key], atol=1e-5, rtol=1e-4)
