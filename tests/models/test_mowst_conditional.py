"""Conditional inference of Mowst's strong expert: receptive fields, layer-wise evaluation."""
from __future__ import annotations

import inspect

import pytest
import torch

from graphmoe.models import build_model, mowst_conditional, mowst_layerwise, mowst_receptive
from graphmoe.models.mowst import Mowst
from graphmoe.models.mowst_conditional import (
    expand,
    layerwise_input,
    layerwise_rows,
    receptive_field,
    strong_on_nodes,
    supports_layerwise,
)
from graphmoe.ops import cpu_kernels, to_csr

N, F_IN, C = 150, 12, 4


def make_graph(seed: int = 0, isolated: int = 10):
    """Random directed graph with self-loops, duplicate edges and ``isolated`` nodes (the last
    ones) that have no edge at all."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, F_IN, generator=gen)
    m = N - isolated
    src = torch.randint(0, m, (450,), generator=gen)
    dst = torch.randint(0, m, (450,), generator=gen)
    src, dst = src[src != dst], dst[src != dst]
    loops = torch.arange(0, m, 7)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([loops, loops]),
                            torch.stack([src[:20], dst[:20]])], dim=1)
    return x, edge_index


@pytest.fixture(scope="module")
def graph():
    return make_graph()


def strong(name: str, num_layers: int = 2, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("hidden_channels", 16)
    return build_model(name, in_channels=F_IN, num_layers=num_layers, out_channels=C,
                       **kwargs).eval()


def masks(seed: int = 1):
    """Routed sets: random shares, a single node, isolated nodes only, everything."""
    gen = torch.Generator().manual_seed(seed)
    out = [torch.rand(N, generator=gen) < share for share in (0.1, 0.3, 0.5, 0.7)]
    one = torch.zeros(N, dtype=torch.bool)
    one[3] = True
    isolated = torch.zeros(N, dtype=torch.bool)
    isolated[-3:] = True
    mixed = out[1].clone()
    mixed[-5:] = True
    return [*out, one, isolated, mixed, torch.ones(N, dtype=torch.bool)]


def check_rows(model, x, edge_index, weight=None, layerwise=True):
    with torch.no_grad():
        full = model(x, edge_index, weight)
        for nodes in masks():
            rows, stats = strong_on_nodes(model, x, edge_index, weight, nodes,
                                          model.num_layers, max_fraction=1.0,
                                          layerwise=layerwise)
            assert stats["full_graph"] == 0.0
            assert stats["layerwise"] == float(layerwise)
            assert rows.shape == (int(nodes.sum()), C)
            torch.testing.assert_close(rows, full[nodes], atol=1e-5, rtol=1e-5)


GCN_VARIANTS = [
    {},
    {"improved": True},
    {"add_self_loops": False},
    {"normalize": False},
    {"cached": True},
    {"norm": "batch_norm", "residual": True, "jk": "cat"},
    {"norm": "layer_norm", "jk": "max", "act": "gelu"},
    {"jk": "last", "residual": True},
    {"hidden_channels": 8, "residual": True},  # first layer: project all rows, then gather
]
SAGE_VARIANTS = [
    {},
    {"aggr": "max"},
    {"aggr": "sum", "normalize": True},
    {"root_weight": False, "hidden_channels": 8},  # projection first in the first layer
    {"residual": True, "norm": "layer_norm", "jk": "cat"},
    {"project": True},
]


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kwargs", GCN_VARIANTS)
def test_layerwise_gcn_equals_full_graph(graph, num_layers, kwargs):
    model = strong("gcn", num_layers, **kwargs)
    assert supports_layerwise(model, num_layers)
    model(*graph)  # a cached=True layer holds the full graph's normalisation: not used, kept
    check_rows(model, *graph)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kwargs", SAGE_VARIANTS)
def test_layerwise_sage_equals_full_graph(graph, num_layers, kwargs):
    model = strong("sage", num_layers, **kwargs)
    assert supports_layerwise(model, num_layers)
    check_rows(model, *graph)


@pytest.mark.parametrize("name,kwargs", [("gcn", {}), ("gcn", {"add_self_loops": False}),
                                         ("gcn", {"normalize": False}), ("sage", {}),
                                         ("sage", {"aggr": "max"})])
def test_layerwise_with_edge_weights(graph, name, kwargs):
    x, edge_index = graph
    weight = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(3)) + 0.1
    check_rows(strong(name, 2, **kwargs), x, edge_index, weight)


@pytest.mark.parametrize("name,kwargs", [("gcn", {}), *(("sage", kw) for kw in SAGE_VARIANTS)])
def test_layerwise_without_the_compiled_kernels(graph, name, kwargs, monkeypatch):
    """Where the compiled row-subset kernels are missing, the gathered sub-CSR path is used."""
    monkeypatch.setattr(cpu_kernels, "spmm_sum_rows", lambda *args: None)
    monkeypatch.setattr(cpu_kernels, "mark_columns", lambda *args: None)
    monkeypatch.setattr(cpu_kernels, "frontier_levels", lambda *args: None)
    check_rows(strong(name, 2, **kwargs), *graph)


def test_subgraph_path_still_exact(graph):
    for name in ("gcn", "sage"):
        check_rows(strong(name, 2), *graph, layerwise=False)


def test_no_edges_at_all():
    x = torch.randn(N, F_IN)
    edge_index = torch.empty(2, 0, dtype=torch.long)
    for name in ("gcn", "sage"):
        check_rows(strong(name, 2), x, edge_index)


def test_zero_routed_nodes(graph):
    x, edge_index = graph
    rows, stats = strong_on_nodes(strong("gcn"), x, edge_index, None,
                                  torch.zeros(N, dtype=torch.bool), 2)
    assert rows.shape == (0, C) and stats["node_fraction"] == 0.0 and stats["full_graph"] == 0.0


def test_other_backbones_use_the_subgraph(graph):
    x, edge_index = graph
    nodes = masks()[0]
    for model in (strong("gat", heads=2), strong("gin")):
        assert not supports_layerwise(model, 2)
        with torch.no_grad():
            rows, stats = strong_on_nodes(model, x, edge_index, None, nodes, 2, max_fraction=1.0)
            torch.testing.assert_close(rows, model(x, edge_index)[nodes], atol=1e-5, rtol=1e-5)
        assert stats["layerwise"] == 0.0
    assert not supports_layerwise(strong("gcn", 2), 3)  # hops other than the layers: subgraph


def test_field_matches_dense_reachability(graph):
    x, edge_index = graph
    csr = to_csr(edge_index, N)
    adj = torch.zeros(N, N, dtype=torch.bool)
    adj[edge_index[1], edge_index[0]] = True  # row = target: its sources are upstream
    for nodes in masks():
        reach, expected = nodes.clone(), torch.where(nodes, 0, -1)
        for hop in range(1, 4):
            reach = reach | (adj[reach].any(0))
            expected[(expected < 0) & reach] = hop
        field = expand(csr, nodes, 3)
        assert torch.equal(field.distance(N), expected)
        assert torch.equal(receptive_field(edge_index, nodes, 3, N), expected)
        # sorted by distance then id; in_edges counts the in-edges of V_0, V_1, V_2
        dist = expected[field.nodes]
        assert bool((dist.diff() >= 0).all())
        assert field.sizes == tuple(int(((expected >= 0) & (expected <= k)).sum())
                                    for k in range(4))
        assert field.in_edges == tuple(int(csr.deg[field.nodes[:field.sizes[k]]].sum())
                                       for k in range(3))


def test_compiled_field_equals_hop_by_hop(graph):
    """The compiled expansion (all hops and the position map in one call) gives the field of
    the tensor hop-by-hop path, and stops at the same edge budget."""
    if not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    _, edge_index = graph
    csr = to_csr(edge_index, N)
    for nodes in [*masks(), torch.zeros(N, dtype=torch.bool)]:
        for hops in (0, 1, 3):
            field = expand(csr, nodes, hops)
            reference = mowst_receptive._expand_by_hops(csr, nodes, hops, None)
            assert torch.equal(field.nodes, reference.nodes)
            assert field.sizes == reference.sizes and field.in_edges == reference.in_edges
            assert torch.equal(field.position[field.nodes], torch.arange(field.nodes.numel()))
        budget = expand(csr, nodes, 2).in_edges[-1]
        for limit in (budget, budget + 1, 0.5):
            expected = mowst_receptive._expand_by_hops(csr, nodes, 2, limit)
            assert (expand(csr, nodes, 2, limit) is None) == (expected is None)


def test_compiled_field_with_threads_on_a_larger_graph():
    """Frontiers of thousands of rows are marked by several threads: same field."""
    if not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    gen = torch.Generator().manual_seed(11)
    num_nodes = 20_000
    edge_index = torch.randint(num_nodes, (2, 120_000), generator=gen)
    csr = to_csr(edge_index, num_nodes)
    seeds = torch.rand(num_nodes, generator=gen) < 0.3
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        field = expand(csr, seeds, 2)
    finally:
        torch.set_num_threads(threads)
    reference = mowst_receptive._expand_by_hops(csr, seeds, 2, None)
    assert torch.equal(field.nodes, reference.nodes) and field.sizes == reference.sizes
    assert field.in_edges == reference.in_edges


def test_expand_rejects_a_wrong_mask(graph):
    csr = to_csr(graph[1], N)
    with pytest.raises(ValueError, match="bool mask"):
        expand(csr, torch.zeros(N - 1, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="bool mask"):
        expand(csr, torch.zeros(N, dtype=torch.long), 2)


def test_max_fraction_falls_back_to_the_full_graph(graph):
    x, edge_index = graph
    model = strong("gcn")
    nodes = masks()[2]
    with torch.no_grad():
        full = model(x, edge_index)[nodes]
        rows, stats = strong_on_nodes(model, x, edge_index, None, nodes, 2, max_fraction=0.05)
        assert stats["full_graph"] == 1.0
        torch.testing.assert_close(rows, full)
        rows, stats = strong_on_nodes(model, x, edge_index, None, nodes, 2, max_fraction=1.0)
        assert stats["full_graph"] == 0.0 and 0.0 < stats["edge_fraction"] <= 1.0
        assert 0.0 < stats["aggregation_fraction"] <= stats["edge_fraction"]


def test_predict_conditional_gcn_and_sage_equal_full(graph):
    x, edge_index = graph
    for name in ("gcn", "sage"):
        torch.manual_seed(0)
        weak = build_model("mlp", in_channels=F_IN, hidden_channels=16, num_layers=2,
                           out_channels=C)
        model = Mowst(weak, strong(name), gate_layers=1).eval()
        with torch.no_grad():
            d = model(x, edge_index).dispersion
            model.gate.lins[0].weight.fill_(50.0)
            model.gate.lins[0].bias.fill_(-50.0 * float(d.median()))
        for threshold in (0.0, 0.5, 1.0):  # all weak, about half, (almost) none weak
            kw = dict(rule="threshold", threshold=threshold)
            full = model.predict(x, edge_index, **kw)
            cond = model.predict(x, edge_index, conditional=True, max_fraction=1.0, **kw)
            torch.testing.assert_close(full.probs, cond.probs, atol=1e-5, rtol=1e-5)


def test_uses_only_public_ops_api():
    for module in (mowst_conditional, mowst_layerwise, mowst_receptive):
        source = inspect.getsource(module)
        assert "_CACHE" not in source and "ops.csr" not in source, module.__name__


def test_first_layer_reads_graph_ids_for_large_fields(graph):
    """Large fields: the first layer reads x in place by graph id (no gather of x); small ones
    gather the field's rows. Both give the full-graph rows."""
    x, edge_index = graph
    csr = to_csr(edge_index, N)
    model = strong("sage", 2, hidden_channels=8, residual=True)
    with torch.no_grad():
        full = model(x, edge_index)
        seen = set()
        for nodes in masks():
            inputs = layerwise_input(x, edge_index, csr, None, expand(csr, nodes, 2))
            seen.add(inputs.graph_ids)
            assert inputs.graph_ids == (2 * inputs.field.sizes[2] >= N)
            torch.testing.assert_close(layerwise_rows(model, inputs), full[nodes],
                                       atol=1e-5, rtol=1e-5)
    assert seen == {True, False}


@pytest.mark.skipif(not cpu_kernels.available(), reason="needs the compiled CPU kernels")
@pytest.mark.parametrize("kwargs", [{}, {"improved": True}, {"add_self_loops": False}])
def test_layerwise_gcn_is_bit_identical_with_the_compiled_kernel(kwargs):
    """Each row is summed by the same compiled code, in the same order, as in the full pass;
    with an input no wider than the output both paths aggregate first."""
    x, edge_index = make_graph(seed=4, isolated=0)
    model = strong("gcn", 2, hidden_channels=F_IN, **kwargs)
    with torch.no_grad():
        full = model(x, edge_index)
        for nodes in masks():
            rows, _ = strong_on_nodes(model, x, edge_index, None, nodes, 2, max_fraction=1.0)
            assert torch.equal(rows, full[nodes])
