r"""Fast kernels: CSR message passing and sorted expert dispatch.

:func:`aggregate` computes :math:`\mathbf{o}_i = \bigoplus_{j \to i} w_{ji}\mathbf{x}_j`
(sum, mean, max) over a CSR built once per ``edge_index`` (:func:`to_csr`), with autograd
w.r.t. ``x`` and ``edge_weight``; on CPU the products run in a C++ kernel built on first use
(:mod:`graphmoe.ops.cpu_kernels`, ATen's kernels where it cannot be built);
:func:`aggregate_rows` computes the rows of some targets only, straight from the graph's CSR
(conditional computation), and :func:`sources_of` marks the sources they read. :func:`expert_ffn` runs routed expert FFNs by sorting the
(node, expert) pairs by expert and computing each expert on its contiguous segment; on CUDA a
Triton kernel (``graphmoe.ops.triton``, imported lazily) gathers and scatters rows in place.
:func:`row_softmax`, :func:`row_log_softmax` and :func:`row_variance` are the row-wise maps of
class scores, fast for the few columns where ATen's kernels take a scalar path; :func:`dropout`
draws its mask from uniform numbers on CPU (ATen's ``bernoulli_`` is ~3x slower there).
``graphmoe.ops`` imports nothing else from graphmoe.
"""
from graphmoe.ops.aggregate import aggregate, aggregate_linear
from graphmoe.ops.csr import (
    CSR,
    clear_csr_cache,
    csr_cache_info,
    has_csr,
    register_csr,
    to_csr,
)
from graphmoe.ops.dispatch import (
    DispatchPlan,
    combine_rows,
    expert_ffn,
    gather_rows,
    grouped_linear,
    plan_dispatch,
)
from graphmoe.ops.dropout import dropout
from graphmoe.ops.row_subset import aggregate_rows, sources_of
from graphmoe.ops.rowwise import row_log_softmax, row_softmax, row_variance
from graphmoe.ops.spmm import register_kernel, select_kernel

__all__ = [
    "CSR",
    "to_csr",
    "register_csr",
    "has_csr",
    "aggregate",
    "aggregate_linear",
    "aggregate_rows",
    "sources_of",
    "clear_csr_cache",
    "csr_cache_info",
    "register_kernel",
    "select_kernel",
    "DispatchPlan",
    "plan_dispatch",
    "gather_rows",
    "grouped_linear",
    "combine_rows",
    "expert_ffn",
    "row_softmax",
    "row_log_softmax",
    "row_variance",
    "dropout",
]
