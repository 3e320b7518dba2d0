"""Message passing on a subset of the targets (graphmoe.ops.row_subset) and the self term of
``aggregate``: against the whole-graph aggregation, with and without the compiled kernels."""
from __future__ import annotations

import pytest
import torch

from graphmoe.ops import aggregate, cpu_kernels, to_csr
from graphmoe.ops.row_subset import aggregate_rows, row_positions, sources_of

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
N, E = 300, 2400


def graph(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, N - 20, (2, E), generator=gen)  # the last 20: isolated
    edge_index = torch.cat([edge_index, edge_index[:, :50]], dim=1)  # duplicate edges
    return edge_index, torch.rand(edge_index.size(1), generator=gen) + 0.1


def rows_of(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(N, generator=gen)[:120]
    return torch.cat([rows, rows[:5], torch.tensor([N - 1])])  # repeats, an isolated node


@pytest.fixture(params=["compiled", "gathered"])
def kernels(request, monkeypatch):
    """Both implementations: the compiled kernels, and the fallbacks without them (a gathered
    sub-CSR, ATen's product and a separate self term)."""
    if request.param == "compiled" and not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    if request.param == "gathered":
        monkeypatch.setattr(cpu_kernels, "spmm_sum_rows", lambda *args: None)
        monkeypatch.setattr(cpu_kernels, "mark_columns", lambda *args: None)
        monkeypatch.setattr(cpu_kernels, "spmm_sum", lambda *args: None)
    return request.param


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("width", [1, 5, 64, 70])
def test_rows_equal_the_whole_graph(kernels, reduce, weighted, width):
    edge_index, weight = graph()
    x = torch.randn(N, width)
    w = weight if weighted else None
    rows = rows_of()
    expected = aggregate(x, edge_index, w, reduce)[rows]
    out = aggregate_rows(x, edge_index, rows, w, reduce)
    if kernels == "compiled" and reduce != "max":
        assert torch.equal(out, expected)  # same code, same order
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_self_weight(kernels, weighted):
    edge_index, weight = graph(2)
    x = torch.randn(N, 33, dtype=torch.float64)
    w = weight.double() if weighted else None
    self_weight = torch.rand(N, dtype=torch.float64)
    expected = aggregate(x, edge_index, w) + self_weight.unsqueeze(-1) * x
    full = aggregate(x, edge_index, w, self_weight=self_weight)
    torch.testing.assert_close(full, expected)
    rows = rows_of(3)
    out = aggregate_rows(x, edge_index, rows, w, self_weight=self_weight)
    torch.testing.assert_close(out, expected[rows])
    if kernels == "compiled":
        assert torch.equal(out, full[rows])


def test_x_index_reads_a_compact_input(kernels):
    """x holds only the rows read (a receptive field), x_index maps node ids to them."""
    edge_index, weight = graph(4)
    csr = to_csr(edge_index, N)
    rows = rows_of(5)
    needed = sources_of(csr, rows)
    needed[rows] = True  # the self term reads the targets too
    nodes = needed.nonzero().view(-1).flip(0)  # any order
    x_index = torch.full((N,), -7)  # entries outside the field are never read
    x_index[nodes] = torch.arange(nodes.numel())
    x = torch.randn(N, 16)
    self_weight = torch.rand(N)
    expected = aggregate(x, edge_index, weight, self_weight=self_weight)[rows]
    out = aggregate_rows(x[nodes], edge_index, rows, weight, x_index=x_index,
                         self_weight=self_weight)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    if kernels == "compiled":
        assert torch.equal(out, expected)


def test_sources_of_and_row_positions(kernels):
    edge_index, _ = graph(6)
    csr = to_csr(edge_index, N)
    rows = rows_of(7)
    mask = sources_of(csr, rows)
    expected = torch.zeros(N, dtype=torch.bool)
    expected[edge_index[0][torch.isin(edge_index[1], rows)]] = True
    assert torch.equal(mask, expected)
    positions = row_positions(csr, rows[:10])
    assert positions.numel() == int(csr.deg[rows[:10]].sum())
    assert torch.equal(csr.row[positions], torch.repeat_interleave(rows[:10], csr.deg[rows[:10]]))
    assert not sources_of(csr, rows[:0]).any()


def test_gradients_flow_through_the_gathered_path():
    edge_index, weight = graph(8)
    x = torch.randn(N, 4, requires_grad=True)
    w = weight.clone().requires_grad_()
    rows = rows_of(9)
    aggregate_rows(x, edge_index, rows, w, "mean").square().sum().backward()
    grad_x, grad_w = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    aggregate(x, edge_index, w, "mean")[rows].square().sum().backward()
    torch.testing.assert_close(grad_x, x.grad)
    torch.testing.assert_close(grad_w, w.grad)


def test_bad_input(kernels):
    edge_index, _ = graph()
    x = torch.randn(N, 3)
    with pytest.raises(IndexError, match="outside"):
        aggregate_rows(x, edge_index, torch.tensor([0, N]))
    with pytest.raises(ValueError, match="integer row ids"):
        aggregate_rows(x, edge_index, torch.ones(N, dtype=torch.bool))
    with pytest.raises(ValueError, match="x_index"):
        aggregate_rows(x, to_csr(edge_index, N), torch.tensor([0]), x_index=torch.arange(N - 1))
    with pytest.raises(ValueError, match="rows"):  # x too short without x_index
        aggregate_rows(x[:10], edge_index, torch.tensor([0]), num_nodes=N)
    bad = torch.full((N,), 10**6)  # points outside x
    with pytest.raises((RuntimeError, ValueError), match="outside|range"):
        aggregate_rows(x, edge_index, torch.arange(N - 20), x_index=bad)
    with pytest.raises(ValueError, match="self_weight"):
        aggregate(x, edge_index, self_weight=torch.ones(N), reduce="mean")
    with pytest.raises(ValueError, match="self_weight"):
        aggregate(x, edge_index, self_weight=torch.ones(N - 1))
