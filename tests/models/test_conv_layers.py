"""graphmoe's conv layers against PyG's with the same weights: outputs and gradients."""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn
from torch_geometric.utils import add_self_loops, remove_self_loops

from graphmoe.models import GATConv, GCNConv, GINConv, SAGEConv
from graphmoe.models.conv import gcn_norm, gcn_propagate
from graphmoe.ops import aggregate, clear_csr_cache

N, F_IN = 12, 8


@pytest.fixture
def graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random directed multigraph with a self-loop, a duplicate edge and an isolated node."""
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, N - 1, (2, 40), generator=gen)
    extra = torch.tensor([[3, 5, 5], [3, 7, 7]])
    edge_index = torch.cat([edge_index, extra], dim=1)
    x = torch.randn(N, F_IN, generator=gen)
    edge_weight = torch.rand(edge_index.size(1), generator=gen) + 0.1
    return x, edge_index, edge_weight


def _grads(module: torch.nn.Module, inputs: list[torch.Tensor], out: torch.Tensor) -> dict:
    gen = torch.Generator().manual_seed(1)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    grads.update({f"input{i}": t.grad for i, t in enumerate(inputs)})
    return grads


def assert_same(ours: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor,
                edge_index: torch.Tensor, edge_weight: torch.Tensor | None = None,
                ref_call=None) -> None:
    """Same outputs and same gradients w.r.t. parameters, ``x`` and ``edge_weight``."""
    ref.load_state_dict(ours.state_dict())
    results = []
    for module, call in ((ours, None), (ref, ref_call)):
        xs = x.clone().requires_grad_()
        ws = None if edge_weight is None else edge_weight.clone().requires_grad_()
        call = call or (lambda m, a, e, w: m(a, e, w) if w is not None else m(a, e))
        out = call(module, xs, edge_index, ws)
        results.append((out, _grads(module, [t for t in (xs, ws) if t is not None], out)))
    (out_a, grads_a), (out_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-5,
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")


@pytest.mark.parametrize("kwargs", [{}, {"improved": True}, {"bias": False},
                                    {"normalize": False}, {"cached": True}])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("out_channels", [5, F_IN + 3])  # linear map first / aggregation first
def test_gcn_conv_matches_pyg(graph, kwargs, weighted, out_channels):
    x, edge_index, edge_weight = graph
    if kwargs.get("improved") and not weighted:
        # PyG >= 2.3 drops ``improved`` when no edge weight is given (it fills the self-loops
        # before creating the all-ones weights); graphmoe applies it, so compare with ones.
        edge_weight, weighted = torch.ones(edge_index.size(1)), True
    torch.manual_seed(0)
    ours = GCNConv(F_IN, out_channels, **kwargs)
    ref = pyg_nn.GCNConv(F_IN, out_channels, **kwargs)
    assert ours.aggregates_first(x) == (out_channels >= F_IN)
    assert_same(ours, ref, x, edge_index, edge_weight if weighted else None)


def test_gcn_conv_aggregates_on_the_narrower_side(graph):
    x, edge_index, _ = graph
    conv = GCNConv(-1, F_IN)  # lazy input size: decided on the input's width
    assert conv.aggregates_first(x)
    assert not conv.aggregates_first(torch.randn(3, F_IN + 1))
    assert not conv.aggregates_first(x.to_sparse_csr())  # sparse features: X Theta is dense
    wide = GCNConv(F_IN, F_IN)
    with torch.no_grad():
        first = wide(x, edge_index)
        norm, loop = gcn_norm(edge_index, None, x.size(0))
        second = gcn_propagate(wide.lin(x), edge_index, norm, loop) + wide.bias
    torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-5)


def test_gcn_conv_improved_without_weights_uses_two_on_the_diagonal(graph):
    x, edge_index, _ = graph
    conv = GCNConv(F_IN, 5, improved=True)
    expected = conv(x, edge_index, torch.ones(edge_index.size(1)))
    torch.testing.assert_close(conv(x, edge_index), expected)


def test_gcn_conv_cached_reuses_normalisation(graph):
    x, edge_index, _ = graph
    conv = GCNConv(F_IN, 5, cached=True)
    first = conv(x, edge_index)
    # A cached layer ignores a new graph (of the same size) until reset, as PyG's does.
    torch.testing.assert_close(conv(x, edge_index.flip(0)), first)
    fresh = GCNConv(F_IN, 5)
    fresh.load_state_dict(conv.state_dict())
    assert not torch.allclose(fresh(x, edge_index.flip(0)), first)
    conv.reset_parameters()
    assert conv._cached is None


def test_gcn_conv_message_matches_propagate(graph):
    """``message``/``propagate`` stay valid: they reproduce the fast path."""
    x, edge_index, edge_weight = graph
    conv = GCNConv(F_IN, 5, normalize=False, bias=False)
    expected = conv(x, edge_index, edge_weight)
    torch.testing.assert_close(conv.propagate(edge_index, x=conv.lin(x), edge_weight=edge_weight),
                               expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("aggr", ["mean", "sum", "max"])
@pytest.mark.parametrize("out_channels", [4, 16])  # projection before / after aggregation
@pytest.mark.parametrize("kwargs", [{}, {"normalize": True}, {"root_weight": False},
                                    {"bias": False}, {"project": True},
                                    {"project": True, "root_weight": False}])
def test_sage_conv_matches_pyg(graph, aggr, out_channels, kwargs):
    x, edge_index, _ = graph
    torch.manual_seed(0)
    ours = SAGEConv(F_IN, out_channels, aggr=aggr, **kwargs)
    ref = pyg_nn.SAGEConv(F_IN, out_channels, aggr=aggr, **kwargs)
    assert_same(ours, ref, x, edge_index)


@pytest.mark.parametrize("aggr", ["mean", "sum", "max"])
@pytest.mark.parametrize("out_channels", [2, 4, 16])  # 2: transform first even without x.grad
def test_sage_conv_first_layer_matches_pyg(graph, aggr, out_channels):
    """Input features without gradient (a first layer): only the parameters get one."""
    x, edge_index, _ = graph
    ours = SAGEConv(F_IN, out_channels, aggr=aggr)
    ref = pyg_nn.SAGEConv(F_IN, out_channels, aggr=aggr)
    ref.load_state_dict(ours.state_dict())
    out_a, out_b = ours(x, edge_index), ref(x, edge_index)
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    grads_a, grads_b = _grads(ours, [], out_a), _grads(ref, [], out_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-5, rtol=1e-5)


def test_sage_conv_lazy_and_no_grad(graph):
    x, edge_index, _ = graph
    lazy = SAGEConv(-1, 4, aggr="sum")
    out = lazy(x, edge_index)  # infers in_channels, then takes the fused path
    assert lazy.lin_l.weight.shape == (4, F_IN)
    torch.testing.assert_close(lazy(x, edge_index), out)
    ref = pyg_nn.SAGEConv(F_IN, 4, aggr="sum")
    ref.load_state_dict(lazy.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(lazy(x, edge_index), ref(x, edge_index), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="lazy initialization with 'project=True'"):
        SAGEConv(-1, 4, project=True)


@pytest.mark.parametrize("aggr", ["mean", "sum", "max"])
@pytest.mark.parametrize("out_channels", [4, 16])
def test_sage_conv_edge_weight_matches_pyg_graph_conv(graph, aggr, out_channels):
    """Weighted SAGE is PyG's GraphConv: ``W1 x_i + W2 aggr_j e_ji x_j``."""
    x, edge_index, edge_weight = graph
    ours = SAGEConv(F_IN, out_channels, aggr=aggr)
    ref = pyg_nn.GraphConv(F_IN, out_channels, aggr=aggr)
    state = {k.replace("lin_l", "lin_rel").replace("lin_r.", "lin_root."): v
             for k, v in ours.state_dict().items()}
    ref.load_state_dict(state)
    out = ours(x, edge_index, edge_weight)
    torch.testing.assert_close(out, ref(x, edge_index, edge_weight), atol=1e-5, rtol=1e-5)


def test_sage_conv_message_matches_propagate(graph):
    x, edge_index, edge_weight = graph
    conv = SAGEConv(F_IN, 4, aggr="mean")
    torch.testing.assert_close(conv.propagate(edge_index, x=x, edge_weight=edge_weight),
                               aggregate(x, edge_index, edge_weight, "mean", N))


@pytest.mark.parametrize("kwargs", [{"heads": 1}, {"heads": 3}, {"heads": 3, "concat": False},
                                    {"heads": 2, "add_self_loops": False},
                                    {"heads": 2, "negative_slope": 0.5, "bias": False}])
def test_gat_conv_matches_pyg(graph, kwargs):
    x, edge_index, _ = graph
    torch.manual_seed(0)
    ours = GATConv(F_IN, 4, **kwargs)
    ref = pyg_nn.GATConv(F_IN, 4, **kwargs)
    assert_same(ours, ref, x, edge_index)


def _weighted_gat_reference(conv, x, edge_index, edge_weight, edge_weight_ref=None):
    """PyG's attention, rescaled by the edge weights (self-loops weigh 1), summed by hand."""
    _, (loop_index, alpha) = conv(x, edge_index, return_attention_weights=True)
    is_edge = edge_index[0] != edge_index[1]
    weights = torch.cat([edge_weight[is_edge], torch.ones(N)])
    assert torch.equal(loop_index, add_self_loops(remove_self_loops(edge_index)[0],
                                                  num_nodes=N)[0])
    xp = conv.lin(x).view(N, conv.heads, conv.out_channels)
    msg = (alpha * weights.unsqueeze(-1)).unsqueeze(-1) * xp[loop_index[0]]
    out = torch.zeros_like(xp).index_add(0, loop_index[1], msg)
    return out.reshape(N, -1) + conv.bias


def test_gat_conv_edge_weight_rescales_attention(graph):
    x, edge_index, edge_weight = graph
    torch.manual_seed(0)
    ours = GATConv(F_IN, 4, heads=2)
    ref = pyg_nn.GATConv(F_IN, 4, heads=2)
    assert_same(ours, ref, x, edge_index, edge_weight,
                ref_call=lambda m, a, e, w: _weighted_gat_reference(m, a, e, w))


def test_gat_conv_attention_dropout_only_in_training(graph):
    x, edge_index, _ = graph
    conv = GATConv(F_IN, 4, heads=2, dropout=0.5)
    conv.eval()
    torch.testing.assert_close(conv(x, edge_index), conv(x, edge_index))
    conv.train()
    torch.manual_seed(0)
    a = conv(x, edge_index)
    torch.manual_seed(1)
    assert not torch.allclose(a, conv(x, edge_index))


@pytest.mark.parametrize("kwargs", [{}, {"eps": 0.3}, {"eps": -0.2, "train_eps": True}])
def test_gin_conv_matches_pyg(graph, kwargs):
    x, edge_index, _ = graph
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(F_IN, 6), torch.nn.ReLU(), torch.nn.Linear(6, 6))
    ours = GINConv(mlp, **kwargs)
    ref = pyg_nn.GINConv(torch.nn.Sequential(torch.nn.Linear(F_IN, 6), torch.nn.ReLU(),
                                             torch.nn.Linear(6, 6)), **kwargs)
    assert_same(ours, ref, x, edge_index)


def test_gin_conv_edge_weight_matches_dense(graph):
    x, edge_index, edge_weight = graph
    conv = GINConv(torch.nn.Linear(F_IN, 3), eps=0.25)
    dense = torch.zeros(N, N).index_put((edge_index[1], edge_index[0]), edge_weight,
                                        accumulate=True)
    expected = conv.nn(1.25 * x + dense @ x)
    torch.testing.assert_close(conv(x, edge_index, edge_weight), expected, atol=1e-5, rtol=1e-5)


def test_conv_reprs():
    assert repr(GCNConv(16, 32)) == "GCNConv(16, 32)"
    assert repr(SAGEConv(16, 32, aggr="max")) == "SAGEConv(16, 32, aggr=max)"
    assert repr(GATConv(16, 32, heads=4)) == "GATConv(16, 32, heads=4)"
    assert repr(GINConv(torch.nn.Linear(4, 4))).startswith("GINConv(nn=Linear(")


@pytest.mark.parametrize("make", [lambda: GCNConv(F_IN, 4), lambda: SAGEConv(F_IN, 4),
                                  lambda: GATConv(F_IN, 4, heads=2),
                                  lambda: GINConv(torch.nn.Linear(F_IN, 4))])
def test_conv_reset_parameters_changes_weights(make):
    conv = make()
    before = [p.detach().clone() for p in conv.parameters() if p.dim() > 1]
    conv.reset_parameters()
    after = [p.detach() for p in conv.parameters() if p.dim() > 1]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def test_convs_backward_through_ops_aggregate(graph, monkeypatch):
    """Every layer routes its aggregation through ``graphmoe.ops.aggregate`` (or, for SAGE,
    ``aggregate_linear``)."""
    import graphmoe.models.conv.gat_conv as gat_mod
    import graphmoe.models.conv.gcn_conv as gcn_mod
    import graphmoe.models.conv.gin_conv as gin_mod
    import graphmoe.models.conv.sage_conv as sage_mod

    calls = []

    def spying(fn):
        def spy(*args, **kwargs):
            calls.append(1)
            return fn(*args, **kwargs)
        return spy

    for mod in (gat_mod, gcn_mod, gin_mod, sage_mod):
        monkeypatch.setattr(mod, "aggregate", spying(aggregate))
    # SAGE fuses its linear maps into the aggregation (graphmoe.ops.aggregate_linear):
    monkeypatch.setattr(sage_mod, "aggregate_linear", spying(sage_mod.aggregate_linear))
    x, edge_index, _ = graph
    for conv in (GCNConv(F_IN, 4), SAGEConv(F_IN, 4), GATConv(F_IN, 4),
                 GINConv(torch.nn.Linear(F_IN, 4))):
        calls.clear()
        conv(x, edge_index)
        assert calls, f"{conv} did not call graphmoe.ops.aggregate"


def test_gcn_conv_normalisation_is_computed_once_per_graph(graph, monkeypatch):
    from graphmoe.models.conv import gcn_conv

    x, edge_index, _ = graph
    calls = []
    original = gcn_conv.gcn_norm
    monkeypatch.setattr(gcn_conv, "gcn_norm", lambda *a, **k: calls.append(1) or original(*a, **k))
    clear_csr_cache()  # the graph fixture's normalisation may be cached by earlier tests
    conv = GCNConv(F_IN, 5)
    first = conv(x, edge_index)
    torch.testing.assert_close(conv(x, edge_index), first)
    assert len(calls) == 1
    conv(x, edge_index, torch.rand(edge_index.size(1)))  # weighted: computed at every call
    assert len(calls) == 2


def test_gcn_conv_trains_after_a_first_call_in_inference_mode(graph):
    x, edge_index, _ = graph
    clear_csr_cache()
    conv = GCNConv(F_IN, 5)
    with torch.inference_mode():
        expected = conv(x, edge_index)
    out = conv(x, edge_index)  # the normalisation cached inside inference mode is recomputed
    out.sum().backward()
    torch.testing.assert_close(out.detach(), expected)
    assert conv.lin.weight.grad is not None
