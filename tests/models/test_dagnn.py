"""DAGNN: propagation equals dense powers of the normalised adjacency; adaptive readout."""
from __future__ import annotations

import pytest
import torch

from graphmoe.models import DAGNN

N, F_IN, OUT = 9, 5, 3


@pytest.fixture
def graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A small directed graph without self-loops, with one isolated node."""
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, N - 1, (2, 25), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    return (torch.randn(N, F_IN, generator=gen), edge_index,
            torch.rand(edge_index.size(1), generator=gen) + 0.1)


def dense_a_hat(edge_index: torch.Tensor, edge_weight: torch.Tensor | None) -> torch.Tensor:
    r""":math:`\hat{D}^{-1/2} (A + I) \hat{D}^{-1/2}`, rows = targets."""
    weight = torch.ones(edge_index.size(1)) if edge_weight is None else edge_weight
    adj = torch.zeros(N, N).index_put((edge_index[1], edge_index[0]), weight, accumulate=True)
    adj = adj + torch.eye(N)
    d_inv_sqrt = adj.sum(dim=1).pow(-0.5)
    return d_inv_sqrt.view(-1, 1) * adj * d_inv_sqrt.view(1, -1)


@pytest.mark.parametrize("weighted", [False, True])
def test_propagation_equals_dense_powers(graph, weighted):
    x, edge_index, edge_weight = graph
    edge_weight = edge_weight if weighted else None
    model = DAGNN(F_IN, 8, OUT, K=4)
    z = torch.randn(N, OUT)
    a_hat = dense_a_hat(edge_index, edge_weight)
    expected = torch.stack([torch.linalg.matrix_power(a_hat, k) @ z for k in range(5)], dim=1)
    torch.testing.assert_close(model.propagate(z, edge_index, edge_weight), expected,
                               atol=1e-5, rtol=1e-5)


def test_forward_is_adaptive_sum_of_hops(graph):
    x, edge_index, _ = graph
    model = DAGNN(F_IN, 8, OUT, K=3, dropout=0.5).eval()
    z = model.lins[1](torch.relu(model.lins[0](x)))
    a_hat = dense_a_hat(edge_index, None)
    hops = [torch.linalg.matrix_power(a_hat, k) @ z for k in range(4)]
    expected = sum(torch.sigmoid(model.proj(h)) * h for h in hops)
    torch.testing.assert_close(model(x, edge_index), expected, atol=1e-5, rtol=1e-5)


def test_k_zero_is_gated_mlp(graph):
    x, edge_index, _ = graph
    model = DAGNN(F_IN, 8, OUT, K=0, num_layers=3).eval()
    z = model.transform(x)
    torch.testing.assert_close(model(x, edge_index), torch.sigmoid(model.proj(z)) * z)
    assert len(model.lins) == 3


def test_shapes_dropout_and_backward(graph):
    x, edge_index, _ = graph
    model = DAGNN(F_IN, 8, OUT, K=10, dropout=0.8)
    out = model(x, edge_index)
    assert out.shape == (N, OUT)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    torch.testing.assert_close(model(x, edge_index), model(x, edge_index))
    assert model.retention(model.propagate(model.transform(x), edge_index)).shape == (N, 11)


def test_cached_reuses_graph(graph):
    x, edge_index, _ = graph
    model = DAGNN(F_IN, 8, OUT, K=2, cached=True).eval()
    first = model(x, edge_index)
    torch.testing.assert_close(model(x, edge_index.flip(0)), first)
    model.reset_parameters()
    assert model._cached is None


def test_input_checks_and_repr(graph):
    x, edge_index, _ = graph
    model = DAGNN(F_IN, 8, OUT)
    with pytest.raises(ValueError, match=rf"in_channels={F_IN}"):
        model(torch.randn(N, F_IN + 1), edge_index)
    with pytest.raises(ValueError, match="2-D"):
        model(x[0], edge_index)
    with pytest.raises(ValueError, match="K"):
        DAGNN(F_IN, 8, OUT, K=-1)
    assert repr(model) == f"DAGNN({F_IN}, 8, {OUT}, K=10)"


def test_reset_parameters_changes_weights():
    model = DAGNN(F_IN, 8, OUT)
    before = [p.detach().clone() for p in model.parameters() if p.dim() > 1]
    model.reset_parameters()
    assert all(not torch.equal(a, b.detach()) for a, b in
               zip(before, [p for p in model.parameters() if p.dim() > 1]))
