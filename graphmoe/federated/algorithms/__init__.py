"""Federated algorithms (Local, FedAvg, FedProx, FedPer, FED-PUB) and their registry.

>>> from graphmoe.federated.algorithms import build_algorithm
>>> algorithm = build_algorithm("fedpub", tau=3.0)
"""
from __future__ import annotations

from typing import Any

from graphmoe.federated.algorithms.base import (
    ClientState,
    ClientUpdate,
    FederatedAlgorithm,
    FederatedServer,
    weighted_average,
)
from graphmoe.federated.algorithms.fedavg import FedAvg, FedAvgServer
from graphmoe.federated.algorithms.fedper import FedPer, head_keys
from graphmoe.federated.algorithms.fedprox import FedProx
from graphmoe.federated.algorithms.fedpub import (
    FedPub,
    FedPubServer,
    personalized_weights,
    proxy_graph,
)
from graphmoe.federated.algorithms.local import Local, LocalServer

__all__ = [
    "ALGORITHMS",
    "ClientState",
    "ClientUpdate",
    "FedAvg",
    "FedAvgServer",
    "FedPer",
    "FedProx",
    "FedPub",
    "FedPubServer",
    "FederatedAlgorithm",
    "FederatedServer",
    "Local",
    "LocalServer",
    "build_algorithm",
    "head_keys",
    "personalized_weights",
    "proxy_graph",
    "weighted_average",
]

ALGORITHMS: dict[str, type[FederatedAlgorithm]] = {
    cls.name: cls for cls in (Local, FedAvg, FedProx, FedPer, FedPub)
}


def build_algorithm(name: str, **options: Any) -> FederatedAlgorithm:
    """The algorithm registered as ``name`` (case-insensitive; ``fed-pub``/``fed_pub`` too)
    with ``options``.

    Raises:
        ValueError: for an unknown name or an option the algorithm does not take; the
            message lists the known names or options.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in ALGORITHMS:
        raise ValueError(f"unknown federated algorithm {name!r}; known algorithms: "
                         f"{', '.join(ALGORITHMS)}")
    cls = ALGORITHMS[key]
    valid = cls.option_names()
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for algorithm {cls.name!r}; "
                         f"valid options: {', '.join(valid)}")
    return cls(**options)
