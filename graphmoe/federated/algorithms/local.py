"""Local training only: each client trains its own model and nothing is communicated."""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor
from torch.nn import Module

from graphmoe.federated.algorithms.base import ClientUpdate, FederatedAlgorithm, FederatedServer

__all__ = ["Local", "LocalServer"]


class LocalServer(FederatedServer):
    """Aggregates nothing: every client keeps its own model."""

    def aggregate(self, updates: Mapping[int, ClientUpdate], rnd: int) -> dict[int, dict[str, Tensor]]:
        return {}


class Local(FederatedAlgorithm):
    r"""The local-only baseline: client :math:`i` minimises its own cross-entropy and never
    communicates (every state-dict key is local, :attr:`ClientUpdate.weights` is empty).
    Same options as :class:`~graphmoe.federated.algorithms.base.FederatedAlgorithm`."""

    name = "local"

    def local_keys(self, model: Module) -> set[str]:
        return set(model.state_dict())

    def server(self) -> FederatedServer:
        return LocalServer()
