r"""Masked GCN of FED-PUB (Baek et al., "Personalized Subgraph Federated Learning", ICML 2023).

Every weight matrix :math:`\mathbf{W}` is used as :math:`\mathbf{W} \odot \mathbf{M}` with a
personal mask :math:`\mathbf{M}` (a parameter named ``*.mask``, initialised to ones) that a
FED-PUB client keeps to itself; the weights are shared and aggregated, the masks never are.
With ``masked=False`` the same modules carry no mask and the model is a plain GCN (the model
of the baselines: Local, FedAvg, FedProx, FedPer).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module, ModuleList, Parameter
from torch_geometric.nn.inits import glorot, zeros

from graphmoe.models.conv.gcn_conv import gcn_norm, gcn_propagate
from graphmoe.ops import dropout

__all__ = ["MaskedLinear", "MaskedGCNConv", "MaskedGCN"]


class MaskedLinear(Module):
    r"""A linear layer with an optional element-wise weight mask,

    .. math::
        \mathbf{y} = \mathbf{x} (\mathbf{W} \odot \tilde{\mathbf{M}})^{\top} + \mathbf{b},
        \qquad \tilde{M}_{ij} = M_{ij} \cdot [\,\text{training} \lor |M_{ij}| \ge \epsilon\,],

    the masked linear layer of FED-PUB (Baek et al., ICML 2023): in evaluation mode mask
    entries smaller than ``threshold`` in magnitude are pruned to zero (sparse personalised
    models); in training mode the mask is used as is, so that its gradient is dense.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        bias (bool): Learn an additive bias. (default: ``True``)
        masked (bool): Learn a mask ``mask`` of the weight's shape. (default: ``True``)
        threshold (float): :math:`\epsilon`, the pruning threshold in eval mode; FED-PUB uses
            its L1 coefficient, ``1e-3``. (default: ``1e-3``)
        weight_init (str): ``"glorot"`` or ``"kaiming"`` (that of :class:`torch.nn.Linear`).
            (default: ``"kaiming"``)
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True,
                 masked: bool = True, threshold: float = 1e-3,
                 weight_init: str = "kaiming") -> None:
        super().__init__()
        if weight_init not in ("glorot", "kaiming"):
            raise ValueError(f"'weight_init' must be 'glorot' or 'kaiming', got {weight_init!r}")
        if threshold < 0:
            raise ValueError(f"'threshold' must be >= 0, got {threshold}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.threshold = threshold
        self.weight_init = weight_init
        self.weight = Parameter(torch.empty(out_channels, in_channels))
        self.mask = Parameter(torch.empty(out_channels, in_channels)) if masked else None
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def masked(self) -> bool:
        return self.mask is not None

    def reset_parameters(self) -> None:
        if self.weight_init == "glorot":
            glorot(self.weight)
        else:
            torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.mask is not None:
            torch.nn.init.ones_(self.mask)
        if self.bias is not None:
            if self.weight_init == "glorot":
                zeros(self.bias)
            else:
                bound = 1.0 / math.sqrt(self.in_channels) if self.in_channels > 0 else 0.0
                torch.nn.init.uniform_(self.bias, -bound, bound)

    def effective_mask(self) -> Tensor | None:
        r""":math:`\tilde{\mathbf{M}}`: the mask, pruned below ``threshold`` in eval mode."""
        if self.mask is None:
            return None
        if self.training or self.threshold == 0:
            return self.mask
        return self.mask.masked_fill(self.mask.abs() < self.threshold, 0.0)

    def masked_weight(self) -> Tensor:
        r""":math:`\mathbf{W} \odot \tilde{\mathbf{M}}` (the weight itself without a mask).

        In eval mode without autograd the product is cached until the weight or the mask
        changes (their version counters), so that evaluating a client and embedding the proxy
        graph prune and multiply once."""
        if self.mask is None:
            return self.weight
        if self.training or torch.is_grad_enabled():
            return self.weight * self.effective_mask()
        key = (self.weight._version, self.mask._version, self.weight.data_ptr(),
               self.mask.data_ptr(), self.threshold)
        cached = self.__dict__.get("_eval_weight")
        if cached is None or cached[0] != key:
            cached = (key, self.weight * self.effective_mask())
            self.__dict__["_eval_weight"] = cached
        return cached[1]

    def forward(self, x: Tensor) -> Tensor:
        """``x`` dense, or a sparse CSR/COO matrix (bag-of-words features: a sparse product)."""
        weight = self.masked_weight()
        if x.layout in (torch.sparse_csr, torch.sparse_coo):
            out = torch.sparse.mm(x, weight.t())
            return out if self.bias is None else out + self.bias
        return F.linear(x, weight, self.bias)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"masked={self.masked})")


class MaskedGCNConv(Module):
    r"""The GCN layer of Kipf & Welling (ICLR 2017) with FED-PUB's weight mask,

    .. math::
        \mathbf{X}^{\prime} = \mathbf{\hat{D}}^{-1/2} \mathbf{\hat{A}} \mathbf{\hat{D}}^{-1/2}
        \mathbf{X} (\mathbf{W} \odot \tilde{\mathbf{M}})^{\top} + \mathbf{b},

    with :math:`\mathbf{\hat{A}} = \mathbf{A} + \mathbf{I}` and :math:`\tilde{\mathbf{M}}` the
    pruned mask of :class:`MaskedLinear`. The normalisation is
    :func:`graphmoe.models.conv.gcn_conv.gcn_norm` and the sum runs through
    :func:`graphmoe.ops.aggregate`; with ``mask = 1`` the output equals
    :class:`graphmoe.models.conv.GCNConv` (and PyG's) with the same weight.

    The normalisation of the last few graphs seen is cached (keyed by the ``edge_index``
    tensor itself, which it keeps alive), so a client that trains on its subgraph and embeds
    the proxy graph computes each once.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        bias (bool): Learn an additive bias. (default: ``True``)
        masked (bool): Learn a weight mask ``lin.mask``. (default: ``True``)
        threshold (float): Mask pruning threshold in eval mode. (default: ``1e-3``)
    """

    _CACHE_SIZE = 4

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True,
                 masked: bool = True, threshold: float = 1e-3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lin = MaskedLinear(in_channels, out_channels, bias=False, masked=masked,
                                threshold=threshold, weight_init="glorot")
        self.bias = Parameter(torch.empty(out_channels)) if bias else None
        self._norms: list[tuple[Tensor, int, Tensor, Tensor | None]] = []
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        zeros(self.bias)
        self._norms = []

    def _norm(self, edge_index: Tensor, num_nodes: int,
              dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        for cached, n, norm, loop in self._norms:
            if cached is edge_index and n == num_nodes and norm.dtype == dtype:
                return norm, loop
        norm, loop = gcn_norm(edge_index, None, num_nodes, dtype=dtype)
        self._norms = [*self._norms[-(self._CACHE_SIZE - 1):], (edge_index, num_nodes, norm, loop)]
        return norm, loop

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        norm, loop = self._norm(edge_index, x.size(0), x.dtype)
        out = gcn_propagate(self.lin(x), edge_index, norm, loop)
        return out if self.bias is None else out + self.bias

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"masked={self.lin.masked})")


class MaskedGCN(Module):
    r"""The model of FED-PUB (Baek et al., ICML 2023): ``num_layers`` masked GCN layers and a
    masked linear classifier,

    .. math::
        \mathbf{H}^{(l)} = \mathrm{GCN}_l\big(\mathrm{drop}(\sigma(\mathbf{H}^{(l-1)}))\big),
        \qquad \hat{\mathbf{Y}} = \mathrm{drop}(\sigma(\mathbf{H}^{(L)}))
        (\mathbf{W}_c \odot \tilde{\mathbf{M}}_c)^{\top} + \mathbf{b}_c,

    with :math:`\mathbf{H}^{(0)} = \mathbf{X}` (no activation or dropout on the input),
    :math:`\sigma` = ReLU. :meth:`embed` returns :math:`\mathbf{H}^{(L)}`, the last GCN
    layer's output before the activation: the node representations whose mean over a proxy
    graph is FED-PUB's functional embedding of a client's model (as in the reference code).

    Args:
        in_channels (int): Input feature size.
        hidden_channels (int): Hidden size of every GCN layer. (default: ``128``)
        out_channels (int): Number of classes (required).
        num_layers (int): Number of GCN layers. (default: ``2``)
        dropout (float): Dropout probability between layers. (default: ``0.5``)
        masked (bool): Masks on every GCN and classifier weight (FED-PUB); ``False`` gives a
            plain GCN. (default: ``True``)
        threshold (float): Mask pruning threshold in eval mode. (default: ``1e-3``)
    """

    def __init__(self, in_channels: int, hidden_channels: int = 128,
                 out_channels: int | None = None, num_layers: int = 2, dropout: float = 0.5,
                 masked: bool = True, threshold: float = 1e-3) -> None:
        super().__init__()
        if out_channels is None:
            raise ValueError("'out_channels' (the number of classes) is required")
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                            ("out_channels", out_channels), ("num_layers", num_layers)):
            if int(value) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.dropout = dropout
        self.masked = masked
        dims = [in_channels] + [hidden_channels] * num_layers
        self.convs = ModuleList(MaskedGCNConv(dims[i], dims[i + 1], masked=masked,
                                              threshold=threshold) for i in range(num_layers))
        self.classifier = MaskedLinear(hidden_channels, out_channels, masked=masked,
                                       threshold=threshold)

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        self.classifier.reset_parameters()

    def _check(self, x: Tensor, edge_index: Tensor) -> None:
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"'x' must have shape [num_nodes, {self.in_channels}], "
                             f"got {list(x.shape)}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must have shape [2, num_edges], "
                             f"got {list(edge_index.shape)}")

    def embed(self, x: Tensor, edge_index: Tensor) -> Tensor:
        r""":math:`\mathbf{H}^{(L)}` of shape ``[num_nodes, hidden_channels]``."""
        self._check(x, edge_index)
        for i, conv in enumerate(self.convs):
            if i > 0:
                x = dropout(x.relu(), p=self.dropout, training=self.training)
            x = conv(x, edge_index)
        return x

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Logits of shape ``[num_nodes, out_channels]``."""
        h = self.embed(x, edge_index)
        h = dropout(h.relu(), p=self.dropout, training=self.training)
        return self.classifier(h)

    def mask_keys(self) -> set[str]:
        """State-dict keys of the masks (empty without masks)."""
        return {name for name, _ in self.named_parameters() if name.endswith(".mask")}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers}, masked={self.masked})")
