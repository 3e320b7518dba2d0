"""Small real client graphs for the federated tests: Cora split into a few node sets."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from graphmoe.data import load_dataset

NUM_CLIENTS = 4
NODES_PER_CLIENT = 150


def split_clients(data: Data, num_clients: int, nodes_per_client: int, seed: int = 0) -> list[Data]:
    """Consecutive blocks of a BFS-free node order (Cora's ids), each an induced subgraph with
    a seeded 20/40/40 split and row-normalised features."""
    gen = torch.Generator().manual_seed(seed)
    x = data.x / data.x.sum(dim=1, keepdim=True).clamp(min=1)
    clients = []
    for i in range(num_clients):
        nodes = torch.arange(i * nodes_per_client, (i + 1) * nodes_per_client)
        edge_index, _ = subgraph(nodes, data.edge_index, relabel_nodes=True,
                                 num_nodes=data.num_nodes)
        perm = torch.randperm(nodes_per_client, generator=gen)
        masks = [torch.zeros(nodes_per_client, dtype=torch.bool) for _ in range(3)]
        cuts = [0, int(0.2 * nodes_per_client), int(0.6 * nodes_per_client), nodes_per_client]
        for mask, lo, hi in zip(masks, cuts[:-1], cuts[1:]):
            mask[perm[lo:hi]] = True
        clients.append(Data(x=x[nodes], y=data.y[nodes], edge_index=edge_index,
                            train_mask=masks[0], val_mask=masks[1], test_mask=masks[2],
                            global_id=nodes, client_id=i))
    return clients


@pytest.fixture(scope="session")
def cora_clients(data_root) -> list[Data]:
    return split_clients(load_dataset("cora", data_root), NUM_CLIENTS, NODES_PER_CLIENT)
