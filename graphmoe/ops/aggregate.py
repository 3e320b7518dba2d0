r"""Neighbourhood aggregation :math:`\mathbf{o}_i = \bigoplus_{j \to i} w_{ji} \mathbf{x}_j`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graphmoe.ops.csr import CSR, to_csr
from graphmoe.ops.spmm import REDUCTIONS, select_kernel, select_linear_kernel, spmm_sum_self

__all__ = ["aggregate", "aggregate_linear", "select_rows", "head_rows"]


def aggregate(
    x: Tensor,
    edge_index: Tensor | CSR,
    edge_weight: Tensor | None = None,
    reduce: str = "sum",
    num_nodes: int | None = None,
    *,
    self_weight: Tensor | None = None,
) -> Tensor:
    r"""Aggregates source features into targets along ``edge_index`` (PyG's
    ``source_to_target`` flow):

    .. math::
        \mathbf{o}_i = \bigoplus_{j \in \mathcal{N}(i)} w_{ji} \cdot \mathbf{x}_j,
        \qquad \bigoplus \in \{\textstyle\sum, \operatorname{mean}, \max\},

    where :math:`\mathcal{N}(i)` are the sources of the edges :math:`j \to i`
    (``edge_index[0]`` = :math:`j`, ``edge_index[1]`` = :math:`i`), duplicate edges counted
    as often as they occur, :math:`w_{ji} = 1` without ``edge_weight``, mean divides by the
    in-degree and max is taken per feature.  Targets without in-edges get :math:`\mathbf{0}`.

    The result is differentiable w.r.t. :obj:`x` and :obj:`edge_weight` (once; for max,
    the gradient of each :math:`o_{if}` goes to a single arg-max edge, where PyG's scatter
    splits it evenly among exact ties).  The CSR of ``edge_index`` and its transpose are
    built on first use and cached per tensor (see :func:`~graphmoe.ops.to_csr`), so pass the
    same ``edge_index`` object across calls and do not rebuild it (e.g. with
    ``add_self_loops``) in every forward.

    Args:
        x (torch.Tensor): Node features of shape ``[num_nodes, F]``.
        edge_index (torch.Tensor or CSR): Integer edge indices ``[2, E]``, or a :class:`CSR`
            from :func:`~graphmoe.ops.to_csr`.
        edge_weight (torch.Tensor, optional): Weights ``[E]`` in ``edge_index`` order.
        reduce (str, optional): ``"sum"`` (or PyG's ``"add"``), ``"mean"`` or ``"max"``.
            (default: ``"sum"``)
        num_nodes (int, optional): Number of nodes; defaults to ``x.size(0)`` and must equal
            it.
        self_weight (torch.Tensor, optional): For ``reduce="sum"``: adds
            :math:`s_i \mathbf{x}_i` to every :math:`\mathbf{o}_i` (``[num_nodes]``; a
            self-loop term such as GCN's, without adding self-loop edges). Without a gradient to
            compute it is fused into the compiled CPU kernel.

    :rtype: :class:`torch.Tensor` of shape ``[num_nodes, F]``
    """
    reduce, csr, edge_weight = _prepare(x, edge_index, edge_weight, reduce, num_nodes)
    if x.layout != torch.strided:
        raise ValueError(f"'aggregate' needs dense features, got x.layout={x.layout}: transform "
                         f"sparse features first (F.linear, or aggregate_linear)")
    if self_weight is not None:
        self_weight = check_self_weight(self_weight, csr, x, reduce)
    if not torch.is_grad_enabled():
        # Autograd functions see `requires_grad` even under `no_grad`: detach so that the
        # kernels skip the work done only for backward (arg-max, saved tensors).
        x, edge_weight, self_weight = x.detach(), _detached(edge_weight), _detached(self_weight)
    x = x.contiguous()
    if self_weight is None:
        return select_kernel(x.device, reduce, x.dtype)(x, csr, edge_weight)
    fused = spmm_sum_self(x, csr, edge_weight, self_weight)
    if fused is not None:
        return fused
    out = select_kernel(x.device, reduce, x.dtype)(x, csr, edge_weight)
    return out.add_(self_weight.unsqueeze(-1) * x)  # in place: no second [N, F] buffer


def aggregate_linear(
    x: Tensor,
    edge_index: Tensor | CSR,
    weight: Tensor,
    bias: Tensor | None = None,
    edge_weight: Tensor | None = None,
    reduce: str = "sum",
    *,
    x_root: Tensor | None = None,
    weight_root: Tensor | None = None,
    num_nodes: int | None = None,
) -> Tensor:
    r"""Aggregates and applies the linear maps of a GraphSAGE-style layer in one operation:

    .. math::
        \mathbf{o}_i = \mathbf{W} \bigoplus_{j \in \mathcal{N}(i)} w_{ji} \cdot \mathbf{x}_j
        + \mathbf{b} + \mathbf{W}_{\mathrm{root}} \mathbf{r}_i,

    with :math:`\bigoplus` and :math:`\mathcal{N}(i)` as in :func:`aggregate`, and
    :math:`\mathbf{r}_i` the row :math:`i` of ``x_root`` (default: of ``x``).  This equals
    ``F.linear(aggregate(x, ...), weight, bias) + F.linear(x_root, weight_root)``; for sum
    and mean, whose aggregation is linear, a fused kernel computes it either as
    :math:`\mathbf{A}(\mathbf{X}\mathbf{W}^\top)` or :math:`(\mathbf{A}\mathbf{X})
    \mathbf{W}^\top`, whichever needs the narrower sparse products (forward and backward),
    accumulates the root term and the bias in place and sums both gradient paths to
    :math:`\mathbf{X}` in one buffer.  Gradients w.r.t. ``edge_weight`` are supported on
    the unfused path, taken when ``edge_weight`` requires grad.

    ``x`` and ``x_root`` may be 2-D ``torch.sparse_csr`` tensors that do not require grad
    (sparse node features): they are then only multiplied by the weights, :math:`\mathbf{A}
    (\mathbf{X}\mathbf{W}^\top)` for sum and mean, never aggregated themselves; for max, whose
    aggregation does not commute with :math:`\mathbf{W}`, a sparse ``x`` is densified first.

    Args:
        x (torch.Tensor): Source features ``[num_nodes, F_in]``.
        edge_index (torch.Tensor or CSR): As in :func:`aggregate`.
        weight (torch.Tensor): :math:`\mathbf{W}` of shape ``[F_out, F_in]``.
        bias (torch.Tensor, optional): :math:`\mathbf{b}` of shape ``[F_out]``.
        edge_weight (torch.Tensor, optional): Weights ``[E]`` in ``edge_index`` order.
        reduce (str, optional): ``"sum"`` (or ``"add"``), ``"mean"`` or ``"max"``.
            (default: ``"sum"``)
        x_root (torch.Tensor, optional): Root features ``[num_targets, F_root]``; default:
            the first ``num_targets`` rows of ``x`` (all of them on a square graph).
        weight_root (torch.Tensor, optional): :math:`\mathbf{W}_{\mathrm{root}}` of shape
            ``[F_out, F_root]``; without it there is no root term.
        num_nodes (int, optional): As in :func:`aggregate`.

    :rtype: :class:`torch.Tensor` of shape ``[num_targets, F_out]``
    """
    reduce, csr, edge_weight = _prepare(x, edge_index, edge_weight, reduce, num_nodes)
    _check_linear(x, csr, weight, bias, x_root, weight_root)
    sparse = x.layout != torch.strided or (x_root is not None and x_root.layout != torch.strided)
    if sparse:
        for name, t in (("x", x), ("x_root", x_root)):
            if t is not None and t.layout != torch.strided:
                _check_sparse(name, t)
    if not torch.is_grad_enabled():  # as in `aggregate`: skip the work done for backward
        x, weight, bias, x_root, weight_root = (
            None if t is None else t.detach() for t in (x, weight, bias, x_root, weight_root))
        edge_weight = _detached(edge_weight)
    if sparse:
        return _sparse_aggregate_linear(x, csr, weight, bias, edge_weight, reduce, x_root,
                                        weight_root)
    fused = None
    if edge_weight is None or not edge_weight.requires_grad:
        fused = select_linear_kernel(x.device, reduce, x.dtype)
    if fused is not None:
        return fused(x.contiguous(), weight, bias, x_root, weight_root, edge_weight, csr)
    out = F.linear(aggregate(x, csr, edge_weight, reduce), weight, bias)
    if weight_root is not None:
        root = x[:csr.num_rows] if x_root is None else x_root
        out = out.addmm_(root, weight_root.t())  # addmm's backward does not need `out`
    return out


def _sparse_aggregate_linear(x: Tensor, csr: CSR, weight: Tensor, bias: Tensor | None,
                             edge_weight: Tensor | None, reduce: str, x_root: Tensor | None,
                             weight_root: Tensor | None) -> Tensor:
    """:func:`aggregate_linear` for a sparse CSR ``x`` or ``x_root``: transform, then aggregate
    (sum, mean); aggregate the densified ``x``, then transform (max)."""
    if x.layout == torch.strided:  # only the root term is sparse
        out = aggregate_linear(x, csr, weight, bias, edge_weight, reduce)
    elif reduce == "max":
        out = F.linear(aggregate(x.to_dense(), csr, edge_weight, reduce), weight, bias)
    else:
        out = aggregate(F.linear(x, weight), csr, edge_weight, reduce)
        out = out if bias is None else out + bias
    if weight_root is not None:
        root = head_rows(x, csr.num_rows) if x_root is None else x_root
        out = out + F.linear(root, weight_root)
    return out


def _check_sparse(name: str, x: Tensor) -> None:
    if x.layout != torch.sparse_csr or x.dim() != 2:
        raise ValueError(f"sparse '{name}' must be a 2-D torch.sparse_csr tensor "
                         f"(x.to_sparse_csr()), got a {x.dim()}-D {x.layout} tensor")
    if x.requires_grad:
        raise ValueError(f"sparse '{name}' must not require grad: gradients flow to the "
                         f"weights only")


def check_self_weight(self_weight: Tensor, csr: CSR, x: Tensor, reduce: str) -> Tensor:
    """``self_weight`` validated for :func:`aggregate` (in ``x``'s dtype)."""
    if reduce != "sum":
        raise ValueError(f"'self_weight' needs reduce='sum', got {reduce!r}")
    if not isinstance(self_weight, Tensor) or self_weight.dim() != 1 \
            or self_weight.numel() != csr.num_rows:
        raise ValueError(f"'self_weight' must have shape [{csr.num_rows}], got "
                         f"{list(getattr(self_weight, 'shape', []))}")
    if csr.num_rows != csr.num_cols:
        raise ValueError("'self_weight' needs a square graph (as many targets as sources)")
    if self_weight.device != x.device:
        raise ValueError(f"'self_weight' is on {self_weight.device} but 'x' is on {x.device}")
    return self_weight.to(x.dtype)


def _detached(edge_weight: Tensor | None) -> Tensor | None:
    """``edge_weight`` without its gradient path; the very same tensor when it has none, so
    that the CSR-order values kept for it (a cached GCN normalisation) are found again."""
    if edge_weight is None or not edge_weight.requires_grad:
        return edge_weight
    return edge_weight.detach()


def select_rows(x: Tensor, index: Tensor) -> Tensor:
    """The rows ``index`` (long indices or a bool mask) of ``x``: ``x.index_select(0, index)``
    (``x[mask]``) for a dense ``x``, the same rows as a CSR tensor for a ``torch.sparse_csr``
    ``x`` (whose ``index_select`` torch lacks), gathered without loops over rows."""
    if x.layout == torch.strided:
        return x[index] if index.dtype == torch.bool else x.index_select(0, index)
    if index.dtype == torch.bool:
        index = index.nonzero().view(-1)
    crow, col, val = x.crow_indices(), x.col_indices(), x.values()
    counts = crow.diff().index_select(0, index)
    rowptr = torch.cat([crow.new_zeros(1), torch.cumsum(counts, 0).to(crow.dtype)])
    total = int(rowptr[-1])
    # positions of the kept entries: the ranges crow[i] .. crow[i + 1] - 1 of the rows i
    shift = crow.index_select(0, index) - rowptr[:-1]
    pos = torch.repeat_interleave(shift, counts, output_size=total)
    pos = pos.add_(torch.arange(total, dtype=pos.dtype, device=pos.device))
    return torch.sparse_csr_tensor(rowptr, col.index_select(0, pos), val.index_select(0, pos),
                                   (index.numel(), x.size(1)), check_invariants=False)


def head_rows(x: Tensor, num_rows: int) -> Tensor:
    """The first ``num_rows`` rows of ``x`` (``x[:num_rows]``; a CSR tensor for a sparse
    ``x``)."""
    if x.layout == torch.strided:
        return x[:num_rows]
    if num_rows >= x.size(0):
        return x
    crow = x.crow_indices()[:num_rows + 1]
    nnz = int(crow[-1])
    return torch.sparse_csr_tensor(crow, x.col_indices()[:nnz], x.values()[:nnz],
                                   (num_rows, x.size(1)), check_invariants=False)


def _prepare(x: Tensor, edge_index: Tensor | CSR, edge_weight: Tensor | None, reduce: str,
             num_nodes: int | None) -> tuple[str, CSR, Tensor | None]:
    """Validated ``(reduce, csr, edge_weight)`` for :func:`aggregate`."""
    reduce = "sum" if reduce == "add" else reduce  # PyG's name for it
    if reduce not in REDUCTIONS:
        raise ValueError(f"'reduce' must be one of {REDUCTIONS}, got {reduce!r}")
    _check_x(x)
    if num_nodes is None:
        num_nodes = x.size(0)
    elif num_nodes != x.size(0):
        raise ValueError(f"'num_nodes' ({num_nodes}) must equal x.size(0) ({x.size(0)})")

    if isinstance(edge_index, CSR):
        csr = edge_index
        if csr.num_cols != x.size(0):
            raise ValueError(f"'edge_index' is a CSR over {csr.num_cols} nodes but 'x' has "
                             f"{x.size(0)} rows")
    else:
        csr = to_csr(edge_index, num_nodes)
    if csr.device != x.device:
        raise ValueError(f"'edge_index' is on {csr.device} but 'x' is on {x.device}")

    if edge_weight is not None:
        edge_weight = _check_edge_weight(edge_weight, csr.num_edges, x)
    return reduce, csr, edge_weight


def _check_linear(x: Tensor, csr: CSR, weight: Tensor, bias: Tensor | None,
                  x_root: Tensor | None, weight_root: Tensor | None) -> None:
    _check_param("weight", weight, 2, x)
    if weight.size(1) != x.size(1):
        raise ValueError(f"'weight' must have shape [out_channels, {x.size(1)}] for 'x' with "
                         f"{x.size(1)} features, got {list(weight.shape)}")
    if bias is not None:
        _check_param("bias", bias, 1, x)
        if bias.numel() != weight.size(0):
            raise ValueError(f"'bias' must have shape [{weight.size(0)}], got {list(bias.shape)}")
    if x_root is not None:
        _check_param("x_root", x_root, 2, x)
        if x_root.size(0) != csr.num_rows:
            raise ValueError(f"'x_root' must have {csr.num_rows} rows (one per target), got "
                             f"{x_root.size(0)}")
        if weight_root is None:
            raise ValueError("'x_root' is given but 'weight_root' is None")
    if weight_root is not None:
        _check_param("weight_root", weight_root, 2, x)
        root_channels = x.size(1) if x_root is None else x_root.size(1)
        if tuple(weight_root.shape) != (weight.size(0), root_channels):
            raise ValueError(f"'weight_root' must have shape [{weight.size(0)}, "
                             f"{root_channels}], got {list(weight_root.shape)}")
        if x_root is None and csr.num_rows > x.size(0):
            raise ValueError(f"the root term needs 'x_root': 'x' has {x.size(0)} rows, fewer "
                             f"than the {csr.num_rows} targets")


def _check_param(name: str, tensor: Tensor, dim: int, x: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != dim:
        raise ValueError(f"'{name}' must be {dim}-D, got shape {list(tensor.shape)}")
    if tensor.dtype != x.dtype or tensor.device != x.device:
        raise ValueError(f"'{name}' must have x's dtype and device ({x.dtype}, {x.device}), "
                         f"got {tensor.dtype} on {tensor.device}")


def _check_x(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"'x' must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"'x' must be 2-D [num_nodes, num_features], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"'x' must be floating point, got dtype {x.dtype}")


def _check_edge_weight(edge_weight: Tensor, num_edges: int, x: Tensor) -> Tensor:
    if not isinstance(edge_weight, Tensor):
        raise TypeError(f"'edge_weight' must be a torch.Tensor, got {type(edge_weight).__name__}")
    if edge_weight.dim() == 2 and edge_weight.size(1) == 1:
        edge_weight = edge_weight.view(-1)  # PyG models often keep weights as [E, 1]
    if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
        raise ValueError(f"'edge_weight' must have shape [num_edges={num_edges}], got "
                         f"{list(edge_weight.shape)}")
    if edge_weight.device != x.device:
        raise ValueError(f"'edge_weight' is on {edge_weight.device} but 'x' is on {x.device}")
    # Multiplying in x's dtype matches PyG; `.to` keeps the gradient path to edge_weight.
    return edge_weight.to(x.dtype)
