"""GMoE-GIN (hop-wise GIN experts with bond features) and the GINE baseline."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import graphmoe.models.gmoe_gin as gmoe_gin_module
from graphmoe.models import GINE, GINEConv, GMoEGIN, GMoEGINConv, build_model
from graphmoe.models.gmoe_gin import two_hop_paths

F_IN, F_OUT, N = 6, 5, 9


def molecule(seed: int = 0):
    """A ring of 6 atoms with a 3-atom tail, both directions per bond, OGB-like bond features."""
    g = torch.Generator().manual_seed(seed)
    bonds = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (2, 6), (6, 7), (7, 8)]
    src = [a for a, b in bonds] + [b for a, b in bonds]
    dst = [b for a, b in bonds] + [a for a, b in bonds]
    edge_index = torch.tensor([src, dst])
    feats = torch.stack([torch.randint(0, 4, (9,), generator=g), torch.randint(0, 5, (9,), generator=g),
                         torch.randint(0, 2, (9,), generator=g)], dim=1)
    edge_attr = torch.cat([feats, feats])
    x = torch.randn(N, F_IN, generator=g, dtype=torch.double)
    return x, edge_index, edge_attr


def reference(conv: GMoEGINConv, x, edge_index, edge_attr, routing):
    """Dense computation by explicit loops over edges and 2-walks, with the layer's weights."""
    enc = conv.edge_encoders
    m = {0: torch.zeros_like(x), 1: torch.zeros_like(x), 2: torch.zeros_like(x)}
    edges = edge_index.t().tolist()
    for e, (j, i) in enumerate(edges):
        m[1][i] += F.relu(x[j] + enc["1"](edge_attr[e:e + 1])[0])
        for a, (k, jj) in enumerate(edges):
            if jj == j and k != i:
                m[2][i] += F.relu(x[k] + enc["2"](edge_attr[a:a + 1])[0]
                                  + enc["2b"](edge_attr[e:e + 1])[0])
    out = torch.zeros(x.size(0), conv.out_channels, dtype=x.dtype)
    for n in range(x.size(0)):
        for slot, e in enumerate(routing.expert_index[n].tolist()):
            h = conv.hops[int(conv.hop_of_expert[e])]
            z = (1 + conv.eps[e]) * x[n] + m[h][n]
            y = F.relu(z @ conv.w1[e] + conv.b1[e]) @ conv.w2[e] + conv.b2[e]
            out[n] += routing.combine_weight[n, slot] * y
    return out


def make_conv(**kwargs) -> GMoEGINConv:
    torch.manual_seed(0)
    opts = dict(num_experts=4, k=2, router="topk", eps=0.3)
    opts.update(kwargs)
    conv = GMoEGINConv(F_IN, F_OUT, **opts).double()
    with torch.no_grad():  # non-zero biases and gates so that every term is exercised
        for p in (conv.b1, conv.b2, conv.router.gate.weight):
            p.normal_()
    return conv


def test_two_hop_paths_are_the_non_backtracking_walks():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # path 0 - 1 - 2
    first, second = two_hop_paths(edge_index, 3)
    walks = sorted((int(edge_index[0, a]), int(edge_index[1, a]), int(edge_index[1, b]))
                   for a, b in zip(first.tolist(), second.tolist()))
    assert walks == [(0, 1, 2), (2, 1, 0)]


@pytest.mark.parametrize("router,hops,experts", [("topk", (1, 2), 4), ("noisy_topk", (1, 2), 4),
                                                 ("topk", (0, 1, 2), 6)])
def test_sparse_layer_equals_loop_reference_and_dense_path(router, hops, experts):
    conv = make_conv(router=router, hops=hops, num_experts=experts)
    x, edge_index, edge_attr = molecule()
    conv.train()
    out, aux = conv(x, edge_index, edge_attr)
    expected = reference(conv, x, edge_index, edge_attr, aux.routing)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, conv.dense_forward(x, edge_index, edge_attr, aux.routing))
    assert aux.loss.item() > 0


def test_gradients_match_the_dense_path():
    conv = make_conv()
    x, edge_index, edge_attr = molecule(1)
    x.requires_grad_(True)
    params = [x, conv.w1, conv.w2, conv.b1, conv.eps, conv.router.gate.weight,
              conv.edge_encoders["2b"].bond_embedding_list[0].weight]
    out, aux = conv(x, edge_index, edge_attr)
    weights = torch.randn_like(out)
    sparse = torch.autograd.grad((out * weights).sum(), params)
    dense = torch.autograd.grad(
        (conv.dense_forward(x, edge_index, edge_attr) * weights).sum(), params)
    for a, b in zip(sparse, dense):
        torch.testing.assert_close(a, b)
    assert all(bool(g.abs().sum() > 0) for g in sparse)


def test_only_selected_experts_are_computed(monkeypatch):
    conv = make_conv(num_experts=8, k=2)
    x, edge_index, edge_attr = molecule()
    rows = []
    original = gmoe_gin_module.grouped_linear

    def spy(inp, weight, bias, plan):
        rows.append(inp.size(0))
        return original(inp, weight, bias, plan)

    monkeypatch.setattr(gmoe_gin_module, "grouped_linear", spy)
    conv(x, edge_index, edge_attr)
    assert rows == [N * 2, N * 2]  # two matmuls of the expert MLP, N k rows each (not N E)


def test_edge_features_are_used_and_required():
    conv = make_conv()
    x, edge_index, edge_attr = molecule()
    out, _ = conv(x, edge_index, edge_attr)
    changed = edge_attr.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 4
    assert not torch.allclose(out, conv(x, edge_index, changed)[0])
    with pytest.raises(ValueError, match="got no edge_attr"):
        conv(x, edge_index)
    with pytest.raises(ValueError, match="long OGB bond features"):
        conv(x, edge_index, edge_attr.double())
    plain = make_conv(edge_encoder=None)
    assert len(plain.edge_encoders) == 0
    torch.testing.assert_close(plain(x, edge_index)[0], plain(x, edge_index, changed)[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="hops 0, 1 and 2"):
        GMoEGINConv(4, 4, num_experts=2, hops=(1, 3))
    with pytest.raises(ValueError, match="'k' must be at most"):
        GMoEGINConv(4, 4, num_experts=2, k=3)
    with pytest.raises(TypeError, match="GIN experts do not have"):
        GMoEGINConv(4, 4, num_experts=2, improved=True)
    with pytest.raises(ValueError, match="edge_encoder"):
        GMoEGINConv(4, 4, num_experts=2, edge_encoder="atom")


def test_models_forward_aux_loss_and_repr():
    x, edge_index, edge_attr = molecule()
    model = build_model("gmoe_gin", in_channels=F_IN, hidden_channels=8, num_layers=2,
                        num_experts=4, k=2, hops=(1, 2)).double()
    assert isinstance(model, GMoEGIN) and model.supports_edge_attr
    assert model(x, edge_index, edge_attr).shape == (N, 8)
    assert model.aux_loss is not None and "moe/1/hop2" in model.aux_metrics()
    assert repr(model.convs[0]) == "GMoEGINConv(6, 8, num_experts=4, k=2, edge_encoder='bond')"
    gine = build_model("gine", in_channels=F_IN, hidden_channels=8, num_layers=2).double()
    assert isinstance(gine, GINE) and gine(x, edge_index, edge_attr).shape == (N, 8)
    with pytest.raises(ValueError, match="got no edge_attr"):
        gine(x, edge_index)


def test_gine_conv_is_ogbs_gin_conv():
    torch.manual_seed(0)
    conv = GINEConv(F_IN, F_IN, eps=0.2, batch_norm=False).double()
    x, edge_index, edge_attr = molecule()
    msg = F.relu(x[edge_index[0]] + conv.edge_encoder(edge_attr))
    agg = torch.zeros_like(x).index_add_(0, edge_index[1], msg)
    torch.testing.assert_close(conv(x, edge_index, edge_attr), conv.nn((1.2) * x + agg))
