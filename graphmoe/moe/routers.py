r"""Routers: map node features to experts (:class:`~graphmoe.moe.routing.Routing`).

Every router scores the :math:`E` experts with a linear gate
:math:`\mathbf{h}_n = \mathbf{x}_n \mathbf{W}_g` and
:math:`\mathbf{p}_n = \mathrm{softmax}(\mathbf{h}_n)`, then decides differently:

- :class:`TopKRouter`: the :math:`k` most probable experts (GShard, Lepikhin et al. 2021).
- :class:`NoisyTopKRouter`: top-:math:`k` of noisy logits (Shazeer et al. 2017).
- :class:`SwitchRouter`: top-1 with an optional capacity (Fedus et al. 2022).
- :class:`TopPRouter`: as many experts as needed to reach probability mass :math:`p`
  (Huang et al. 2024).
- :class:`ExpertChoiceRouter`: each expert picks its top nodes (Zhou et al. 2022).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear

from graphmoe.moe.routing import Routing, apply_capacity, expert_capacity

__all__ = [
    "Router",
    "TopKRouter",
    "NoisyTopKRouter",
    "SwitchRouter",
    "TopPRouter",
    "ExpertChoiceRouter",
]


def check_features(x: Tensor, in_channels: int, name: str = "x") -> None:
    """Raises a ``ValueError`` unless ``x`` is a finite, non-empty ``[N, in_channels]``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'{name}' must be a torch.Tensor (got {type(x).__name__})")
    if x.dim() != 2 or x.size(1) != in_channels:
        raise ValueError(f"'{name}' must have shape [num_nodes, {in_channels}] "
                         f"(got {tuple(x.shape)})")
    if x.size(0) == 0:
        raise ValueError(f"'{name}' is empty: routing needs at least one node")
    if not x.is_floating_point():
        raise TypeError(f"'{name}' must be a floating point tensor (got {x.dtype})")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"'{name}' contains NaN or infinite values")


class Router(torch.nn.Module):
    r"""Base class: a linear gate :math:`\mathbf{h} = \mathbf{x}\mathbf{W}_g` whose logits
    :meth:`route` turns into a :class:`Routing`.

    Args:
        in_channels (int): Size of each input sample.
        num_experts (int): Number of experts :math:`E`.
        k (int): Experts per node (the maximum for variable-count routers).
    """

    def __init__(self, in_channels: int, num_experts: int, k: int = 1) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_experts", num_experts),
                            ("k", k)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive int (got {value!r})")
        if k > num_experts:
            raise ValueError(f"'k' must be at most num_experts={num_experts} (got {k})")
        self.in_channels = in_channels
        self.num_experts = num_experts
        self.k = k
        self.gate = Linear(in_channels, num_experts, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.gate.reset_parameters()

    def forward(self, x: Tensor) -> Routing:
        check_features(x, self.in_channels)
        return self.route(self.gate(x))

    def route(self, logits: Tensor) -> Routing:
        raise NotImplementedError

    def _extra_repr_args(self) -> list[str]:
        return [f"k={self.k}"]

    def __repr__(self) -> str:
        args = [str(self.in_channels), f"num_experts={self.num_experts}"]
        return f"{self.__class__.__name__}({', '.join(args + self._extra_repr_args())})"


class TopKRouter(Router):
    r"""Top-:math:`k` softmax routing (GShard, Lepikhin et al. 2021).

    .. math::
        \mathcal{T}_n = \mathrm{TopK}(\mathbf{p}_n, k), \qquad
        g_{n,e} = \frac{p_{n,e}}{\sum_{e' \in \mathcal{T}_n} p_{n,e'}} \ (\text{normalize})
        \ \text{or} \ p_{n,e}.

    With ``capacity_factor`` :math:`c`, each expert keeps at most
    :math:`\lceil c N k / E \rceil` nodes (highest gate first); the rest are dropped and
    counted (:attr:`Routing.num_dropped`).

    Args:
        in_channels (int): Size of each input sample.
        num_experts (int): Number of experts :math:`E`.
        k (int): Experts per node. (default: :obj:`2`)
        normalize (bool): Renormalise the :math:`k` gates to sum to one.
            (default: :obj:`True`)
        capacity_factor (float, optional): Expert capacity factor; ``None`` is dropless.
            (default: :obj:`None`)
    """

    def __init__(self, in_channels: int, num_experts: int, k: int = 2,
                 normalize: bool = True, capacity_factor: float | None = None) -> None:
        super().__init__(in_channels, num_experts, k)
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"'capacity_factor' must be positive (got {capacity_factor})")
        self.normalize = normalize
        self.capacity_factor = capacity_factor

    def route(self, logits: Tensor) -> Routing:
        probs = logits.softmax(dim=-1)
        weight, index = probs.topk(self.k, dim=-1)
        if self.normalize:
            weight = weight / weight.sum(dim=-1, keepdim=True)
        return self._routing(index, weight, logits, probs)

    def _routing(self, index: Tensor, weight: Tensor, logits: Tensor, probs: Tensor,
                 load: Tensor | None = None) -> Routing:
        kept_index, kept_weight = index, weight
        if self.capacity_factor is not None:
            cap = expert_capacity(index.size(0), self.num_experts, self.k, self.capacity_factor)
            kept_index, kept_weight = apply_capacity(index, weight, self.num_experts, cap)
        return Routing(kept_index, kept_weight, logits, probs, requested_index=index, load=load)

    def _extra_repr_args(self) -> list[str]:
        args = [f"k={self.k}"]
        if self.capacity_factor is not None:
            args.append(f"capacity_factor={self.capacity_factor}")
        return args


class NoisyTopKRouter(TopKRouter):
    r"""Noisy top-:math:`k` gating (Shazeer et al. 2017, "Outrageously Large Neural
    Networks: The Sparsely-Gated Mixture-of-Experts Layer").

    .. math::
        H(\mathbf{x})_e = (\mathbf{x}\mathbf{W}_g)_e + \epsilon_e \cdot
        (\mathrm{softplus}((\mathbf{x}\mathbf{W}_{\text{noise}})_e) + \epsilon_0),
        \quad \epsilon_e \sim \mathcal{N}(0, 1), \qquad
        G(\mathbf{x}) = \mathrm{softmax}(\mathrm{KeepTopK}(H(\mathbf{x}), k)).

    Noise is added in training only. The smooth load estimate used by
    :func:`~graphmoe.moe.losses.load_loss` is
    :math:`\mathrm{load}_e = \sum_n \Phi\big(((\mathbf{x}_n\mathbf{W}_g)_e -
    \mathrm{kth\_excluding}(H(\mathbf{x}_n), k, e)) / \sigma_{n,e}\big)` with
    :math:`\Phi` the standard normal CDF (:attr:`Routing.load`).

    Args:
        in_channels (int): Size of each input sample.
        num_experts (int): Number of experts :math:`E`.
        k (int): Experts per node. (default: :obj:`2`)
        noise_epsilon (float): Minimum noise std :math:`\epsilon_0`. (default: :obj:`1e-2`)
        capacity_factor (float, optional): As in :class:`TopKRouter`.
    """

    def __init__(self, in_channels: int, num_experts: int, k: int = 2,
                 noise_epsilon: float = 1e-2, capacity_factor: float | None = None) -> None:
        super().__init__(in_channels, num_experts, k, True, capacity_factor)
        self.noise_epsilon = noise_epsilon
        self.noise = Linear(in_channels, num_experts, bias=False)
        torch.nn.init.zeros_(self.noise.weight)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "noise"):
            torch.nn.init.zeros_(self.noise.weight)

    def forward(self, x: Tensor) -> Routing:
        check_features(x, self.in_channels)
        clean = self.gate(x)
        if not self.training:
            return self.route(clean)
        std = F.softplus(self.noise(x)) + self.noise_epsilon
        noisy = clean + torch.randn_like(clean) * std
        top_logits, top_index = noisy.topk(min(self.k + 1, self.num_experts), dim=-1)
        index, weight = top_index[:, :self.k], top_logits[:, :self.k].softmax(dim=-1)
        load = None
        if self.k < self.num_experts:
            load = self._smooth_load(clean, noisy, std, top_logits)
        return self._routing(index, weight, noisy, noisy.softmax(dim=-1), load)

    def _smooth_load(self, clean: Tensor, noisy: Tensor, std: Tensor,
                     top_logits: Tensor) -> Tensor:
        # An expert in the top k stays there while its noisy logit beats the (k+1)-th
        # value; one outside must beat the k-th.
        threshold_in = top_logits[:, self.k:self.k + 1]
        threshold_out = top_logits[:, self.k - 1:self.k]
        is_in = noisy > threshold_in
        prob_in = torch.special.ndtr((clean - threshold_in) / std)
        prob_out = torch.special.ndtr((clean - threshold_out) / std)
        return torch.where(is_in, prob_in, prob_out).sum(dim=0)

    def route(self, logits: Tensor) -> Routing:
        weight, index = logits.topk(self.k, dim=-1)
        return self._routing(index, weight.softmax(dim=-1), logits, logits.softmax(dim=-1))


class SwitchRouter(TopKRouter):
    r"""Switch routing: top-1 with gate :math:`p_{n,e}` (Fedus et al. 2022, "Switch
    Transformers").

    Dropless by default; with ``capacity_factor`` :math:`c` each expert processes at
    most :math:`\lceil c N / E \rceil` nodes (most confident first) and the dropped nodes
    get no routed expert (their output is the shared experts' / the residual's).

    Args:
        in_channels (int): Size of each input sample.
        num_experts (int): Number of experts :math:`E`.
        capacity_factor (float, optional): Expert capacity factor. (default: :obj:`None`)
    """

    def __init__(self, in_channels: int, num_experts: int,
                 capacity_factor: float | None = None) -> None:
        super().__init__(in_channels, num_experts, 1, False, capacity_factor)

    def _extra_repr_args(self) -> list[str]:
        return super()._extra_repr_args()[1:]


class TopPRouter(Router):
    r"""Dynamic top-:math:`p` routing (Huang et al. 2024, "Harder Tasks Need More Experts:
    Dynamic Routing in MoE Models").

    Experts are activated in order of probability until their cumulative probability
    reaches :math:`p`:

    .. math::
        \mathcal{T}_n = \{e_{(1)}, \dots, e_{(t)}\}, \quad
        t = \min\{t : \textstyle\sum_{i \le t} p_{n,e_{(i)}} \ge p\},
        \qquad g_{n,e} = p_{n,e},

    so the number of experts varies per node (``expert_index`` is padded with ``-1``).
    Pair it with :func:`~graphmoe.moe.losses.router_entropy_loss` (the paper's dynamic
    loss), which keeps the distribution from flattening to activate every expert.

    Args:
        in_channels (int): Size of each input sample.
        num_experts (int): Number of experts :math:`E`.
        p (float): Probability mass threshold in :math:`(0, 1]`. (default: :obj:`0.4`)
        max_k (int, optional): Cap on experts per node. (default: :obj:`None`, i.e. E)
    """

    def __init__(self, in_channels: int, num_experts: int, p: float = 0.4,
                 max_k: int | None = None) -> None:
        super().__init__(in_channels, num_experts, num_experts if max_k is None else max_k)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"'p' must lie in (0, 1] (got {p})")
        self.p = p

    def route(self, logits: Tensor) -> Routing:
        probs = logits.softmax(dim=-1)
        sorted_probs, sorted_index = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        keep = mass_before < self.p
        keep[:, self.k:] = False
        width = int(keep.sum(dim=-1).max())
        keep = keep[:, :width]
        index = sorted_index[:, :width].masked_fill(~keep, -1)
        weight = sorted_probs[:, :width].masked_fill(~keep, 0.0)
        return Routing(index, weight, logits, probs, requested_index=index)

    def _extra_repr_args(self) -> list[str]:
        return [f"p={self.p}"] + ([] if self.k == self.num_experts else [f"max_k={self.k}"])


class ExpertChoiceRouter(Router):
    r"""Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice
    Routing").

    Each expert :math:`e` selects the :math:`C = \lceil c N / E \rceil` nodes with the
    highest :math:`p_{n,e}` (so every expert is exactly balanced, and a node may get any
    number of experts, including none); :math:`g_{n,e} = p_{n,e}`.

    Args:
        in_channels (int): Size of each input sample.
        num_experts (int): Number of experts :math:`E`.
        capacity_factor (float): :math:`c`, the average number of experts per node.
            (default: :obj:`2.0`)
    """

    def __init__(self, in_channels: int, num_experts: int,
                 capacity_factor: float = 2.0) -> None:
        if not 0 < capacity_factor <= num_experts:
            raise ValueError(f"'capacity_factor' must lie in (0, num_experts={num_experts}] "
                             f"(got {capacity_factor})")
        super().__init__(in_channels, num_experts, max(1, math.ceil(capacity_factor)))
        self.capacity_factor = capacity_factor

    def capacity(self, num_nodes: int) -> int:
        return min(num_nodes, math.ceil(self.capacity_factor * num_nodes / self.num_experts))

    def route(self, logits: Tensor) -> Routing:
        num_nodes = logits.size(0)
        probs = logits.softmax(dim=-1)
        chosen_nodes = probs.t().topk(self.capacity(num_nodes), dim=-1).indices  # [E, C]
        chosen = torch.zeros_like(probs, dtype=torch.bool)
        experts = torch.arange(self.num_experts, device=logits.device)
        chosen[chosen_nodes, experts.unsqueeze(1)] = True
        width = int(chosen.sum(dim=-1).max())
        flag, index = chosen.to(probs.dtype).topk(width, dim=-1)
        used = flag > 0
        index = index.masked_fill(~used, -1)
        weight = probs.gather(1, index.clamp(min=0)).masked_fill(~used, 0.0)
        return Routing(index, weight, logits, probs, requested_index=index)

    def _extra_repr_args(self) -> list[str]:
        return [f"capacity_factor={self.capacity_factor}"]
