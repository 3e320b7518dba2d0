r"""Fast kernels: CSR message passing and (later) sorted expert dispatch.

:func:`aggregate` computes :math:`\mathbf{o}_i = \bigoplus_{j \to i} w_{ji}\mathbf{x}_j`
(sum, mean, max) over a CSR built once per ``edge_index`` (:func:`to_csr`), with autograd
w.r.t. ``x`` and ``edge_weight``.  ``graphmoe.ops`` imports nothing else from graphmoe.
"""
from graphmoe.ops.aggregate import aggregate
from graphmoe.ops.csr import CSR, clear_csr_cache, csr_cache_info, to_csr
from graphmoe.ops.spmm import register_kernel, select_kernel

__all__ = [
    "CSR",
    "to_csr",
    "aggregate",
    "clear_csr_cache",
    "csr_cache_info",
    "register_kernel",
    "select_kernel",
]
