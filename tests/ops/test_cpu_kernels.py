"""The compiled CPU SpMM (graphmoe/ops/csrc) against dense products and ATen's kernel."""
from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch

from graphmoe.ops import aggregate, cpu_kernels, spmm

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")


def random_csr(num_rows: int, num_cols: int, num_entries: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    index = torch.stack([torch.randint(0, num_rows, (num_entries,), generator=generator),
                         torch.randint(0, num_cols, (num_entries,), generator=generator)])
    values = torch.rand(num_entries, generator=generator, dtype=dtype)
    return torch.sparse_coo_tensor(index, values, (num_rows, num_cols)).coalesce().to_sparse_csr()


def test_the_kernel_is_built_where_a_compiler_exists():
    """CI machines have a C++ compiler and the `ninja` wheel: the build must work there (a
    silent fallback would hide a missing install step behind slower numbers)."""
    if os.environ.get("GRAPHMOE_CPU_KERNELS") == "0":
        pytest.skip("disabled by GRAPHMOE_CPU_KERNELS=0")
    if not any(shutil.which(compiler) for compiler in (os.environ.get("CXX", "c++"), "g++", "clang++")):
        pytest.skip("no C++ compiler on this machine: graphmoe runs ATen's kernels")
    assert cpu_kernels.available()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [1, 7, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("threads", [1, 2])
def test_equals_the_dense_product(dtype, width, threads):
    if not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    adj = random_csr(300, 250, 3000, dtype)  # ~1 in 20 rows empty
    x = torch.randn(250, width, dtype=dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = cpu_kernels.spmm_sum(adj, x)
    finally:
        torch.set_num_threads(previous)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, adj.to_dense() @ x, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(out, spmm._spmm_aten(adj, x), atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("threads", [1, 2])
def test_row_subset_over_many_rows_and_bad_rows(threads):
    """Rows of the product straight from the kernel, for a selection long enough that its row
    starts are gathered by several threads (with repeats and unsorted ids), and a row id
    outside the CSR refused (the kernel checks it itself, not only the Python wrapper)."""
    if not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    adj = random_csr(5000, 5000, 60000, torch.float32, seed=3)
    x = torch.randn(5000, 5)
    rows = torch.randint(0, 5000, (40000,), generator=torch.Generator().manual_seed(4))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = cpu_kernels.spmm_sum_rows(adj, x, rows, None)
        bad = rows.clone()
        bad[30000] = 5000
        with pytest.raises(RuntimeError, match="outside"):
            cpu_kernels.spmm_sum_rows(adj, x, bad, None)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(out, cpu_kernels.spmm_sum(adj, x)[rows])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("width", [3, 64, 100])
def test_max_and_its_sources(dtype, width):
    if not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    adj = random_csr(300, 250, 3000, dtype, seed=2)
    x = torch.randn(250, width, dtype=dtype)
    out, source_t = cpu_kernels.spmm_max(adj, x, with_source=True)
    torch.testing.assert_close(out, torch.ops.aten._sparse_mm_reduce_impl(adj, x, "amax")[0])
    dense, source = adj.to_dense(), source_t.t().long()
    rows = torch.arange(300).unsqueeze(1)
    has_entries = adj.crow_indices().diff() > 0
    assert (dense[rows, source] != 0)[has_entries].all()  # every source is an entry of its row
    picked = dense[rows, source] * x[source, torch.arange(width)]
    torch.testing.assert_close(picked[has_entries], out[has_entries])
    assert (out[~has_entries] == 0).all() and (source[~has_entries] == 0).all()
    x[7, 0] = float("nan")  # a NaN source makes the maximum NaN, as torch.amax does
    out, _ = cpu_kernels.spmm_max(adj, x, with_source=False)
    targets = adj.to_dense()[:, 7] != 0
    assert out[targets, 0].isnan().all() and not out[~targets, 0].isnan().any()


def test_int32_indices_no_entries_and_strided_x():
    if not cpu_kernels.available():
        pytest.skip("no compiled kernel here")
    adj = random_csr(40, 30, 200, torch.float32)
    adj32 = torch.sparse_csr_tensor(adj.crow_indices().int(), adj.col_indices().int(),
                                    adj.values(), adj.shape)
    x = torch.randn(16, 30).t()  # not contiguous
    torch.testing.assert_close(cpu_kernels.spmm_sum(adj32, x), adj.to_dense() @ x)
    empty = torch.sparse_csr_tensor(torch.zeros(6, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                                    torch.zeros(0), (5, 30))
    assert torch.equal(cpu_kernels.spmm_sum(empty, x), torch.zeros(5, 16))


def test_a_graph_first_seen_in_inference_mode_trains_afterwards():
    """`trainer.test` / `predict` run under `torch.inference_mode`: the CSR cached there must
    serve later training steps (the outputs are ordinary tensors, gradients flow)."""
    edge_index = torch.randint(0, 50, (2, 300), generator=torch.Generator().manual_seed(3))
    x = torch.randn(50, 8)
    with torch.inference_mode():
        expected = {reduce: aggregate(x, edge_index, reduce=reduce) for reduce in ("sum", "max")}
    x.requires_grad_()
    for reduce in ("sum", "max"):
        out = aggregate(x, edge_index, reduce=reduce)
        assert not out.is_inference()
        torch.testing.assert_close(out.detach(), expected[reduce].clone())
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert torch.isfinite(grad).all()


def test_other_dtypes_decline():
    adj = random_csr(10, 10, 30, torch.float32).to(torch.bfloat16)
    assert cpu_kernels.spmm_sum(adj, torch.randn(10, 4, dtype=torch.bfloat16)) is None


def test_without_the_kernel_aggregation_falls_back_to_the_same_result(monkeypatch):
    """A machine without a compiler gets ATen's kernel: same values and gradients."""
    edge_index = torch.randint(0, 200, (2, 2000), generator=torch.Generator().manual_seed(1))
    x = torch.randn(200, 24, requires_grad=True)
    weight = torch.rand(2000, requires_grad=True)
    results = []
    for build in (cpu_kernels.load, lambda: None):
        monkeypatch.setattr(cpu_kernels, "load", build)
        for reduce in ("sum", "mean"):
            out = aggregate(x, edge_index, reduce=reduce, edge_weight=weight)
            grads = torch.autograd.grad(out.pow(2).sum(), (x, weight))
            results.append((out.detach(), *grads))
        out = aggregate(x, edge_index, reduce="max")  # the arg-max path (x needs a gradient)
        results.append((out.detach(), *torch.autograd.grad(out.pow(2).sum(), x)))
        with torch.no_grad():
            results.append((aggregate(x, edge_index, reduce="max"),))
    for compiled, fallback in zip(results[:4], results[4:]):
        for a, b in zip(compiled, fallback):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    import torch.utils.cpp_extension as cpp_extension

    def broken(**kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions\nmore detail")

    monkeypatch.setattr(cpp_extension, "load", broken)
    cpu_kernels.load.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cpu_kernels.load() is None and cpu_kernels.load() is None
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1 and "Ninja is required" in messages[0]
        assert "\n" not in messages[0]
        adj = random_csr(10, 10, 30, torch.float32)
        assert cpu_kernels.spmm_sum(adj, torch.randn(10, 3)) is None
    finally:
        cpu_kernels.load.cache_clear()
