r"""FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from graphmoe.federated.algorithms.base import (
    ClientUpdate,
    FederatedAlgorithm,
    FederatedServer,
    weighted_average,
)

__all__ = ["FedAvg", "FedAvgServer"]


class FedAvgServer(FederatedServer):
    r"""Averages the shared weights weighted by training-set size,

    .. math::
        \theta \leftarrow \sum_{i \in S} \frac{n_i}{\sum_{j \in S} n_j} \theta_i,

    over the clients :math:`S` of the round, and sends :math:`\theta` to every client (the
    same dict for all). A round where every client has ``num_examples == 0`` averages
    uniformly."""

    def aggregate(self, updates: Mapping[int, ClientUpdate], rnd: int) -> dict[int, dict[str, Tensor]]:
        if not updates:
            return {}
        ids = list(updates)
        sizes = torch.tensor([float(updates[i].num_examples) for i in ids], dtype=torch.float64)
        coef = sizes / sizes.sum() if sizes.sum() > 0 else torch.full_like(sizes, 1 / len(ids))
        self.global_weights = weighted_average([updates[i].weights for i in ids], coef)
        return {i: self.global_weights for i in ids}


class FedAvg(FederatedAlgorithm):
    r"""FedAvg: clients train the global model locally on their cross-entropy; the server
    averages the models weighted by the clients' numbers of training nodes
    (:class:`FedAvgServer`). Same options as
    :class:`~graphmoe.federated.algorithms.base.FederatedAlgorithm`."""

    name = "fedavg"

    def server(self) -> FederatedServer:
        return FedAvgServer()
