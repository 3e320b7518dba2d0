"""Masked GCN layers and model: equal to the unmasked GCN with mask = 1, pruning, sparse input."""
from __future__ import annotations

import pytest
import torch
import torch_geometric.nn as pyg_nn

from graphmoe.federated.models import MaskedGCN, MaskedGCNConv, MaskedLinear
from graphmoe.models import GCNConv


@pytest.fixture
def graph():
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 30, (2, 120), generator=gen)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return torch.randn(30, 12, generator=gen), edge_index


def test_masked_gcn_conv_with_unit_mask_equals_gcn_conv(graph):
    x, edge_index = graph
    conv = MaskedGCNConv(12, 8)
    torch.nn.init.normal_(conv.bias)
    ours = GCNConv(12, 8)
    pyg = pyg_nn.GCNConv(12, 8)
    with torch.no_grad():
        for ref in (ours, pyg):
            ref.lin.weight.copy_(conv.lin.weight)
            ref.bias.copy_(conv.bias)
    assert torch.equal(conv.lin.mask, torch.ones(8, 12))
    for mode in (True, False):
        conv.train(mode)
        out = conv(x, edge_index)
        torch.testing.assert_close(out, ours(x, edge_index))
        torch.testing.assert_close(out, pyg(x, edge_index), atol=1e-5, rtol=1e-5)


def test_masked_gcn_with_unit_masks_equals_unmasked_gcn(graph):
    x, edge_index = graph
    masked = MaskedGCN(12, 16, 3, masked=True)
    plain = MaskedGCN(12, 16, 3, masked=False)
    assert masked.mask_keys() == {"convs.0.lin.mask", "convs.1.lin.mask", "classifier.mask"}
    assert plain.mask_keys() == set()
    plain.load_state_dict({k: v for k, v in masked.state_dict().items() if not k.endswith("mask")})
    masked.eval(), plain.eval()
    torch.testing.assert_close(masked(x, edge_index), plain(x, edge_index))
    torch.testing.assert_close(masked.embed(x, edge_index), plain.embed(x, edge_index))
    masked.train(), plain.train()
    torch.manual_seed(3)
    a = masked(x, edge_index)
    torch.manual_seed(3)
    torch.testing.assert_close(a, plain(x, edge_index))
    assert masked.embed(x, edge_index).shape == (30, 16)


def test_masks_are_pruned_below_the_threshold_in_eval_mode_only():
    lin = MaskedLinear(4, 2, bias=False, threshold=1e-3)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.mask.copy_(torch.tensor([[1e-4, 0.5, -2e-4, 1.0], [1.0, 1.0, 1.0, -5e-4]]))
    x = torch.ones(1, 4)
    lin.train()
    torch.testing.assert_close(lin(x), torch.tensor([[1.5 - 1e-4, 3.0 - 5e-4]]))
    lin.eval()
    torch.testing.assert_close(lin(x), torch.tensor([[1.5, 3.0]]))


def test_sparse_features_give_the_same_outputs_and_gradients(graph):
    x, edge_index = graph
    x = x * (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.2)
    model = MaskedGCN(12, 16, 3, dropout=0.0)
    grads = []
    for inp in (x, x.to_sparse_csr()):
        model.zero_grad()
        out = model(inp, edge_index)
        out.square().sum().backward()
        grads.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for name, g in grads[0][1].items():
        torch.testing.assert_close(g, grads[1][1][name], msg=name)


def test_normalisation_cache_follows_the_graph(graph):
    x, edge_index = graph
    conv = MaskedGCNConv(12, 4)
    other = edge_index[:, :50]
    first, second = conv(x, edge_index), conv(x, other)
    fresh = MaskedGCNConv(12, 4)
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x, edge_index), first)
    torch.testing.assert_close(conv(x, other), second)
    torch.testing.assert_close(fresh(x, other), second)
    assert not torch.allclose(first, second)


def test_bad_input_and_repr(graph):
    x, edge_index = graph
    model = MaskedGCN(12, 16, 3)
    with pytest.raises(ValueError, match="'x' must have shape"):
        model(x[:, :5], edge_index)
    with pytest.raises(ValueError, match="'edge_index'"):
        model(x, edge_index[0])
    with pytest.raises(ValueError, match="'dropout'"):
        MaskedGCN(12, 16, 3, dropout=1.5)
    assert repr(model) == "MaskedGCN(12, 16, 3, num_layers=2, masked=True)"
    assert repr(model.convs[0]) == "MaskedGCNConv(12, 16, masked=True)"
    assert repr(model.classifier) == "MaskedLinear(16, 3, masked=True)"


def test_eval_weight_cache_follows_updates(graph):
    x, edge_index = graph
    model = MaskedGCN(12, 16, 3).eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    with torch.no_grad():
        first = model(x, edge_index)
    model.train()
    model(x, edge_index).square().sum().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        second = model(x, edge_index)
        model.load_state_dict({k: v * 0.5 for k, v in model.state_dict().items()})
        third = model(x, edge_index)
    assert not torch.allclose(first, second) and not torch.allclose(second, third)
    fresh = MaskedGCN(12, 16, 3).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, edge_index), third)
    torch.testing.assert_close(model(x, edge_index), third)  # with autograd: no cache
