r"""Message passing on a subset of a graph's targets, straight from the graph's cached CSR.

Conditional computation (Mowst's strong expert on the receptive field of the nodes routed to
it) needs a layer's outputs on some rows only, and the sources those rows read:

* :func:`aggregate_rows`: rows ``rows`` of :func:`~graphmoe.ops.aggregate`, reading only their
  in-edges, with the input rows optionally relabelled on the fly (``x_index``: the input holds
  only the rows that are read, e.g. the previous layer's output on a receptive field);
* :func:`sources_of`: the sources of the in-edges of some rows (one hop of a frontier
  expansion against the edge direction);
* :func:`row_positions`: the CSR positions of the in-edges of some rows.

On CPU the first two run in the compiled kernels of :mod:`graphmoe.ops.cpu_kernels`, which walk
the selected rows of the graph's own CSR arrays: no sub-CSR, no gathered edge arrays, and every
row summed with the same operations in the same order as the whole-graph product, so the rows
are bit-identical to ``aggregate(...)[rows]``. Elsewhere (no compiler, other devices, max, or a
gradient to compute) a sub-CSR of the rows' in-edges is gathered and aggregated by
:func:`~graphmoe.ops.aggregate` (differentiable; equal up to float rounding).
"""
from __future__ import annotations

import torch
from torch import Tensor

from graphmoe.ops import cpu_kernels
from graphmoe.ops.aggregate import (
    _check_edge_weight,
    _check_x,
    _detached,
    aggregate,
    check_self_weight,
)
from graphmoe.ops.csr import CSR, to_csr
from graphmoe.ops.spmm import REDUCTIONS, _adjacency, _csr_values

__all__ = ["aggregate_rows", "sources_of", "row_positions", "ragged_arange"]


def ragged_arange(starts: Tensor, counts: Tensor, total: int | None = None) -> Tensor:
    """The ranges ``starts[i] .. starts[i] + counts[i] - 1``, concatenated (``total``: their
    summed length, if known)."""
    total = int(counts.sum()) if total is None else total
    if total == 0:
        return starts.new_empty(0)
    ends = torch.cumsum(counts, 0)
    shift = torch.repeat_interleave(starts - (ends - counts), counts, output_size=total)
    return shift.add_(torch.arange(total, device=starts.device))


def row_positions(csr: CSR, rows: Tensor) -> Tensor:
    """Positions in ``csr`` of the entries (in-edges) of ``rows``, row after row in CSR order."""
    return ragged_arange(csr.rowptr.index_select(0, rows), csr.deg.index_select(0, rows))


def _check_rows(rows: Tensor, csr: CSR) -> Tensor:
    if (not isinstance(rows, Tensor) or rows.dim() != 1 or rows.dtype == torch.bool
            or rows.is_floating_point()):
        raise ValueError(f"'rows' must be a 1-D tensor of integer row ids, got "
                         f"{getattr(rows, 'dtype', type(rows).__name__)} "
                         f"{list(getattr(rows, 'shape', []))}")
    if rows.device != csr.device:
        raise ValueError(f"'rows' is on {rows.device} but the graph is on {csr.device}")
    rows = rows.long().contiguous()
    if rows.numel():
        low, high = (int(v) for v in torch.aminmax(rows))
        if low < 0 or high >= csr.num_rows:
            raise IndexError(f"'rows' holds ids outside [0, {csr.num_rows}): min {low}, "
                             f"max {high}")
    return rows


def sources_of(csr: CSR, rows: Tensor) -> Tensor:
    """Bool mask ``[csr.num_cols]``: the sources of the in-edges of ``rows`` (row ids)."""
    rows = _check_rows(rows, csr)
    if csr.device.type == "cpu":
        mask = cpu_kernels.mark_columns(csr.rowptr, csr.col, rows, csr.num_cols)
        if mask is not None:
            return mask
    mask = torch.zeros(csr.num_cols, dtype=torch.bool, device=csr.device)
    mask[csr.col.index_select(0, row_positions(csr, rows))] = True
    return mask


def aggregate_rows(
    x: Tensor,
    edge_index: Tensor | CSR,
    rows: Tensor,
    edge_weight: Tensor | None = None,
    reduce: str = "sum",
    x_index: Tensor | None = None,
    num_nodes: int | None = None,
    *,
    self_weight: Tensor | None = None,
) -> Tensor:
    r"""Rows ``rows`` of :func:`~graphmoe.ops.aggregate`, reading only their in-edges:

    .. math::
        \mathbf{o}_k = \bigoplus_{j \to r_k} w_{j r_k} \cdot \mathbf{x}_{\pi(j)},
        \qquad k = 0, \dots, |\texttt{rows}| - 1,

    with :math:`\pi(j)` = ``x_index[j]`` (or :math:`j`) and the mean taken over the full
    in-degree of :math:`r_k`. Without ``x_index``, ``x`` has one row per node; with it, ``x``
    may hold only the rows that are read (``x_index`` has one entry per node, and only the
    entries of the sources of the selected rows' in-edges are read: the others may hold
    anything). ``edge_weight`` is in ``edge_index`` order and ``self_weight`` (sum only, one
    entry per node) adds :math:`s_{r_k} \mathbf{x}_{\pi(r_k)}`, as for
    :func:`~graphmoe.ops.aggregate`; ``rows`` may repeat ids.

    For sum and mean on CPU without a gradient to compute, equal bit for bit to
    ``aggregate(x[x_index], edge_index, edge_weight, reduce)[rows]``.

    :rtype: :class:`torch.Tensor` of shape ``[len(rows), F]``
    """
    csr, rows, edge_weight, reduce, x_index, self_weight = _prepare_rows(
        x, edge_index, rows, edge_weight, reduce, x_index, num_nodes, self_weight)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, edge_weight, self_weight))
    if reduce != "max" and csr.device.type == "cpu" and not needs_grad:
        adj = _adjacency(csr, _detached(edge_weight), x.dtype, reduce == "mean")
        out = cpu_kernels.spmm_sum_rows(adj, x.detach(), rows, x_index, _detached(self_weight))
        if out is not None:
            return out
    out = _aggregate_rows_gathered(x, csr, rows, edge_weight, reduce, x_index)
    if self_weight is None:
        return out
    own = rows if x_index is None else x_index.index_select(0, rows)
    return out.add_(self_weight.index_select(0, rows).unsqueeze(-1) * x.index_select(0, own))


def _prepare_rows(x: Tensor, edge_index: Tensor | CSR, rows: Tensor, edge_weight: Tensor | None,
                  reduce: str, x_index: Tensor | None, num_nodes: int | None,
                  self_weight: Tensor | None) -> tuple:
    """The validated arguments of :func:`aggregate_rows`, the graph as a :class:`CSR`."""
    _check_x(x)
    if x.layout != torch.strided:
        raise ValueError(f"'aggregate_rows' needs dense features, got x.layout={x.layout}")
    reduce = "sum" if reduce == "add" else reduce
    if reduce not in REDUCTIONS:
        raise ValueError(f"'reduce' must be one of {REDUCTIONS}, got {reduce!r}")
    if isinstance(edge_index, CSR):
        csr = edge_index
    else:
        default = x.size(0) if x_index is None else x_index.numel()
        csr = to_csr(edge_index, default if num_nodes is None else num_nodes)
    if csr.device != x.device:
        raise ValueError(f"the graph is on {csr.device} but 'x' is on {x.device}")
    if x_index is None and csr.num_cols != x.size(0):
        raise ValueError(f"the graph has {csr.num_cols} source nodes but 'x' has {x.size(0)} "
                         f"rows: pass x_index to map nodes to rows of x")
    if x_index is not None:
        x_index = _check_index(x_index, csr)
    if edge_weight is not None:
        edge_weight = _check_edge_weight(edge_weight, csr.num_edges, x)
    if self_weight is not None:
        self_weight = check_self_weight(self_weight, csr, x, reduce)
    rows = _check_rows(rows, csr)
    return csr, rows, edge_weight, reduce, x_index, self_weight


def _aggregate_rows_gathered(x: Tensor, csr: CSR, rows: Tensor, edge_weight: Tensor | None,
                             reduce: str, x_index: Tensor | None) -> Tensor:
    """:func:`aggregate_rows` through a gathered sub-CSR and :func:`aggregate`."""
    deg = csr.deg.index_select(0, rows)
    positions = ragged_arange(csr.rowptr.index_select(0, rows), deg)
    col = csr.col.index_select(0, positions)
    if x_index is not None:
        col = x_index.index_select(0, col)
    rowptr = torch.zeros(rows.numel() + 1, dtype=torch.long, device=x.device)
    torch.cumsum(deg, 0, out=rowptr[1:])
    sub = CSR.from_arrays(rowptr, col, x.size(0))  # validates the relabelled sources
    if reduce == "max":
        weight = None if edge_weight is None else edge_weight.index_select(
            0, csr.perm.index_select(0, positions))
        return aggregate(x, sub, weight, "max")
    values = _csr_values(csr, edge_weight, x.dtype, reduce == "mean")
    return aggregate(x, sub, values.index_select(0, positions), "sum")


def _check_index(x_index: Tensor, csr: CSR) -> Tensor:
    if (not isinstance(x_index, Tensor) or x_index.dim() != 1 or x_index.is_floating_point()
            or x_index.dtype == torch.bool or x_index.numel() != csr.num_cols):
        raise ValueError(f"'x_index' must be a 1-D integer tensor with one entry per node "
                         f"({csr.num_cols}), got {getattr(x_index, 'dtype', type(x_index))} "
                         f"{list(getattr(x_index, 'shape', []))}")
    if x_index.device != csr.device:
        raise ValueError(f"'x_index' is on {x_index.device} but the graph is on {csr.device}")
    return x_index.long().contiguous()
