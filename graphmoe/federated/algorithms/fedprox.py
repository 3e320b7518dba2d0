r"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020)."""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from graphmoe.federated.algorithms.base import ClientState
from graphmoe.federated.algorithms.fedavg import FedAvg

__all__ = ["FedProx"]


class FedProx(FedAvg):
    r"""FedAvg with a proximal term: client :math:`i` minimises

    .. math::
        \mathcal{L}_i(\theta) + \frac{\mu}{2} \lVert \theta - \theta^{t} \rVert_2^2,

    where :math:`\theta^{t}` is the global model it received this round (no term in the first
    round, before any aggregation). Aggregation as FedAvg's.

    Args:
        mu (float): :math:`\mu \ge 0`. (default: ``0.01``)
        **kwargs: Options of :class:`~graphmoe.federated.algorithms.base.FederatedAlgorithm`.
    """

    name = "fedprox"

    def __init__(self, mu: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        if mu < 0:
            raise ValueError(f"'mu' must be >= 0, got {mu}")
        self.mu = float(mu)

    def penalty(self, state: ClientState, incoming: Mapping[str, Tensor] | None) -> Tensor | None:
        if incoming is None or self.mu == 0:
            return None
        terms = [(p - incoming[name]).square().sum()
                 for name, p in state.model.named_parameters() if name in incoming]
        return 0.5 * self.mu * sum(terms) if terms else None
