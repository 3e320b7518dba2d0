"""graphmoe.ops.aggregate against PyG's own gather-scatter path, values and gradients."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.nn import SimpleConv
from torch_geometric.utils import scatter

from graphmoe.ops import CSR, aggregate, register_kernel, select_kernel, to_csr
from graphmoe.ops import spmm as spmm_module
from graphmoe.ops.aggregate import aggregate_linear

REDUCTIONS = ["sum", "mean", "max"]


def pyg_aggregate(x, edge_index, edge_weight, reduce, num_nodes):
    """PyG's default path: gather messages, ``torch_geometric.utils.scatter`` them."""
    msg = x[edge_index[0]]
    if edge_weight is not None:
        msg = msg * edge_weight.unsqueeze(-1)
    return scatter(msg, edge_index[1], dim=0, dim_size=num_nodes, reduce=reduce)


def compare(x, edge_index, edge_weight, reduce, atol):
    """Outputs and gradients (x and edge_weight) of ours and PyG's must match."""
    n = x.size(0)
    inputs = [x] + ([edge_weight] if edge_weight is not None else [])
    out = aggregate(x, edge_index, edge_weight, reduce=reduce)
    ref = pyg_aggregate(x, edge_index, edge_weight, reduce, n)
    assert out.shape == ref.shape == (n, x.size(1))
    torch.testing.assert_close(out, ref, atol=atol, rtol=atol)
    grad = torch.randn_like(ref)
    ours = torch.autograd.grad(out, inputs, grad, allow_unused=True)
    theirs = torch.autograd.grad(ref, inputs, grad, allow_unused=True)
    for name, a, b in zip(["x", "edge_weight"], ours, theirs):
        b = torch.zeros_like(inputs[0] if name == "x" else inputs[1]) if b is None else b
        torch.testing.assert_close(a, b, atol=atol, rtol=atol, msg=f"grad {name}, {reduce}")


@st.composite
def graphs(draw):
    """Random multigraphs: isolated nodes, self-loops, duplicate edges, zero edges."""
    n = draw(st.integers(1, 12))
    e = draw(st.integers(0, 40))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    edge_index = torch.randint(0, n, (2, e), generator=gen)
    if draw(st.booleans()) and e > 0:  # explicit duplicates
        edge_index = torch.cat([edge_index, edge_index[:, : max(1, e // 4)]], dim=1)
    if draw(st.booleans()):  # explicit self-loops on some nodes
        loops = torch.arange(0, n, 2)
        edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
    perm = torch.randperm(edge_index.size(1), generator=gen)
    return edge_index[:, perm], n, gen


@settings(max_examples=80, deadline=None)
@given(graph=graphs(), reduce=st.sampled_from(REDUCTIONS), weighted=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]), f=st.integers(1, 5))
def test_matches_pyg(graph, reduce, weighted, dtype, f):
    edge_index, n, gen = graph
    x = torch.randn(n, f, generator=gen, dtype=dtype).requires_grad_()
    edge_weight = None
    if weighted:  # continuous weights: duplicate edges never tie under max
        edge_weight = (torch.rand(edge_index.size(1), generator=gen, dtype=dtype) + 0.1)
        edge_weight.requires_grad_()
    compare(x, edge_index, edge_weight, reduce, atol=1e-5 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_matches_pyg_message_passing(reduce):
    """Same as a PyG ``MessagePassing`` layer fed with ``edge_index``."""
    torch.manual_seed(0)
    edge_index = torch.randint(0, 30, (2, 200))
    x = torch.randn(30, 8, requires_grad=True)
    out = aggregate(x, edge_index, reduce=reduce)
    ref = SimpleConv(aggr=reduce)(x, edge_index)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0],
                               torch.autograd.grad(ref, x, grad)[0])


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradcheck(reduce, weighted):
    torch.manual_seed(1)
    edge_index = torch.tensor([[0, 1, 2, 2, 3, 3, 1], [1, 2, 0, 1, 3, 1, 2]])
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)  # node 4 is isolated
    w = torch.rand(7, dtype=torch.float64, requires_grad=True) + 0.5 if weighted else None
    inputs = (x, w) if weighted else (x,)
    assert torch.autograd.gradcheck(
        lambda *t: aggregate(t[0], edge_index, t[1] if weighted else None, reduce), inputs)


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_zero_edges(reduce, requires_grad):
    x = torch.randn(4, 3, requires_grad=requires_grad)
    edge_index = torch.empty(2, 0, dtype=torch.long)
    w = torch.empty(0, requires_grad=True)
    out = aggregate(x, edge_index, w, reduce=reduce)
    assert torch.equal(out, torch.zeros(4, 3))
    grads = torch.autograd.grad(out.sum(), [x, w] if requires_grad else [w])
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_single_node_and_empty_graph(reduce):
    x = torch.tensor([[2.0, -3.0]], requires_grad=True)
    out = aggregate(x, torch.tensor([[0], [0]]), reduce=reduce)  # one self-loop
    torch.testing.assert_close(out, x.detach())
    empty = aggregate(torch.empty(0, 3), torch.empty(2, 0, dtype=torch.long), reduce=reduce)
    assert empty.shape == (0, 3)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_isolated_nodes_give_zero(reduce):
    # Node 3 has no in-edge and is larger than any index; max must give 0, not -inf.
    x = -torch.rand(4, 2) - 1.0
    out = aggregate(x, torch.tensor([[0, 1], [1, 2]]), reduce=reduce, num_nodes=4)
    assert torch.equal(out[[0, 3]], torch.zeros(2, 2))


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_csr_input_and_int32_and_column_weights(reduce):
    torch.manual_seed(2)
    edge_index = torch.randint(0, 10, (2, 50))
    x = torch.randn(10, 4)
    w = torch.rand(50)
    ref = aggregate(x, edge_index, w, reduce)
    torch.testing.assert_close(aggregate(x, to_csr(edge_index, 10), w, reduce), ref)
    torch.testing.assert_close(aggregate(x, edge_index.int(), w, reduce), ref)
    torch.testing.assert_close(aggregate(x, edge_index, w.view(-1, 1), reduce), ref)
    torch.testing.assert_close(aggregate(x.t().contiguous().t(), edge_index, w, reduce), ref)


def test_gradient_only_for_edge_weight():
    """GAT-style: attention weights need a gradient, the features may not."""
    torch.manual_seed(3)
    edge_index = torch.randint(0, 6, (2, 20))
    x = torch.randn(6, 3)
    w = torch.rand(20, requires_grad=True)
    (grad_w,) = torch.autograd.grad(aggregate(x, edge_index, w).pow(2).sum(), w)
    ref = pyg_aggregate(x, edge_index, w, "sum", 6)
    torch.testing.assert_close(grad_w, torch.autograd.grad(ref.pow(2).sum(), w)[0])


# ------------------------------------------------------------------------------------------
# max: the packed float32 arg-max path and its fallbacks

def _max_case(values: list[float]):
    """Every node j points to node 0; node 0's max picks among ``values``."""
    n = len(values)
    x = torch.tensor(values, dtype=torch.float32).view(n, 1).repeat(1, 2).requires_grad_()
    edge_index = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)])
    return x, edge_index


def _next32(value: float, toward: float) -> float:
    """The float32 neighbour of ``value``: one float32 ulp is 2^29 float64 ulps."""
    return torch.nextafter(torch.tensor(value), torch.tensor(toward)).item()


@pytest.mark.parametrize("values", [
    [1.0, _next32(1.0, 2.0), 0.5],
    [-1.0, _next32(-1.0, 0.0), -2.0],
    [_next32(2.0, 0.0), 2.0, _next32(2.0, 3.0), 1.0],  # across a binade boundary
    [0.0, -0.0, -1e-45, -1.0],  # zeros and the smallest denormal
    [3.0e38, -3.0e38, 1e-40],
])
def test_max_exact_near_ties(values):
    values = torch.tensor(values, dtype=torch.float32).tolist()  # float32-representable
    x, edge_index = _max_case(values)
    out = aggregate(x, edge_index, reduce="max")
    best = max(range(len(values)), key=lambda j: values[j])
    assert out[0, 0].item() == values[best]
    (grad,) = torch.autograd.grad(out[0].sum(), x)
    expected = torch.zeros_like(x)
    if values[best] != 0.0 or values.count(0.0) == 1:  # +0.0 == -0.0: either may win
        expected[best] = 1.0
        assert torch.equal(grad, expected)
    assert grad.sum() == 2.0


@pytest.mark.parametrize("block_cols", [8, 16, 100])
def test_max_packed_column_blocks(monkeypatch, block_cols):
    """The float32 arg-max path works on column blocks; any block width gives the same."""
    torch.manual_seed(6)
    n, f = 40, 20
    monkeypatch.setattr(spmm_module, "_BLOCK_BYTES", 8 * n * block_cols)
    edge_index = torch.randint(0, 35, (2, 150))  # targets 35..39 are empty
    x = torch.randn(n, f, requires_grad=True)
    compare(x, edge_index, None, "max", atol=1e-6)


@pytest.mark.parametrize("special", [float("inf"), float("-inf")])
def test_max_with_infinities_falls_back(special):
    x, edge_index = _max_case([1.0, special, 0.5])
    compare(x, edge_index, None, "max", atol=0.0)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_max_without_gradient(requires_grad):
    torch.manual_seed(4)
    edge_index = torch.randint(0, 20, (2, 80))
    x = torch.randn(20, 3, requires_grad=requires_grad)
    with torch.no_grad():
        out = aggregate(x, edge_index, reduce="max")
    torch.testing.assert_close(out, pyg_aggregate(x.detach(), edge_index, None, "max", 20))


# ------------------------------------------------------------------------------------------
# dispatch

@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_half_precision_uses_reference(reduce):
    torch.manual_seed(5)
    edge_index = torch.randint(0, 10, (2, 40))
    x = torch.randn(10, 4)
    out = aggregate(x.bfloat16(), edge_index, reduce=reduce)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), aggregate(x, edge_index, reduce=reduce),
                               atol=0.1, rtol=0.05)


def test_register_kernel_hook(monkeypatch):
    monkeypatch.setattr(spmm_module, "_KERNELS", dict(spmm_module._KERNELS))
    calls = []

    def kernel(x, csr, edge_weight):
        calls.append(csr)
        return x.new_full((csr.num_rows, x.size(1)), 7.0)

    register_kernel("cpu", "mean", kernel)
    assert select_kernel(torch.device("cpu"), "mean", torch.float32) is kernel
    out = aggregate(torch.randn(3, 2), torch.tensor([[0], [1]]), reduce="mean")
    assert torch.equal(out, torch.full((3, 2), 7.0)) and isinstance(calls[0], CSR)
    with pytest.raises(ValueError, match="reduce"):
        register_kernel("cuda", "min", kernel)


# ------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("edge_index, match", [
    (torch.zeros(3, 4, dtype=torch.long), "edge_index.*shape"),
    (torch.zeros(4, dtype=torch.long), "edge_index.*shape"),
    (torch.zeros(2, 4), "edge_index.*integer"),
    (torch.tensor([[0, 5], [1, 1]]), r"edge_index.*outside \[0, num_nodes=4\)"),
    (torch.tensor([[0, 1], [-1, 1]]), "edge_index.*outside"),
])
def test_bad_edge_index(edge_index, match):
    with pytest.raises(ValueError, match=match):
        aggregate(torch.randn(4, 2), edge_index)


@pytest.mark.parametrize("x", [torch.randn(4), torch.randn(4, 2, 3)])
def test_bad_x(x):
    with pytest.raises(ValueError, match="'x' must be 2-D"):
        aggregate(x, torch.tensor([[0], [1]]))


def test_bad_arguments():
    x, edge_index = torch.randn(4, 2), torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="'edge_weight' must have shape"):
        aggregate(x, edge_index, torch.ones(3))
    with pytest.raises(ValueError, match="'reduce' must be one of"):
        aggregate(x, edge_index, reduce="min")
    torch.testing.assert_close(aggregate(x, edge_index, reduce="add"), aggregate(x, edge_index))
    with pytest.raises(ValueError, match="'num_nodes'"):
        aggregate(x, edge_index, num_nodes=5)
    with pytest.raises(ValueError, match="'x' must be floating"):
        aggregate(x.long(), edge_index)
    with pytest.raises(ValueError, match="CSR over 3 nodes"):
        aggregate(x, to_csr(edge_index, 3))
    with pytest.raises(TypeError, match="'edge_index'"):
        aggregate(x, [[0, 1], [1, 2]])


# ------------------------------------------------------------------------------------------
# aggregate_linear: aggregation fused with the linear maps of a SAGE-like layer

def linear_reference(x, edge_index, weight, bias, edge_weight, reduce, x_root, weight_root):
    """The unfused definition, on PyG's gather-scatter aggregation."""
    out = torch.nn.functional.linear(
        pyg_aggregate(x, edge_index, edge_weight, reduce, x.size(0)), weight, bias)
    if weight_root is not None:
        out = out + (x if x_root is None else x_root) @ weight_root.t()
    return out


def compare_linear(x, edge_index, weight, bias=None, edge_weight=None, reduce="sum",
                   x_root=None, weight_root=None, atol=1e-5):
    """Outputs and gradients w.r.t. every input that requires grad."""
    args = (x, edge_index, weight, bias, edge_weight, reduce)
    out = aggregate_linear(*args, x_root=x_root, weight_root=weight_root)
    ref = linear_reference(*args, x_root, weight_root)
    torch.testing.assert_close(out, ref, atol=atol, rtol=atol)
    inputs = [t for t in (x, weight, bias, edge_weight, x_root, weight_root)
              if t is not None and t.requires_grad]
    if not inputs:
        return
    grad = torch.randn_like(ref)
    ours = torch.autograd.grad(out, inputs, grad, allow_unused=True)
    theirs = torch.autograd.grad(ref, inputs, grad, allow_unused=True)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        b = torch.zeros_like(inputs[i]) if b is None else b
        torch.testing.assert_close(a, b, atol=atol, rtol=atol, msg=f"grad of input {i}")


@settings(max_examples=60, deadline=None)
@given(graph=graphs(), reduce=st.sampled_from(REDUCTIONS), f_in=st.integers(1, 6),
       f_out=st.integers(1, 6), flags=st.tuples(*[st.booleans()] * 5))
def test_linear_matches_unfused(graph, reduce, f_in, f_out, flags):
    """Both orders (transform first or aggregate first) and every optional term."""
    edge_index, n, gen = graph
    x_grad, has_bias, has_root, separate_root, weighted = flags
    dtype = torch.float64
    x = torch.randn(n, f_in, generator=gen, dtype=dtype).requires_grad_(x_grad)
    weight = torch.randn(f_out, f_in, generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(f_out, generator=gen, dtype=dtype, requires_grad=True) if has_bias else None
    x_root = weight_root = edge_weight = None
    if has_root:
        f_root = f_in + 1 if separate_root else f_in
        weight_root = torch.randn(f_out, f_root, generator=gen, dtype=dtype, requires_grad=True)
        if separate_root:
            x_root = torch.randn(n, f_root, generator=gen, dtype=dtype, requires_grad=True)
    if weighted:  # without grad: the fused path; with grad: see the next test
        edge_weight = torch.rand(edge_index.size(1), generator=gen, dtype=dtype) + 0.1
    compare_linear(x, edge_index, weight, bias, edge_weight, reduce, x_root, weight_root,
                   atol=1e-10)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("f_in, f_out, x_grad", [(6, 2, True), (2, 6, True), (4, 4, True),
                                                 (6, 2, False), (4, 3, False)])
def test_linear_gradcheck(reduce, f_in, f_out, x_grad):
    """Covers both orders: transform first when it makes the sparse products narrower."""
    torch.manual_seed(7)
    edge_index = torch.tensor([[0, 1, 2, 2, 3, 3, 1, 1], [1, 2, 0, 1, 3, 1, 2, 2]])
    x = torch.randn(5, f_in, dtype=torch.float64, requires_grad=x_grad)  # node 4 is isolated
    params = [torch.randn(*shape, dtype=torch.float64, requires_grad=True)
              for shape in ((f_out, f_in), (f_out,), (f_out, f_in))]

    def fn(*tensors):
        xs, (w, b, wr) = (tensors[0], tensors[1:]) if x_grad else (x, tensors)
        return aggregate_linear(xs, edge_index, w, b, reduce=reduce, weight_root=wr)
    assert torch.autograd.gradcheck(fn, ([x] if x_grad else []) + params)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_linear_edge_weight_gradient(reduce):
    """Edge weights that require grad take the unfused path and get their gradient."""
    torch.manual_seed(8)
    edge_index = torch.randint(0, 8, (2, 30))
    x = torch.randn(8, 3, requires_grad=True)
    weight = torch.randn(2, 3, requires_grad=True)
    edge_weight = torch.rand(30, requires_grad=True)
    compare_linear(x, edge_index, weight, None, edge_weight, reduce,
                   weight_root=torch.randn(2, 3, requires_grad=True))


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_linear_zero_edges_and_no_grad(reduce):
    x = torch.randn(4, 3, requires_grad=True)
    weight, bias = torch.randn(2, 3, requires_grad=True), torch.randn(2)
    empty = torch.empty(2, 0, dtype=torch.long)
    compare_linear(x, empty, weight, bias, reduce=reduce, weight_root=torch.randn(2, 3))
    edge_index = torch.randint(0, 4, (2, 10))
    with torch.no_grad():
        out = aggregate_linear(x, edge_index, weight, bias, reduce=reduce)
    assert not out.requires_grad
    torch.testing.assert_close(out, linear_reference(x, edge_index, weight, bias, None, reduce,
                                                     None, None))


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_linear_rectangular_csr(reduce):
    """A CSR whose targets are the first rows of ``x`` (layer-wise sampled inference)."""
    torch.manual_seed(9)
    edge_index = torch.randint(0, 10, (2, 40))
    x = torch.randn(10, 3, requires_grad=True)
    weight, weight_root = torch.randn(4, 3), torch.randn(4, 3)
    full = aggregate_linear(x, edge_index, weight, reduce=reduce, weight_root=weight_root)
    csr = to_csr(edge_index, 10)
    keep = int(csr.rowptr[6])
    rows = CSR(csr.rowptr[:7], csr.col[:keep], csr.perm[:keep], 6, 10)
    out = aggregate_linear(x, rows, weight, reduce=reduce, weight_root=weight_root)
    torch.testing.assert_close(out, full[:6])
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.autograd.grad(full[:6].sum(), x)[0])


def test_linear_order_counts_the_gemm_of_unneeded_source_rows():
    """Square graphs: the SpMM widths decide (transform first when out <= in). A field with
    far fewer targets than sources aggregates first at equal widths: the GEMM then runs on the
    target rows only."""
    edge_index = torch.randint(0, 1000, (2, 10_000), generator=torch.Generator().manual_seed(0))
    square = to_csr(edge_index, 1000)
    keep = int(square.rowptr[300])
    field = CSR(square.rowptr[:301], square.col[:keep], square.perm[:keep], 300, 1000)
    shape = torch.Size([64, 64])
    assert spmm_module._transform_first(shape, False, False, square)
    assert not spmm_module._transform_first(shape, False, False, field)
    assert spmm_module._transform_first(torch.Size([8, 64]), False, False, field)
    assert not spmm_module._transform_first(torch.Size([128, 64]), True, True, square)


def test_linear_uses_registered_kernel(monkeypatch):
    """A custom kernel registered for the reduction is used (unfused), not bypassed."""
    monkeypatch.setattr(spmm_module, "_KERNELS", dict(spmm_module._KERNELS))
    register_kernel("cpu", "sum", lambda x, csr, w: x.new_ones(csr.num_rows, x.size(1)))
    out = aggregate_linear(torch.randn(3, 2), torch.tensor([[0], [1]]), torch.eye(2))
    assert torch.equal(out, torch.ones(3, 2))


def test_linear_bad_arguments():
    x, edge_index = torch.randn(4, 3), torch.tensor([[0, 1], [1, 2]])
    w = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"'weight' must have shape \[out_channels, 3\]"):
        aggregate_linear(x, edge_index, torch.randn(2, 4))
    with pytest.raises(ValueError, match="'weight' must be 2-D"):
        aggregate_linear(x, edge_index, torch.randn(3))
    with pytest.raises(ValueError, match=r"'bias' must have shape \[2\]"):
        aggregate_linear(x, edge_index, w, torch.randn(3))
    with pytest.raises(ValueError, match=r"'weight_root' must have shape \[2, 3\]"):
        aggregate_linear(x, edge_index, w, weight_root=torch.randn(3, 3))
    with pytest.raises(ValueError, match="'x_root' must have 4 rows"):
        aggregate_linear(x, edge_index, w, x_root=torch.randn(3, 3), weight_root=w)
    with pytest.raises(ValueError, match="'x_root' is given but 'weight_root' is None"):
        aggregate_linear(x, edge_index, w, x_root=x)
    with pytest.raises(ValueError, match="'weight' must have x's dtype"):
        aggregate_linear(x, edge_index, w.double())
    with pytest.raises(TypeError, match="'weight' must be a torch.Tensor"):
        aggregate_linear(x, edge_index, [[1.0, 2.0, 3.0]])
