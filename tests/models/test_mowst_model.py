"""Mowst, the model: dispersion, gate, losses, inference rules, conditional computation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from graphmoe.models import build_model
from graphmoe.models.mowst import (
    Mowst,
    dispersion,
    entropy_dispersion,
    mixture_log_probs,
    mowst_loss,
    mowst_star_loss,
    receptive_field_hops,
    route,
    variance_dispersion,
)
from graphmoe.models.mowst_conditional import needs_source_degree, receptive_field, strong_on_nodes
from graphmoe.models.mowst_crossfit import CrossFitExperts, make_folds

N, F_IN, C = 120, 12, 4


@pytest.fixture(scope="module")
def graph():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, F_IN, generator=gen)
    src = torch.randint(0, N, (500,), generator=gen)
    dst = torch.randint(0, N, (500,), generator=gen)
    src, dst = src[src != dst], dst[src != dst]
    # a few self-loops (one per node: with several weighted loops on a node, which weight GCN
    # keeps is arbitrary even on the full graph) and duplicate edges, as real data has
    loops = torch.arange(0, N, 7)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([loops, loops]),
                            torch.stack([src[:20], dst[:20]])], dim=1)
    return x, edge_index


def make(strong="gcn", **kwargs):
    torch.manual_seed(0)
    weak = build_model("mlp", in_channels=F_IN, hidden_channels=16, num_layers=2, out_channels=C)
    skw = dict(in_channels=F_IN, hidden_channels=16, out_channels=C)
    if strong != "dagnn":
        skw["num_layers"] = 2
    skw.update(kwargs.pop("strong_kwargs", {}))
    return Mowst(weak, build_model(strong, **skw), **kwargs)


# -- dispersion ---------------------------------------------------------------------------


def test_dispersion_is_zero_for_uniform_and_one_for_one_hot():
    uniform = torch.zeros(3, C)
    one_hot = torch.full((3, C), -1e4)
    one_hot[:, 1] = 1e4
    for fn in (variance_dispersion, entropy_dispersion):
        assert torch.allclose(fn(uniform), torch.zeros(3), atol=1e-6)
        assert torch.allclose(fn(one_hot), torch.ones(3), atol=1e-6)
    z = torch.randn(50, C)
    p = z.softmax(-1)
    one = torch.zeros(C)
    one[0] = 1
    expected_var = p.var(-1, unbiased=False) / one.var(unbiased=False)
    assert torch.allclose(variance_dispersion(z), expected_var, atol=1e-6)
    expected_ent = 1 - torch.distributions.Categorical(probs=p).entropy() / math.log(C)
    assert torch.allclose(entropy_dispersion(z), expected_ent, atol=1e-6)
    both = dispersion(z, "both")
    assert both.shape == (50, 2) and bool(((both >= -1e-6) & (both <= 1 + 1e-6)).all())


def test_gate_starts_at_one_half_and_takes_features():
    model = make(dispersion="both", gate_input="dispersion+x")
    assert model.gate.in_channels == 2 + F_IN
    x = torch.randn(N, F_IN)
    assert torch.allclose(model.confidence(torch.randn(N, C), x), torch.full((N,), 0.5))
    assert "ConfidenceGate(14" in repr(model.gate)


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_is_a_clear_value_error(graph):
    x, edge_index = graph
    weak = build_model("mlp", in_channels=F_IN, hidden_channels=8, num_layers=2, out_channels=C)
    strong = build_model("gcn", in_channels=F_IN, hidden_channels=8, num_layers=2,
                         out_channels=C + 1)
    with pytest.raises(ValueError, match=r"weak\.out_channels=4.*strong\.out_channels=5"):
        Mowst(weak, strong)
    with pytest.raises(ValueError, match="dispersion"):
        make(dispersion="varience")
    with pytest.raises(ValueError, match="gate_input"):
        make(gate_input="x")
    model = make()
    with pytest.raises(ValueError, match="node features"):
        model(None, edge_index)
    with pytest.raises(ValueError, match="node features"):
        model.predict(torch.empty(N, 0), edge_index)
    with pytest.raises(ValueError, match="rule"):
        model.predict(x, edge_index, rule="majority")

    class Untyped(torch.nn.Module):  # no out_channels attribute: caught at forward
        def __init__(self, c):
            super().__init__()
            self.lin = torch.nn.Linear(F_IN, c)

        def forward(self, x, edge_index=None, edge_weight=None):
            return self.lin(x)

    with pytest.raises(ValueError, match="weak and strong"):
        Mowst(Untyped(C), Untyped(C + 1))(x, edge_index)


# -- losses ---------------------------------------------------------------------------------


def test_mowst_loss_and_its_gradient_wrt_the_confidence():
    zw, zs = torch.randn(30, C), torch.randn(30, C)
    y = torch.randint(0, C, (30,))
    conf = torch.rand(30, requires_grad=True)
    loss = mowst_loss(zw, zs, conf, y, reduction="sum")
    ce_w = F.cross_entropy(zw, y, reduction="none")
    ce_s = F.cross_entropy(zs, y, reduction="none")
    assert torch.allclose(loss, (conf * ce_w + (1 - conf) * ce_s).sum())
    loss.backward()
    assert torch.allclose(conf.grad, ce_w - ce_s, atol=1e-6)


def test_mowst_star_mixes_probabilities_stably():
    zw, zs = torch.randn(30, C) * 5, torch.randn(30, C) * 5
    g = torch.randn(30) * 3
    y = torch.randint(0, C, (30,))
    c = torch.sigmoid(g).unsqueeze(-1)
    naive = (c * zw.softmax(-1) + (1 - c) * zs.softmax(-1)).log()
    assert torch.allclose(mixture_log_probs(zw, zs, g), naive, atol=1e-5)
    assert torch.allclose(mowst_star_loss(zw, zs, g, y), F.nll_loss(naive, y), atol=1e-5)
    extreme = mixture_log_probs(zw * 100, zs * 100, torch.full((30,), 80.0))
    assert bool(torch.isfinite(extreme).all())


# -- inference rules --------------------------------------------------------------------------


def test_routing_rules():
    conf = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0])
    assert route(conf, "threshold", 0.5).tolist() == [[False, False, True, True, True]]
    assert route(conf, "soft") is None
    draws = route(conf, "random", num_draws=20000, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (20000, 5)
    assert torch.allclose(draws.float().mean(0), conf, atol=0.02)
    with pytest.raises(ValueError, match="threshold"):
        route(conf, "threshold", 1.5)


def test_predict_rules_are_consistent(graph):
    x, edge_index = graph
    model = make().eval()
    out = model(x, edge_index)
    soft = model.predict(x, edge_index, rule="soft")
    c = out.confidence.unsqueeze(-1)
    assert torch.allclose(soft.probs, c * out.weak.softmax(-1) + (1 - c) * out.strong.softmax(-1),
                          atol=1e-6)
    thr = model.predict(x, edge_index, rule="threshold", threshold=0.5)
    pick = (out.confidence >= 0.5).unsqueeze(-1)
    assert torch.allclose(thr.probs, torch.where(pick, out.weak.softmax(-1),
                                                 out.strong.softmax(-1)))
    rnd = model.predict(x, edge_index, rule="random", num_draws=5,
                        generator=torch.Generator().manual_seed(1))
    assert rnd.weak_mask.shape == (5, N) and rnd.draw_probs().shape == (5, N, C)
    assert torch.allclose(rnd.draw_probs().mean(0), rnd.probs)
    assert torch.allclose(rnd.probs.sum(-1), torch.ones(N))


# -- conditional computation ------------------------------------------------------------------


BACKBONES = [
    ("gcn", {}),
    ("gcn", {"num_layers": 3, "norm": "batch_norm", "residual": True, "jk": "cat"}),
    ("gcn", {"cached": True}),
    ("sage", {}),
    ("sage", {"aggr": "max"}),
    ("gat", {"heads": 2}),
    ("gin", {}),
    ("dagnn", {"K": 3}),
]


@pytest.mark.parametrize("strong,kwargs", BACKBONES)
def test_conditional_inference_equals_full_graph(graph, strong, kwargs):
    x, edge_index = graph
    model = make(strong, strong_kwargs=kwargs, gate_layers=1).eval()
    with torch.no_grad():  # C = sigmoid(50 (d - median d)): the rules route both ways
        d = model(x, edge_index).dispersion
        model.gate.lins[0].weight.fill_(50.0)
        model.gate.lins[0].bias.fill_(-50.0 * float(d.median()))
    model.strong(x, edge_index)  # fills a cached=True normalisation with the full graph
    with torch.no_grad():
        conf = model(x, edge_index).confidence
    for q in (0.2, 0.5, 0.95):
        kw = dict(rule="threshold", threshold=float(conf.quantile(q)))
        full = model.predict(x, edge_index, **kw)
        cond = model.predict(x, edge_index, conditional=True, max_fraction=1.0, **kw)
        assert cond.stats["full_graph"] == 0.0
        assert torch.equal(full.probs.argmax(-1), cond.probs.argmax(-1))
        assert torch.allclose(full.probs, cond.probs, atol=1e-5)
        need = ~cond.weak_mask[0]
        assert torch.allclose(cond.strong_probs[need], full.strong_probs[need], atol=1e-5)
        assert bool(cond.strong_probs[~need].isnan().all())
        assert 0.0 < cond.stats["node_fraction"] <= 1.0
    gen = dict(rule="random", num_draws=3)
    full = model.predict(x, edge_index, generator=torch.Generator().manual_seed(2), **gen)
    cond = model.predict(x, edge_index, generator=torch.Generator().manual_seed(2),
                         conditional=True, max_fraction=1.0, **gen)
    assert torch.allclose(full.probs, cond.probs, atol=1e-5)
    # a receptive field as large as the graph: the whole graph is used, same predictions
    wide = model.predict(x, edge_index, generator=torch.Generator().manual_seed(2),
                         conditional=True, max_fraction=0.0, **gen)
    assert wide.stats["full_graph"] == 1.0 and torch.allclose(full.probs, wide.probs, atol=1e-6)
    # cached normalisation of the full graph is intact afterwards
    assert torch.allclose(model.strong(x, edge_index), model.strong(x, edge_index))


def test_conditional_inference_with_edge_weights_and_few_nodes(graph):
    x, edge_index = graph
    weight = torch.rand(edge_index.size(1)) + 0.1
    for strong in ("gcn", "dagnn", "sage"):
        kwargs = {"K": 2} if strong == "dagnn" else {}
        model = make(strong, strong_kwargs=kwargs).eval()
        full = model.strong(x, edge_index, weight)
        nodes = torch.zeros(N, dtype=torch.bool)
        nodes[[3, 50]] = True
        rows, stats = strong_on_nodes(model.strong, x, edge_index, weight, nodes, model.num_hops,
                                      max_fraction=1.0)
        assert torch.allclose(rows, full[nodes], atol=1e-5)
        assert stats["node_fraction"] < 0.5 and stats["edge_fraction"] < 0.5


def test_degree_compensation_is_what_makes_gcn_exact(graph):
    x, edge_index = graph
    model = make("gcn").eval()
    assert needs_source_degree(model.strong) and not needs_source_degree(make("sage").strong)
    nodes = torch.zeros(N, dtype=torch.bool)
    nodes[:10] = True
    dist = receptive_field(edge_index, nodes, 2, N)
    keep = dist >= 0
    inner = (dist[edge_index[1]] >= 0) & (dist[edge_index[1]] < 2)
    new_id = torch.cumsum(keep, 0) - 1
    naive = model.strong(x[keep], new_id[edge_index[:, inner]])[new_id[nodes]]
    full = model.strong(x, edge_index)[nodes]
    assert not torch.allclose(naive, full, atol=1e-4)  # boundary degrees are wrong without it
    rows, _ = strong_on_nodes(model.strong, x, edge_index, None, nodes, 2, max_fraction=1.0)
    assert torch.allclose(rows, full, atol=1e-5)


def test_conditional_inference_refusals(graph):
    x, edge_index = graph
    model = make()
    with pytest.raises(ValueError, match="eval mode"):
        model.predict(x, edge_index, rule="threshold", conditional=True)
    with pytest.raises(ValueError, match="hard rule"):
        model.eval().predict(x, edge_index, rule="soft", conditional=True)
    everything_weak = model.eval().predict(x, edge_index, rule="threshold", threshold=0.0,
                                           conditional=True)
    assert everything_weak.stats["node_fraction"] == 0.0


def test_receptive_field_hops_of_the_backbones():
    assert receptive_field_hops(make("gcn").strong) == 2
    assert receptive_field_hops(make("dagnn", strong_kwargs={"K": 4}).strong) == 4
    assert receptive_field_hops(make().weak) == 0
    assert make(num_hops=5).num_hops == 5


# -- cross-fitting --------------------------------------------------------------------------


def test_folds_and_out_of_fold_predictions(graph):
    x, edge_index = graph
    train = torch.zeros(N, dtype=torch.bool)
    train[:53] = True
    fold = make_folds(train, 5, seed=1)
    assert bool((fold[~train] == -1).all())
    sizes = torch.bincount(fold[train], minlength=5)
    assert sizes.sum() == 53 and int(sizes.max() - sizes.min()) <= 1
    assert torch.equal(fold, make_folds(train, 5, seed=1))
    with pytest.raises(ValueError, match="num_folds"):
        make_folds(train, 1)
    model = make()
    cf = CrossFitExperts(model.weak, model.strong, fold)
    with torch.no_grad():
        for k, copy_k in enumerate(cf.weak):
            copy_k.convs[-1].bias.fill_(float(k))
    oof = cf.out_of_fold("weak", lambda model: model(x, edge_index))
    for k in range(5):
        rows = fold == k
        expected = cf.weak[k].eval()(x)[rows]
        assert torch.allclose(oof[rows], expected)
    assert bool((cf.fit_mask(2, train) == (train & (fold != 2))).all())
