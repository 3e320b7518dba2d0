"""GMoEConv / GMoE: sparse hop-wise experts against a dense reference, aux loss, errors."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graphmoe.models import GMoE, GMoEConv, build_model
from graphmoe.moe import MoEAux, TopKRouter

N, F_IN, F_OUT = 23, 6, 5


def make_graph(n: int = N, num_edges: int = 70, seed: int = 0, weighted: bool = False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, F_IN, generator=gen, dtype=torch.float64)
    edge_index = torch.randint(0, n, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]  # self-loops are added by GCN
    weight = torch.rand(edge_index.size(1), generator=gen, dtype=torch.float64) + 0.5 \
        if weighted else None
    return x, edge_index, weight


def dense_propagation(edge_index, edge_weight, n):
    r"""``D^-1/2 (A + I) D^-1/2`` as a dense matrix, row = target, built from scratch."""
    adj = torch.zeros(n, n, dtype=torch.float64)
    weight = torch.ones(edge_index.size(1), dtype=torch.float64) if edge_weight is None \
        else edge_weight
    adj.index_put_((edge_index[1], edge_index[0]), weight, accumulate=True)
    adj = adj + torch.eye(n, dtype=torch.float64)
    dinv = adj.sum(1).pow(-0.5)
    return dinv[:, None] * adj * dinv[None, :]


def dense_reference(conv: GMoEConv, x, edge_index, edge_weight, gates):
    """Every expert on every node, masked by the routing's gate matrix ``[N, E]``."""
    a_hat = dense_propagation(edge_index, edge_weight, x.size(0))
    hop_x = [torch.linalg.matrix_power(a_hat, h) @ x for h in conv.hops]
    experts = [hop for hop, count in zip(hop_x, conv.experts_per_hop) for _ in range(count)]
    out = sum(gates[:, e:e + 1] * (h @ conv.weight[e] + conv.bias[e])
              for e, h in enumerate(experts))
    for s, lin in enumerate(conv.shared):
        out = out + hop_x[s % len(conv.hops)] @ lin.weight.t() + lin.bias
    return out


CASES = {
    "noisy_topk train": dict(num_experts=8, k=2),
    "noisy_topk eval": dict(num_experts=8, k=2, eval=True),
    "hops 0-1-2 uneven": dict(num_experts=(3, 1, 2), k=3, hops=(0, 1, 2), router="topk"),
    "shared experts": dict(num_experts=4, k=1, num_shared_experts=3),
    "top_p (ragged)": dict(num_experts=6, k=4, router="top_p", router_kwargs={"p": 0.5}),
    "switch, capacity drops": dict(num_experts=4, k=1, router="switch",
                                   router_kwargs={"capacity_factor": 0.5}),
    "expert choice": dict(num_experts=4, k=2, router="expert_choice"),
    "one hop, weighted": dict(num_experts=3, k=2, hops=(2,), weighted=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sparse_dispatch_equals_dense_reference_with_gradients(case):
    opts = dict(CASES[case])
    evaluate, weighted = opts.pop("eval", False), opts.pop("weighted", False)
    torch.manual_seed(0)
    x, edge_index, edge_weight = make_graph(weighted=weighted)
    conv = GMoEConv(F_IN, F_OUT, **opts).double()
    torch.nn.init.normal_(conv.router.gate.weight)  # GMoE starts it at zero: make routing vary
    torch.nn.init.normal_(conv.bias)
    conv.train(not evaluate)
    x.requires_grad_(True)
    out, aux = conv(x, edge_index, edge_weight)
    assert isinstance(aux, MoEAux)
    ref = dense_reference(conv, x, edge_index, edge_weight, aux.routing.dense_weight())
    torch.testing.assert_close(out, ref)
    # GMoEConv's own dense path (the reference code's "all experts on all nodes").
    torch.testing.assert_close(conv.dense_forward(x, edge_index, edge_weight, aux.routing), ref)
    params = [x, conv.weight, conv.bias, conv.router.gate.weight,
              *[p for lin in conv.shared for p in lin.parameters()]]
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, params, grad, retain_graph=True)
    want = torch.autograd.grad(ref, params, grad)
    for name, g, w in zip(["x", "weight", "bias", "gate", "shared"], got, want):
        torch.testing.assert_close(g, w, msg=lambda m, name=name: f"grad {name}: {m}")
    if case == "switch, capacity drops":
        assert aux.stats.dropped_fraction > 0  # dropped nodes get no routed expert


def test_only_selected_pairs_are_transformed(monkeypatch):
    import graphmoe.models.gmoe as gmoe

    rows_seen = []
    real = gmoe.grouped_linear

    def spy(rows, weight, bias, plan):
        rows_seen.append(rows.size(0))
        return real(rows, weight, bias, plan)

    monkeypatch.setattr(gmoe, "grouped_linear", spy)
    x, edge_index, _ = make_graph()
    conv = GMoEConv(F_IN, F_OUT, num_experts=8, k=2, backend="torch").double()
    conv(x, edge_index)
    assert rows_seen == [N * 2]  # N k pairs, not N E


def test_aux_loss_is_returned_and_trains_the_router():
    x, edge_index, _ = make_graph()
    conv = GMoEConv(F_IN, F_OUT, num_experts=4, k=2, balance_loss_weight=0.5).double()
    assert conv.balance_loss == "cv"
    out, aux = conv(x, edge_index)
    assert aux.loss.dim() == 0 and set(aux.losses) == {"balance"}
    assert aux.loss.item() == pytest.approx(0.5 * aux.losses["balance"].item())
    assert int(aux.stats.load.sum()) == N * 2
    gate, noise = torch.autograd.grad(aux.loss, [conv.router.gate.weight,
                                                 conv.router.noise.weight])
    assert gate.abs().sum() > 0 and noise.abs().sum() > 0
    conv.eval()
    _, aux = conv(x, edge_index)
    assert aux.loss.dim() == 0  # also returned in eval mode (counts instead of smooth load)
    z = GMoEConv(F_IN, F_OUT, num_experts=4, router="topk", z_loss_weight=1e-3,
                 num_shared_experts=1).double()
    assert z.balance_loss == "expert_balance"
    assert set(z(x, edge_index)[1].losses) == {"balance", "z"}


def test_reset_parameters_and_gmoe_initialisation():
    conv = GMoEConv(F_IN, F_OUT, num_experts=4, num_shared_experts=1)
    assert conv.router.gate.weight.abs().sum() == 0  # GMoE: zero-initialised noisy gate
    assert conv.bias.abs().sum() == 0
    before = conv.weight.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.weight)
    assert conv.hop_of_expert.tolist() == [0, 0, 1, 1]
    topk = GMoEConv(F_IN, F_OUT, num_experts=4, router="topk")
    assert topk.router.gate.weight.abs().sum() > 0


def test_cached_normalisation_and_hop_zero():
    x, edge_index, _ = make_graph()
    conv = GMoEConv(F_IN, F_OUT, num_experts=2, hops=(0, 1), cached=True).double()
    hop0, hop1 = conv.propagate_hops(x, edge_index)
    assert hop0 is x
    torch.testing.assert_close(hop1, dense_propagation(edge_index, None, N) @ x)
    assert conv._cached is not None
    conv.reset_parameters()
    assert conv._cached is None


def test_reprs():
    assert repr(GMoEConv(64, 64, num_experts=8, k=2)) == "GMoEConv(64, 64, num_experts=8, k=2)"
    assert repr(GMoEConv(16, 8, num_experts=(6, 2), k=1, router="switch",
                         num_shared_experts=1)) == (
        "GMoEConv(16, 8, num_experts=8, k=1, experts_per_hop=(6, 2), router='switch', "
        "num_shared_experts=1)")
    assert repr(GMoEConv(16, 8, num_experts=3, k=1, hops=(0, 1, 2))) == \
        "GMoEConv(16, 8, num_experts=3, k=1, hops=(0, 1, 2))"
    assert repr(GMoE(16, 32, 2, out_channels=7, num_experts=4, k=1)) == \
        "GMoE(16, 7, num_layers=2, num_experts=4, k=1)"


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_experts=4, k=5), r"'k' must be at most num_experts=4 \(got 5\)"),
    (dict(num_experts=5), r"'num_experts'=5 must be divisible by the number of hops 2"),
    (dict(num_experts=(2, 2, 2)), r"one count per hop \(2 for hops=\(1, 2\)\)"),
    (dict(hops=(1, 1)), "must not repeat"),
    (dict(hops=()), "non-empty sequence"),
    (dict(hops=(-1, 2)), "non-negative ints"),
    (dict(router="gumbel"), r"'router' must be one of"),
    (dict(num_experts=4, router="switch"), r"router='switch'.*k=1"),
    (dict(router=TopKRouter(F_IN, 3)), r"'router' must map 6 channels to 8 experts"),
    (dict(balance_loss="l2"), "'balance_loss' must be"),
    (dict(num_shared_experts=-1), "'num_shared_experts'"),
    (dict(router="top_p", router_kwargs={"p": 1.5}), r"'p' must lie in \(0, 1\]"),
    (dict(router="topk", router_kwargs={"capacity_factor": 0.0}), "'capacity_factor'"),
])
def test_bad_arguments_are_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GMoEConv(F_IN, F_OUT, **kwargs)


def test_unknown_argument_names_the_known_ones():
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['num_expert'\].*'num_experts'"):
        GMoEConv(F_IN, F_OUT, num_expert=4)
    with pytest.raises(TypeError, match="'num_expert'"):
        build_model("gmoe", in_channels=F_IN, hidden_channels=8, num_layers=2, num_expert=4)
    from graphmoe.models.gmoe import _GMOE_ARGS

    params = set(inspect.signature(GMoEConv.__init__).parameters)
    assert params - {"self", "in_channels", "out_channels", "kwargs"} == _GMOE_ARGS


def test_bad_inputs_are_clear_errors():
    x, edge_index, _ = make_graph()
    conv = GMoEConv(F_IN, F_OUT, num_experts=4).double()
    with pytest.raises(ValueError, match=r"'x' must have shape \[num_nodes, 6\]"):
        conv(x[:, :4], edge_index)
    with pytest.raises(ValueError, match="NaN"):
        conv(torch.full_like(x, float("nan")), edge_index)
    with pytest.raises(ValueError, match=r"node indices in \[0, 99\]"):
        conv(x, torch.tensor([[0, 99], [1, 2]]))
    with pytest.raises(ValueError, match="empty"):
        conv(x[:0], edge_index[:, :0])
    model = GMoE(F_IN, 8, 2, num_experts=4)
    with pytest.raises(ValueError, match="in_channels=6 but x has 5 features"):
        model(x[:, :5].float(), edge_index)


def test_zero_edges_and_one_node():
    conv = GMoEConv(F_IN, F_OUT, num_experts=4, k=2)
    out, aux = conv(torch.randn(1, F_IN), torch.empty(2, 0, dtype=torch.long))
    assert out.shape == (1, F_OUT) and torch.isfinite(out).all()
    assert int(aux.stats.load.sum()) == 2


def test_gmoe_model_exposes_aux_loss_and_routing_metrics():
    torch.manual_seed(0)
    x, edge_index, _ = make_graph()
    x = x.float()
    model = build_model("gmoe", in_channels=F_IN, hidden_channels=8, num_layers=3,
                        out_channels=3, num_experts=4, k=2, num_shared_experts=1,
                        norm="layer_norm", residual=True, jk="cat", balance_loss_weight=0.1)
    assert isinstance(model, GMoE) and model.aux_loss is None
    out = model(x, edge_index)
    assert out.shape == (N, 3)
    assert len(model.aux) == 3
    expected = torch.stack([aux.loss for aux in model.aux]).mean()
    assert torch.equal(model.aux_loss, expected) and model.aux_loss.requires_grad
    metrics = model.aux_metrics()
    assert {"moe/0/load/0", "moe/2/load/3", "moe/1/hop1", "moe/1/hop2", "moe/0/load_balance",
            "moe/0/router_entropy", "moe/0/balance_loss"} <= set(metrics)
    loads = torch.stack([metrics[f"moe/0/load/{e}"] for e in range(4)])
    assert loads.sum().item() == pytest.approx(1.0)
    hops = metrics["moe/0/hop1"] + metrics["moe/0/hop2"]
    assert hops.item() == pytest.approx(1.0)
    (out.sum() + model.aux_loss).backward()
    assert all(conv.router.gate.weight.grad is not None for conv in model.convs)
    model.reset_parameters()


HAS_TRITON = __import__("importlib").util.find_spec("triton") is not None
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.skipif(not HAS_TRITON or INTERPRETED, reason="needs triton (runs a subprocess)")
def test_triton_backend_matches_torch_in_the_interpreter():
    """The Triton path (``scatter_linear`` on pre-gathered hop rows) against the PyTorch one,
    on CPU in Triton's interpreter (``TRITON_INTERPRET=1`` must be set before import)."""
    script = r"""
import torch
from graphmoe.ops.triton import scatter_mm
from graphmoe.models import GMoEConv
scatter_mm.BLOCK_SIZES = (16, 16, 16)
torch.manual_seed(0)
x = torch.randn(37, 13, requires_grad=True)
edge_index = torch.randint(0, 37, (2, 120))
conv = GMoEConv(13, 7, num_experts=(3, 2), k=2, router="top_p", router_kwargs={"p": 0.6})
torch.nn.init.normal_(conv.router.gate.weight)
conv.eval()
out_t, aux = conv(x, edge_index)
conv.backend = "triton"
out_tr, _ = conv(x, edge_index)
torch.testing.assert_close(out_tr, out_t, rtol=1e-4, atol=1e-4)
params = [x, conv.weight, conv.bias, conv.router.gate.weight]
g = torch.randn_like(out_t)
for a, b in zip(torch.autograd.grad(out_tr, params, g), torch.autograd.grad(out_t, params, g)):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
