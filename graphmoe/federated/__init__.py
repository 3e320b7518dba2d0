"""graphmoe.federated: subgraph federated learning (FED-PUB and its baselines).

>>> from graphmoe.federated import load_federated
>>> fed = load_federated("Cora", "disjoint", num_clients=10)  # METIS, cached
>>> fed.summary()        # per client: nodes, edges, train/val/test, label histogram
>>> fed.plot_label_distribution("labels.png")

>>> from graphmoe.federated import build_algorithm, run_simulation
>>> history = run_simulation(fed, build_algorithm("fedpub", tau=3), rounds=100, seed=0)
>>> history.result()["test_acc"]  # mean local test accuracy at the best validation round

Command line: ``graphmoe federated --config configs/federated/fedpub_cora_disjoint10.yaml``.
"""
from .algorithms import (
    ALGORITHMS,
    ClientState,
    ClientUpdate,
    FedAvg,
    FederatedAlgorithm,
    FederatedServer,
    FedPer,
    FedProx,
    FedPub,
    Local,
    build_algorithm,
)
from .config import FederatedConfig, load_config
from .history import FederatedHistory, RoundRecord
from .models import MaskedGCN, MaskedGCNConv, MaskedLinear
from .partition import (
    CLIENTS_PER_COMMUNITY,
    PARTITION_MODES,
    FederatedGraph,
    load_federated,
    partition_graph,
    prepare_graph,
)
from .simulation import run_simulation

__all__ = [
    "CLIENTS_PER_COMMUNITY",
    "PARTITION_MODES",
    "FederatedGraph",
    "load_federated",
    "partition_graph",
    "prepare_graph",
    "MaskedLinear",
    "MaskedGCNConv",
    "MaskedGCN",
    "ALGORITHMS",
    "build_algorithm",
    "ClientUpdate",
    "ClientState",
    "FederatedAlgorithm",
    "FederatedServer",
    "Local",
    "FedAvg",
    "FedProx",
    "FedPer",
    "FedPub",
    "FederatedHistory",
    "RoundRecord",
    "run_simulation",
    "FederatedConfig",
    "load_config",
    "run_federated",
]


def __getattr__(name: str):
    # The command's module (outputs: matplotlib, Rich) is imported on first use.
    if name == "run_federated":
        from .run import run_federated

        return run_federated
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
