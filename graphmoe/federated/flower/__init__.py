"""The Flower engine of ``graphmoe federated``: the federated algorithms as a Flower
``ClientApp`` / ``ServerApp`` pair with a custom message-based ``Strategy`` (Flower's Message
API: ``flwr.clientapp.ClientApp``, ``flwr.serverapp.ServerApp``,
``flwr.serverapp.strategy.Strategy``; written and tested against flwr 1.42).

In-process, through Flower's simulation engine (one virtual SuperNode per client, Ray actors):

>>> from graphmoe.federated import load_federated
>>> from graphmoe.federated.algorithms import build_algorithm
>>> from graphmoe.federated.flower import run_flower
>>> fed = load_federated("cora", "disjoint", 10)
>>> history = run_flower(fed, build_algorithm("fedpub"), rounds=100, seed=0)

On several machines, through Flower's deployment engine: ``client_app`` and ``server_app``
are the components of the Flower app in ``configs/federated/flower/`` (see the README).
"""
from graphmoe.federated.flower.client import client_app, make_client_app
from graphmoe.federated.flower.engine import backend_config, run_flower
from graphmoe.federated.flower.server import make_server_app, server_app
from graphmoe.federated.flower.settings import FlowerSettings
from graphmoe.federated.flower.strategy import FederatedStrategy

__all__ = [
    "FederatedStrategy",
    "FlowerSettings",
    "backend_config",
    "client_app",
    "make_client_app",
    "make_server_app",
    "run_flower",
    "server_app",
]
