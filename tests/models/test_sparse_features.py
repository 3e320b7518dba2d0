"""Sparse (CSR) node features: MLP, GCN and GraphSAGE equal their dense-x results, Mowst's
row gathers accept them, the other backbones refuse them, the datamodule stores them."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Data

from graphmoe.data.synthetic import csbm
from graphmoe.models import build_model
from graphmoe.models.conv import SAGEConv
from graphmoe.models.mowst_conditional import (
    receptive_subgraph,
    rows_of,
    run_on_subgraph,
    strong_on_nodes,
    supports_layerwise,
)
from graphmoe.ops import CSR, aggregate, to_csr
from graphmoe.ops.aggregate import aggregate_linear, head_rows, select_rows
from graphmoe.training import NodeClassifier, NodeDataModule

N, F_IN, C = 120, 40, 3


def make_graph(seed: int = 0):
    """Sparse non-negative features (~10% density, some all-zero rows), a random directed
    graph with self-loops and isolated nodes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(N, F_IN, generator=gen) * (torch.rand(N, F_IN, generator=gen) < 0.1)
    x[:5] = 0.0
    m = N - 8
    src = torch.randint(0, m, (400,), generator=gen)
    dst = torch.randint(0, m, (400,), generator=gen)
    loops = torch.arange(0, m, 9)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([loops, loops])], dim=1)
    return x, edge_index


@pytest.fixture(scope="module")
def graph():
    return make_graph()


def model(name: str, num_layers: int = 2, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("hidden_channels", 16)
    return build_model(name, in_channels=F_IN, num_layers=num_layers, out_channels=C, **kwargs)


def close(a, b):
    """Equal within 1e-5, relative to each element and to the tensor's scale (float32 sums in
    another order: elements that nearly cancel differ by more than 1e-5 of themselves)."""
    scale = float(b.abs().max()) if b.numel() else 0.0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale + 1e-7)


VARIANTS = [
    ("mlp", {}),
    ("mlp", {"residual": True, "norm": "layer_norm", "jk": "cat"}),
    ("gcn", {}),
    ("gcn", {"residual": True, "norm": "layer_norm", "jk": "cat"}),
    ("gcn", {"hidden_channels": F_IN, "residual": True, "jk": "max"}),  # identity skip on x
    ("gcn", {"normalize": False}),
    ("sage", {"aggr": "mean"}),
    ("sage", {"aggr": "sum"}),
    ("sage", {"aggr": "max"}),
    ("sage", {"aggr": "mean", "residual": True, "norm": "layer_norm", "jk": "cat"}),
    ("sage", {"aggr": "sum", "residual": True, "norm": "layer_norm", "jk": "last"}),
    ("sage", {"aggr": "max", "residual": True, "norm": "layer_norm", "jk": "max"}),
    ("sage", {"root_weight": False, "normalize": True}),
    ("sage", {"project": True}),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS)
def test_outputs_and_gradients_match_dense(graph, name, kwargs):
    x, edge_index = graph
    net = model(name, **kwargs)
    results = []
    for features in (x, x.to_sparse_csr()):
        net.zero_grad()
        out = net(features, edge_index)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}))
    (dense, dense_grads), (sparse, sparse_grads) = results
    close(sparse, dense)
    assert dense_grads.keys() == sparse_grads.keys()
    for key, grad in dense_grads.items():
        close(sparse_grads[key], grad)


@pytest.mark.parametrize("aggr", ["mean", "sum", "max"])
def test_sage_with_edge_weights_and_no_grad(graph, aggr):
    x, edge_index = graph
    weight = torch.rand(edge_index.size(1), generator=torch.Generator().manual_seed(1)) + 0.1
    net = model("sage", aggr=aggr).eval()
    with torch.no_grad():
        close(net(x.to_sparse_csr(), edge_index, weight), net(x, edge_index, weight))


def test_aggregate_linear_on_rectangular_csr_with_sparse_root(graph):
    """The first ``num_rows`` rows as the root term (``head_rows`` of a sparse x)."""
    x, edge_index = graph
    full = to_csr(edge_index, N)
    ptr = full.rowptr[:51]
    csr = CSR.from_arrays(ptr, full.col[:int(ptr[-1])], N)
    w, w_root = torch.randn(7, F_IN), torch.randn(7, F_IN)
    for reduce in ("sum", "mean", "max"):
        dense = aggregate_linear(x, csr, w, None, None, reduce, weight_root=w_root)
        close(aggregate_linear(x.to_sparse_csr(), csr, w, None, None, reduce,
                               weight_root=w_root), dense)


def test_select_rows_and_head_rows():
    x, _ = make_graph(3)
    xs = x.to_sparse_csr()
    gen = torch.Generator().manual_seed(0)
    index = torch.randint(0, N, (70,), generator=gen)  # repeats, unsorted
    mask = torch.rand(N, generator=gen) < 0.4
    for idx, expected in ((index, x[index]), (mask, x[mask]),
                          (index[:0], x[:0]), (torch.arange(N), x)):
        rows = select_rows(xs, idx)
        assert rows.layout == torch.sparse_csr
        assert torch.equal(rows.to_dense(), expected)
        assert torch.equal(select_rows(x, idx), expected)
    for n in (0, 1, 37, N):
        assert torch.equal(head_rows(xs, n).to_dense(), x[:n])


# -- Mowst's conditional paths -----------------------------------------------------------------


def routed(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    one = torch.zeros(N, dtype=torch.bool)
    one[7] = True
    return [torch.rand(N, generator=gen) < share for share in (0.1, 0.4, 0.8)] + [one]


@pytest.mark.parametrize("name,kwargs", [
    ("gcn", {}),
    ("gcn", {"residual": True, "norm": "layer_norm", "jk": "cat"}),
    ("gcn", {"hidden_channels": F_IN, "residual": True}),
    ("sage", {"aggr": "mean"}),
    ("sage", {"aggr": "sum", "residual": True, "jk": "max"}),
    ("sage", {"aggr": "max"}),
    ("sage", {"hidden_channels": 8, "residual": True}),  # wide features: project, then gather
])
@pytest.mark.parametrize("layerwise", [True, False])
def test_strong_on_nodes_with_sparse_x(graph, name, kwargs, layerwise):
    x, edge_index = graph
    net = model(name, **kwargs).eval()
    assert supports_layerwise(net, 2)
    xs = x.to_sparse_csr()
    with torch.no_grad():
        full = net(x, edge_index)
        for nodes in routed():
            rows, stats = strong_on_nodes(net, xs, edge_index, None, nodes, 2,
                                          max_fraction=1.0, layerwise=layerwise)
            assert stats["layerwise"] == float(layerwise) and stats["full_graph"] == 0.0
            close(rows, full[nodes])


@pytest.mark.parametrize("name", ["gcn", "sage"])
def test_receptive_subgraph_and_rows_of_with_sparse_x(graph, name):
    x, edge_index = graph
    net = model(name).eval()
    nodes = routed()[1]
    xs = x.to_sparse_csr()
    with torch.no_grad():
        full = net(x, edge_index)[nodes]
        sub = receptive_subgraph(xs, edge_index, None, nodes, 2, source_degree=name == "gcn")
        dense_sub = receptive_subgraph(x, edge_index, None, nodes, 2, name == "gcn")
        assert sub.x.layout == torch.sparse_csr
        assert torch.equal(sub.x.to_dense(), dense_sub.x)
        close(run_on_subgraph(net, sub), full)
        close(rows_of(net, xs, edge_index, None, nodes, 2), full)
        mlp = model("mlp").eval()
        close(rows_of(mlp, xs, None, None, nodes, 0), mlp(x)[nodes])


def test_zero_routed_nodes_with_sparse_x(graph):
    x, edge_index = graph
    rows, _ = strong_on_nodes(model("gcn").eval(), x.to_sparse_csr(), edge_index, None,
                              torch.zeros(N, dtype=torch.bool), 2)
    assert rows.shape == (0, C) and rows.layout == torch.strided


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs", [("gat", {"heads": 2}), ("gin", {}), ("gmoe", {})])
def test_other_backbones_refuse_sparse_x(graph, name, kwargs):
    x, edge_index = graph
    with pytest.raises(ValueError, match="supported by MLP, GCN and GraphSAGE only") as info:
        model(name, **kwargs)(x.to_sparse_csr(), edge_index)
    assert "\n" not in str(info.value)


def test_dagnn_refuses_sparse_x(graph):
    x, edge_index = graph
    net = build_model("dagnn", in_channels=F_IN, hidden_channels=8, out_channels=C)
    with pytest.raises(ValueError, match="supported by MLP, GCN and GraphSAGE only"):
        net(x.to_sparse_csr(), edge_index)


def test_bad_sparse_x_is_a_one_line_value_error(graph):
    x, edge_index = graph
    net = model("gcn")
    bad = {
        "require grad": x.to_sparse_csr().requires_grad_(),
        "torch.sparse_csr tensor": x.to_sparse(),  # COO
        "2-D torch.sparse_csr": torch.stack([x, x]).to_sparse_csr(),  # batched CSR
    }
    for message, features in bad.items():
        with pytest.raises(ValueError, match=message) as info:
            net(features, edge_index)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="in_channels=40 but x has 39"):
        net(x[:, :39].to_sparse_csr(), edge_index)
    with pytest.raises(ValueError, match="needs dense features"):
        aggregate(x.to_sparse_csr(), edge_index)
    with pytest.raises(ValueError, match="lazy"):
        SAGEConv(-1, 4)(x.to_sparse_csr(), edge_index)


# -- datamodule --------------------------------------------------------------------------------


def tiny_graph() -> Data:
    data = csbm(num_nodes=200, num_classes=3, num_features=8, avg_degree=5.0,
                homophily=(0.9,), signal=2.0, seed=0)
    data.name, data.num_classes, data.metric = "tiny", 3, "acc"
    return data


def test_datamodule_stores_csr_features():
    data = tiny_graph()
    dm = NodeDataModule.from_data(data, sparse_features=True)
    assert dm.data.x.layout == torch.sparse_csr and dm.num_features == 8
    assert torch.equal(dm.data.x.to_dense(), data.x)
    assert data.x.layout == torch.strided  # the caller's graph is left alone
    assert NodeDataModule.from_data(data).data.x.layout == torch.strided
    with pytest.raises(ValueError, match="full-batch"):
        NodeDataModule.from_data(data, sparse_features=True, batch_size=16)


def fit_val_acc(datamodule, epochs: int = 3) -> float:
    pl.seed_everything(0)
    module = NodeClassifier("gcn", hidden_channels=64, num_layers=2)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         max_epochs=epochs)
    trainer.fit(module, datamodule=datamodule)
    return float(trainer.callback_metrics["val/acc"])


def test_citeseer_gcn_fit_matches_dense(data_root):
    dense = fit_val_acc(NodeDataModule("citeseer", str(data_root)))
    datamodule = NodeDataModule("citeseer", str(data_root), sparse_features=True)
    sparse = fit_val_acc(datamodule)
    assert datamodule.data.x.layout == torch.sparse_csr
    assert abs(dense - sparse) <= 1e-4
