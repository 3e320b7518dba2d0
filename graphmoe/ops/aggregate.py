r"""Neighbourhood aggregation :math:`\mathbf{o}_i = \bigoplus_{j \to i} w_{ji} \mathbf{x}_j`."""
from __future__ import annotations

import torch
from torch import Tensor

from graphmoe.ops.csr import CSR, to_csr
from graphmoe.ops.spmm import REDUCTIONS, select_kernel

__all__ = ["aggregate"]


def aggregate(
    x: Tensor,
    edge_index: Tensor | CSR,
    edge_weight: Tensor | None = None,
    reduce: str = "sum",
    num_nodes: int | None = None,
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

    :rtype: :class:`torch.Tensor` of shape ``[num_nodes, F]``
    """
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
    if not torch.is_grad_enabled():
        # Autograd functions see `requires_grad` even under `no_grad`: detach so that the
        # kernels skip the work done only for backward (arg-max, saved tensors).
        x = x.detach()
        edge_weight = None if edge_weight is None else edge_weight.detach()
    kernel = select_kernel(x.device, reduce, x.dtype)
    return kernel(x.contiguous(), csr, edge_weight)


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
