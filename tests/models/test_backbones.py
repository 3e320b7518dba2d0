"""The BasicGNN-style backbones: shapes, options, input checks, PyG parity, registry."""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn

from graphmoe.models import (
    GAT,
    GCN,
    GIN,
    MLP,
    MODEL_REGISTRY,
    GATConv,
    GCNConv,
    GINConv,
    GraphSAGE,
    SAGEConv,
    build_model,
)
from graphmoe.ops import has_csr

N, F_IN, HIDDEN, OUT = 10, 6, 8, 3
MODELS = {"mlp": MLP, "gcn": GCN, "sage": GraphSAGE, "gat": GAT, "gin": GIN}
CONVS = {GCN: GCNConv, GraphSAGE: SAGEConv, GAT: GATConv, GIN: GINConv}


@pytest.fixture
def graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, N, (2, 30), generator=gen)
    return (torch.randn(N, F_IN, generator=gen), edge_index,
            torch.rand(edge_index.size(1), generator=gen))


def make(cls, **kwargs):
    kwargs.setdefault("out_channels", OUT)
    if cls is GAT:
        kwargs.setdefault("heads", 2)
    return cls(F_IN, HIDDEN, kwargs.pop("num_layers", 3), **kwargs)


@pytest.mark.parametrize("cls", MODELS.values())
@pytest.mark.parametrize("options", [
    {},
    {"out_channels": None},
    {"num_layers": 1},
    {"residual": True, "norm": "layer_norm"},
    {"norm": "batch_norm", "jk": "cat", "dropout": 0.3},
    {"jk": "max", "residual": True},
    {"jk": "last", "act": "gelu"},
])
def test_output_shape_and_backward(cls, options, graph):
    x, edge_index, edge_weight = graph
    model = make(cls, **options)
    out = model(x, edge_index, edge_weight)
    expected = OUT if options.get("out_channels", OUT) is not None else HIDDEN
    assert out.shape == (N, expected)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("cls", CONVS)
def test_layers_are_graphmoe_convs(cls):
    model = make(cls)
    assert all(isinstance(conv, CONVS[cls]) for conv in model.convs)


def test_residual_projects_only_where_shapes_differ():
    model = GCN(F_IN, HIDDEN, 3, out_channels=OUT, residual=True)
    kinds = [type(skip).__name__ for skip in model.skips]
    assert kinds == ["Linear", "Identity", "Linear"]
    assert GCN(HIDDEN, HIDDEN, 2, residual=True).skips[0].__class__.__name__ == "Identity"


def test_residual_is_added(graph):
    """With a zeroed layer the output is exactly the skip connection."""
    x, edge_index, _ = graph
    model = GCN(F_IN, F_IN, 1, residual=True)
    torch.nn.init.zeros_(model.convs[0].lin.weight)
    torch.testing.assert_close(model(x, edge_index), x)


@pytest.mark.parametrize("norm, kind", [("batch_norm", torch.nn.BatchNorm1d),
                                        ("layer_norm", torch.nn.LayerNorm)])
def test_norm_layers(norm, kind):
    model = GCN(F_IN, HIDDEN, 3, out_channels=OUT, norm=norm)
    assert len(model.norms) == 2 and all(isinstance(n, kind) for n in model.norms)
    assert len(GCN(F_IN, HIDDEN, 3, norm=norm, jk="cat").norms) == 3


@pytest.mark.parametrize("jk, in_features", [("cat", 3 * HIDDEN), ("max", HIDDEN),
                                             ("last", HIDDEN)])
def test_jumping_knowledge_head(jk, in_features):
    model = GraphSAGE(F_IN, HIDDEN, 3, out_channels=OUT, jk=jk)
    assert model.lin.in_features == in_features and model.lin.out_features == OUT
    assert model.convs[-1].out_channels == HIDDEN


@pytest.mark.parametrize("cls", MODELS.values())
def test_dropout_only_in_training(cls, graph):
    x, edge_index, _ = graph
    model = make(cls, dropout=0.5)
    model.eval()
    torch.testing.assert_close(model(x, edge_index), model(x, edge_index))
    model.train()
    torch.manual_seed(0)
    a = model(x, edge_index)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x, edge_index))


@pytest.mark.parametrize("cls", MODELS.values())
def test_wrong_feature_size_names_in_channels(cls, graph):
    _, edge_index, _ = graph
    with pytest.raises(ValueError, match=rf"in_channels={F_IN}.*5 features"):
        make(cls)(torch.randn(N, 5), edge_index)


@pytest.mark.parametrize("cls", MODELS.values())
@pytest.mark.parametrize("shape", [(F_IN,), (2, N, F_IN)])
def test_non_2d_features_rejected(cls, shape, graph):
    _, edge_index, _ = graph
    with pytest.raises(ValueError, match=r"2-D node features"):
        make(cls)(torch.randn(*shape), edge_index)


@pytest.mark.parametrize("cls", CONVS)
def test_bad_graph_rejected(cls, graph):
    x, edge_index, _ = graph
    model = make(cls)
    with pytest.raises(ValueError, match=r"edge_index.*\[0, 10\].*10 nodes"):
        model(x, torch.cat([edge_index, torch.tensor([[0], [N]])], dim=1))
    with pytest.raises(ValueError, match=r"shape \[2, num_edges\]"):
        model(x, edge_index.t())
    with pytest.raises(ValueError, match=r"edge_index of shape"):
        model(x, None)
    with pytest.raises(TypeError, match=r"torch.long"):
        model(x, edge_index.float())
    with pytest.raises(ValueError, match=r"edge_weight of shape \[num_edges=30\]"):
        model(x, edge_index, torch.ones(29))


@pytest.mark.parametrize("cls", CONVS)
def test_graph_changed_in_place_after_caching_is_checked_again(cls, graph):
    """A cached CSR stands for a range check only while edge_index is unmodified."""
    x, edge_index, _ = graph
    edge_index = edge_index.clone()
    model = make(cls).eval()
    model(x, edge_index)  # builds and caches the CSR: later calls skip the range check
    assert has_csr(edge_index, N)
    edge_index[1, 0] = N  # out of range, in place: the cache entry no longer applies
    assert not has_csr(edge_index, N)
    with pytest.raises(ValueError, match=r"edge_index.*\[0, 10\].*10 nodes"):
        model(x, edge_index)


def test_mlp_ignores_graph(graph):
    x, edge_index, edge_weight = graph
    model = MLP(F_IN, HIDDEN, 2, out_channels=OUT, norm="layer_norm", residual=True).eval()
    torch.testing.assert_close(model(x), model(x, edge_index, edge_weight))
    assert model.lins is model.convs


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "group_norm"}, "norm"), ({"jk": "lstm"}, "jk"), ({"num_layers": 0}, "num_layers"),
    ({"dropout": 1.0}, "dropout"), ({"act": "nope"}, "nope"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(GCN, **kwargs)


def test_gat_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="divisible by heads=3"):
        GAT(F_IN, HIDDEN, 2, heads=3)
    model = GAT(F_IN, HIDDEN, 2, out_channels=OUT, heads=4)
    assert model.convs[0].out_channels == 2 and model.convs[0].concat
    assert model.convs[-1].out_channels == OUT and not model.convs[-1].concat


@pytest.mark.parametrize("cls, ref_cls, kwargs", [
    (GCN, pyg_nn.GCN, {}),
    (GCN, pyg_nn.GCN, {"jk": "cat"}),
    (GraphSAGE, pyg_nn.GraphSAGE, {"aggr": "max"}),
    (GAT, pyg_nn.GAT, {"heads": 2}),
])
def test_matches_pyg_basic_gnn(cls, ref_cls, kwargs, graph):
    x, edge_index, _ = graph
    ours = cls(F_IN, HIDDEN, 3, out_channels=OUT, **kwargs).eval()
    ref = ref_cls(F_IN, HIDDEN, 3, out_channels=OUT, **kwargs).eval()
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x, edge_index), ref(x, edge_index), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", MODELS.values())
def test_reset_parameters_changes_weights(cls):
    model = make(cls, jk="cat", residual=True)
    before = {k: v.clone() for k, v in model.state_dict().items() if v.dim() > 1}
    model.reset_parameters()
    after = model.state_dict()
    assert all(not torch.equal(v, after[k]) for k, v in before.items())


def test_reprs():
    assert repr(GCN(16, 32, 2, out_channels=7)) == "GCN(16, 7, num_layers=2)"
    assert repr(MLP(16, 32, 3)) == "MLP(16, 32, num_layers=3)"
    assert repr(GAT(16, 32, 2, heads=4)) == "GAT(16, 32, num_layers=2)"


def test_registry_builds_every_name(graph):
    x, edge_index, _ = graph
    assert {"mlp", "gcn", "sage", "graphsage", "gat", "gin", "dagnn", "gmoe"} <= set(MODEL_REGISTRY)
    for name in MODEL_REGISTRY:
        kwargs = {"in_channels": F_IN, "hidden_channels": HIDDEN, "out_channels": OUT}
        if name != "dagnn":
            kwargs["num_layers"] = 2
        model = build_model(name, **kwargs)
        assert isinstance(model, MODEL_REGISTRY[name])
        if getattr(model, "supports_edge_attr", False):  # gine, gmoe_gin: OGB bond features
            bonds = torch.zeros(edge_index.size(1), 3, dtype=torch.long)
            assert model(x, edge_index, bonds).shape == (N, OUT)
            continue
        assert model(x, edge_index).shape == (N, OUT)
    assert isinstance(build_model("GraphSAGE", in_channels=4, hidden_channels=4, num_layers=1),
                      GraphSAGE)


def test_registry_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"'gcnn'.*mlp, gcn, sage, graphsage, gat, gin, dagnn"):
        build_model("gcnn", in_channels=4, hidden_channels=4, num_layers=1)
