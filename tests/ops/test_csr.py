"""CSR construction and its per-graph cache."""
from __future__ import annotations

import gc

import pytest
import torch

from graphmoe.ops import CSR, aggregate, clear_csr_cache, csr_cache_info, register_csr, to_csr
from graphmoe.ops.csr import CACHE_SIZE


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_csr_cache()
    yield
    clear_csr_cache()


def dense(csr, transpose=False):
    """Dense adjacency (counting duplicates) rebuilt from the CSR (or its transpose)."""
    if transpose:
        rowptr, col, _ = csr.transpose()
        shape = (csr.num_cols, csr.num_rows)
    else:
        rowptr, col, shape = csr.rowptr, csr.col, (csr.num_rows, csr.num_cols)
    out = torch.zeros(shape, dtype=torch.long)
    row = torch.repeat_interleave(torch.arange(shape[0]), rowptr.diff())
    out.index_put_((row, col), torch.ones_like(col), accumulate=True)
    return out


def test_layout_and_transpose():
    edge_index = torch.tensor([[0, 2, 1, 2, 2, 3], [1, 1, 0, 1, 3, 3]])  # duplicate, self-loop
    csr = to_csr(edge_index, num_nodes=5)
    expected = torch.zeros(5, 5, dtype=torch.long)
    for j, i in edge_index.t().tolist():
        expected[i, j] += 1  # row = target
    assert torch.equal(dense(csr), expected)
    assert torch.equal(dense(csr, transpose=True), expected.t())
    assert torch.equal(edge_index[0, csr.perm], csr.col)  # perm maps CSR -> edge order
    assert torch.equal(edge_index[1, csr.perm], csr.row)
    _, _, perm_t = csr.transpose()
    assert torch.equal(csr.row[perm_t], csr.transpose()[1])
    assert csr.num_edges == 6 and csr.has_empty_rows
    rowptr_u, col_u, inverse = csr.coalesced()
    assert col_u.numel() == 5 and torch.equal(col_u[inverse], csr.col)


def test_num_nodes_defaults_to_max_index():
    csr = to_csr(torch.tensor([[0, 4], [1, 2]]))
    assert csr.num_rows == csr.num_cols == 5
    assert to_csr(torch.empty(2, 0, dtype=torch.long)).num_rows == 0


def test_cache_hit_and_miss():
    edge_index = torch.randint(0, 10, (2, 30))
    first = to_csr(edge_index, 10)
    assert to_csr(edge_index, 10) is first
    assert csr_cache_info()["hits"] == 1 and csr_cache_info()["misses"] == 1
    assert to_csr(edge_index, 12) is not first  # num_nodes is part of the key
    assert to_csr(edge_index.clone(), 10) is not first  # identity, not content
    x = torch.randn(10, 3)
    aggregate(x, edge_index)
    aggregate(x, edge_index, reduce="max")
    assert csr_cache_info()["hits"] == 3


def test_in_place_change_invalidates():
    edge_index = torch.tensor([[0, 1], [1, 2]])
    x = torch.eye(3)
    before = aggregate(x, edge_index)
    edge_index[0, 0] = 2  # now 2 -> 1
    after = aggregate(x, edge_index)
    assert not torch.equal(before, after)
    assert torch.equal(after, aggregate(x, edge_index.clone()))


def test_in_place_change_of_base_invalidates_view():
    base = torch.tensor([[0, 1, 0], [1, 2, 0]])
    view = base[:, :2]
    csr = to_csr(view, 3)
    base[0, 0] = 2  # views share the version counter with their base
    assert to_csr(view, 3) is not csr
    assert torch.equal(to_csr(view, 3).col, torch.tensor([2, 1]))  # edges 2 -> 1, 1 -> 2


def test_recycled_id_never_hits():
    """A new tensor at the address of a freed one must not get the freed one's CSR."""
    reused = 0
    for step in range(20):
        old = torch.tensor([[0], [1]])
        old_id = id(old)
        to_csr(old, 3)
        del old
        gc.collect()
        new = torch.tensor([[2], [0]])
        reused += id(new) == old_id
        assert torch.equal(to_csr(new, 3).col, torch.tensor([2])), f"stale CSR at step {step}"
    assert csr_cache_info()["size"] <= 2  # entries of freed tensors are dropped


def test_cache_is_bounded():
    graphs = [torch.randint(0, 5, (2, 4)) for _ in range(CACHE_SIZE + 5)]
    csrs = [to_csr(g, 5) for g in graphs]
    assert csr_cache_info()["size"] == CACHE_SIZE
    assert to_csr(graphs[-1], 5) is csrs[-1]  # the most recent ones stay
    assert to_csr(graphs[0], 5) is not csrs[0]  # the oldest was evicted


def test_values_and_sparse_views():
    csr = to_csr(torch.tensor([[0, 1, 2], [1, 1, 0]]), 3)
    torch.testing.assert_close(csr.values(torch.float64, "mean"),
                               torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64))
    adj = csr.sparse(csr.values(torch.float32))
    assert adj.layout == torch.sparse_csr and adj.shape == (3, 3)
    torch.testing.assert_close(adj.to_dense().t(),
                               csr.sparse(csr.values(torch.float32, "ones_t"), True).to_dense())


def test_inference_mode_tensors():
    """Inference tensors have no version counter; they are cached all the same."""
    with torch.inference_mode():
        edge_index = torch.tensor([[0, 1], [1, 2]])
        x = torch.randn(3, 2)
        out = aggregate(x, edge_index, reduce="max")
        assert to_csr(edge_index, 3) is to_csr(edge_index, 3)
    torch.testing.assert_close(out[2], x[1])


# -- CSR.from_arrays / register_csr (public API for precomputed CSRs) ------------------------


def test_from_arrays_defaults_and_square_round_trip():
    edge_index = torch.tensor([[0, 2, 1, 2, 2, 3], [1, 1, 0, 1, 3, 3]])
    built = to_csr(edge_index, 5)
    csr = CSR.from_arrays(built.rowptr.int(), built.col.int())  # int32 accepted, made long
    assert csr.num_rows == csr.num_cols == 5 and csr.num_edges == 6
    assert csr.rowptr.dtype == csr.col.dtype == torch.long
    assert torch.equal(csr.perm, torch.arange(6))  # identity: weights in CSR order
    assert torch.equal(dense(csr), dense(built))
    x, w = torch.randn(5, 3), torch.rand(6)
    for reduce in ("sum", "mean", "max"):
        torch.testing.assert_close(aggregate(x, csr, w[built.perm], reduce),
                                   aggregate(x, edge_index, w, reduce))


def test_rectangular_csr_aggregates_its_rows_any_column_order():
    """Targets = a prefix of the sources (layer-wise message passing): out has num_rows rows;
    columns inside a row need not be sorted, duplicates need not be adjacent."""
    rowptr = torch.tensor([0, 3, 3, 6])
    col = torch.tensor([4, 1, 2, 0, 4, 0])
    csr = CSR.from_arrays(rowptr, col, num_cols=5)
    assert (csr.num_rows, csr.num_cols) == (3, 5)
    adj = torch.zeros(3, 5, dtype=torch.float64)
    w = torch.rand(6, dtype=torch.float64, requires_grad=True)
    row = torch.repeat_interleave(torch.arange(3), rowptr.diff())
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    for reduce in ("sum", "mean", "max"):
        out = aggregate(x, csr, w, reduce)
        assert out.shape == (3, 4)
        msg = x[col] * w.unsqueeze(-1)
        if reduce == "max":
            ref = torch.stack([msg[row == i].amax(0) if (row == i).any() else x.new_zeros(4)
                               for i in range(3)])
        else:
            ref = adj.new_zeros(3, 4).index_add(0, row, msg)
            if reduce == "mean":
                ref = ref / rowptr.diff().clamp(min=1).unsqueeze(-1)
        torch.testing.assert_close(out, ref)
        g = torch.randn(3, 4, dtype=torch.float64)
        for got, exp in zip(torch.autograd.grad(out, (x, w), g), torch.autograd.grad(ref, (x, w), g)):
            torch.testing.assert_close(got, exp)


def test_from_arrays_rejects_bad_arrays():
    rowptr, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    with pytest.raises(TypeError, match="'col'"):
        CSR.from_arrays(rowptr, col.float())
    with pytest.raises(ValueError, match="'rowptr' must start at 0 and end"):
        CSR.from_arrays(torch.tensor([0, 1, 3]), col)
    with pytest.raises(ValueError, match="non-decreasing"):
        CSR.from_arrays(torch.tensor([0, 2, 1, 2]), col)
    with pytest.raises(ValueError, match=r"'col' holds indices in \[0, 1\], outside"):
        CSR.from_arrays(rowptr, col, num_cols=1)
    with pytest.raises(ValueError, match="'perm'"):
        CSR.from_arrays(rowptr, col, perm=torch.tensor([0]))
    with pytest.raises(ValueError, match="num_cols"):
        CSR.from_arrays(rowptr, col, num_cols=-1)
    csr = CSR.from_arrays(rowptr, col, num_cols=1, validate=False)  # the caller's word
    assert csr.num_cols == 1
    with pytest.raises(ValueError, match="CSR over 3 nodes"):
        aggregate(torch.randn(2, 3), CSR.from_arrays(rowptr, col, num_cols=3))


def test_register_csr_is_returned_by_to_csr():
    edge_index = torch.tensor([[1, 2, 0, 0], [0, 0, 1, 2]])  # already in CSR order
    csr = CSR.from_arrays(torch.tensor([0, 2, 3, 4]), edge_index[0].clone())
    assert register_csr(edge_index, csr) is csr
    assert to_csr(edge_index, 3) is csr
    assert csr_cache_info()["misses"] == 0
    x = torch.randn(3, 2)
    torch.testing.assert_close(aggregate(x, edge_index), aggregate(x, edge_index.clone()))
    edge_index[0, 0] = 2  # an in-place change still invalidates a registered entry
    assert to_csr(edge_index, 3) is not csr


def test_register_csr_rejects_mismatches():
    edge_index = torch.tensor([[1, 2, 0], [0, 0, 1]])
    good = CSR.from_arrays(torch.tensor([0, 2, 3, 3]), torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="does not match"):
        register_csr(edge_index, CSR.from_arrays(good.rowptr, torch.tensor([2, 1, 0])))
    with pytest.raises(ValueError, match="square"):
        register_csr(edge_index, CSR.from_arrays(good.rowptr, good.col, num_cols=4))
    with pytest.raises(ValueError, match="edges"):
        register_csr(edge_index[:, :2], good)
    with pytest.raises(TypeError, match="'csr'"):
        register_csr(edge_index, (good.rowptr, good.col))
    assert register_csr(edge_index, good) is good and to_csr(edge_index, 3) is good


# -- derived data cached on the graph --------------------------------------------------------


def test_cached_computes_once_per_key():
    csr = to_csr(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
    calls = []
    first = csr.cached("norm", lambda: calls.append(1) or torch.ones(3))
    assert csr.cached("norm", lambda: calls.append(1) or torch.zeros(3)) is first
    assert csr.cached("other", lambda: torch.zeros(3)).sum() == 0
    assert len(calls) == 1


def test_cached_inference_tensors_are_recomputed_for_autograd():
    csr = to_csr(torch.tensor([[0, 1], [1, 0]]), 2)
    with torch.inference_mode():
        inside = csr.cached("w", lambda: (torch.ones(2), None))
        assert csr.cached("w", lambda: (torch.zeros(2), None)) is inside
    outside = csr.cached("w", lambda: (torch.full((2,), 2.0), None))
    assert not outside[0].is_inference() and outside[0][0] == 2.0


def test_fixed_edge_weights_are_permuted_once_and_invalidated_by_edits():
    edge_index = torch.tensor([[2, 0, 1, 2], [0, 1, 2, 1]])
    x = torch.randn(3, 4, requires_grad=True)
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0])
    csr = to_csr(edge_index, 3)
    reference = torch.zeros(3, 4).index_add(0, edge_index[1], weight[:, None] * x[edge_index[0]])
    first = aggregate(x, edge_index, weight)
    kept = [v for k, v in csr._cache.items() if k[0] == "weighted"]
    torch.testing.assert_close(first, reference)
    first.sum().backward()  # the transposed values are kept too
    torch.testing.assert_close(x.grad, torch.zeros(3).index_add(0, edge_index[0], weight)[:, None]
                               .expand(3, 4))
    assert aggregate(x, edge_index, weight) is not None
    assert [v for k, v in csr._cache.items() if k[0] == "weighted"][0] is kept[0]
    weight.mul_(2.0)  # an in-place edit: the kept values are stale
    torch.testing.assert_close(aggregate(x, edge_index, weight), 2 * reference)
    learned = weight.clone().requires_grad_()  # a learned weight is never kept
    out = aggregate(x, edge_index, learned)
    (grad,) = torch.autograd.grad(out.sum(), learned)
    assert grad.shape == learned.shape
