r"""METIS partitions of one graph into the subgraphs of federated clients.

The setting is the one of FED-PUB (Baek et al., "Personalized Subgraph Federated Learning",
ICML 2023; reference code ``JinheonBaek/FED-PUB``, ``data/generators/``):

1. keep the largest connected component of the (undirected) graph;
2. row-normalise the features, :math:`\mathbf{x}_i \leftarrow \mathbf{x}_i / \sum_j x_{ij}`
   (features with negative entries, such as ogbn-arxiv's embeddings, are kept as they are, as
   the reference does);
3. draw one seeded global split, 20% train / 40% validation / 40% test;
4. partition the nodes with METIS (:mod:`pymetis`):

   * ``"disjoint"``: ``num_clients`` METIS parts; client :math:`k` holds the nodes of part
     :math:`k` and the edges between them (edges across parts are lost);
   * ``"overlapping"``: ``num_clients // 5`` METIS communities; each community gives 5 clients
     that each hold a uniformly random half of its nodes and the subgraph they induce, so
     clients of one community overlap.

Unlike the reference, METIS runs on a CSR adjacency (never an :math:`N \times N` dense matrix,
so graphs of ogbn-arxiv's size take seconds), and every random choice (METIS' own seed, the
halves of the overlapping mode) comes from a generator derived from ``(seed, mode,
num_clients)``: a partition never depends on which partitions were made before it in the same
process. :func:`load_federated` caches partitions under ``cache_dir()/federated/``.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pymetis
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import remove_self_loops, to_undirected

from graphmoe.data import cache_dir, dataset_files, load_dataset
from graphmoe.data.cache import _atomic_write_bytes, cache_key
from graphmoe.data.datasets import PROCESSING_VERSION

from .summary import client_summary, plot_label_distribution

__all__ = [
    "CLIENTS_PER_COMMUNITY",
    "PARTITION_MODES",
    "SPLIT_RATIOS",
    "FederatedGraph",
    "load_federated",
    "partition_graph",
    "prepare_graph",
]

#: The partition modes of FED-PUB.
PARTITION_MODES = ("disjoint", "overlapping")
#: Clients drawn from each METIS community in the ``"overlapping"`` mode.
CLIENTS_PER_COMMUNITY = 5
#: Fractions of the global train / validation / test split.
SPLIT_RATIOS = (0.2, 0.4, 0.4)
#: Bump to invalidate cached partitions after a change in how they are made.
PARTITION_VERSION = 1

_MASKS = ("train_mask", "val_mask", "test_mask")


def _derived_seed(*parts: object) -> int:
    """A 31-bit seed that depends only on ``parts`` (not on any global random state)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(_derived_seed(*parts))


# ---------------------------------------------------------------------------------------------
# Graph preparation: largest connected component, features, global split
# ---------------------------------------------------------------------------------------------

def _scipy_adjacency(edge_index: Tensor, num_nodes: int) -> sp.csr_matrix:
    row, col = edge_index.cpu().numpy()
    ones = np.ones(row.shape[0], dtype=np.int32)
    return sp.csr_matrix((ones, (row, col)), shape=(num_nodes, num_nodes))


def largest_component_nodes(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Sorted ids of the nodes of the largest (weakly) connected component."""
    _, component = connected_components(_scipy_adjacency(edge_index, num_nodes), directed=True,
                                        connection="weak")
    largest = np.bincount(component).argmax()  # ties: the component holding the lowest id
    return torch.from_numpy(np.flatnonzero(component == largest))


def row_normalize(x: Tensor) -> Tensor:
    """Divide each row by its sum (rows summing to zero stay zero); features with negative
    entries are returned unchanged, since their row sums are no meaningful scale."""
    if bool((x < 0).any()):
        return x
    row_sum = x.sum(dim=-1, keepdim=True)
    return torch.where(row_sum > 0, x / row_sum.clamp(min=torch.finfo(x.dtype).tiny), x)


def global_split(num_nodes: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Boolean train / validation / test masks over ``num_nodes`` nodes (:data:`SPLIT_RATIOS`),
    drawn from ``seed`` alone, so every partition of one graph shares the same split."""
    perm = torch.randperm(num_nodes, generator=_generator(seed, "split"))
    num_train = round(num_nodes * SPLIT_RATIOS[0])
    num_val = round(num_nodes * SPLIT_RATIOS[1])
    bounds = (0, num_train, num_train + num_val, num_nodes)
    masks = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[perm[start:end]] = True
        masks.append(mask)
    return masks[0], masks[1], masks[2]


def _prepare(data: Data, lcc: Tensor, seed: int) -> Data:
    """The FED-PUB graph: ``data`` restricted to the nodes ``lcc``, with normalised features and
    the global split (its edges are made undirected)."""
    _check_features(data)
    edge_index = to_undirected(data.edge_index, num_nodes=data.num_nodes)
    graph = Data(x=data.x, y=data.y, edge_index=edge_index).subgraph(lcc)
    graph.x = row_normalize(graph.x.to(torch.float32))
    graph.train_mask, graph.val_mask, graph.test_mask = global_split(graph.num_nodes, seed)
    return graph


def prepare_graph(data: Data, seed: int = 1234) -> Data:
    """The graph FED-PUB partitions: the largest connected component of ``data`` (made
    undirected) with row-normalised features and the global split drawn from ``seed``."""
    _check_features(data)
    return _prepare(data, largest_component_nodes(data.edge_index, data.num_nodes), seed)


# ---------------------------------------------------------------------------------------------
# Partitioning
# ---------------------------------------------------------------------------------------------

def _check_features(data: Data) -> None:
    if data.get("x") is None:
        raise ValueError("partition_graph() needs node features, but the dataset has none "
                         "(data.x is None); add features (e.g. one-hot degrees) first.")


def _check_partition_args(data: Data, mode: str, num_clients: int) -> None:
    _check_features(data)
    if mode not in PARTITION_MODES:
        raise ValueError(f"Unknown partition mode {mode!r}; valid modes are "
                         f"{', '.join(map(repr, PARTITION_MODES))}.")
    if not isinstance(num_clients, int) or isinstance(num_clients, bool) or num_clients < 1:
        raise ValueError(f"num_clients must be a positive integer, got {num_clients!r}.")
    if mode == "overlapping" and num_clients % CLIENTS_PER_COMMUNITY != 0:
        raise ValueError(f"The overlapping mode needs num_clients to be a multiple of "
                         f"{CLIENTS_PER_COMMUNITY} (one METIS community per "
                         f"{CLIENTS_PER_COMMUNITY} clients), got {num_clients}.")
    if num_clients > data.num_nodes:
        raise ValueError(f"Cannot split a graph of {data.num_nodes} nodes among {num_clients} "
                         f"clients: there are more clients than nodes.")


def metis_parts(edge_index: Tensor, num_nodes: int, num_parts: int, seed: int) -> Tensor:
    """The METIS part (``[num_nodes]`` long in ``[0, num_parts)``) of every node.

    The graph is made undirected without self-loops or duplicate edges (as METIS requires)
    and handed to :func:`pymetis.part_graph` as CSR; METIS' own seed is ``seed``.
    """
    if num_parts == 1:
        return torch.zeros(num_nodes, dtype=torch.long)
    edge_index, _ = remove_self_loops(edge_index.cpu())
    edge_index = to_undirected(edge_index, num_nodes=num_nodes)  # also sorts by row
    degree = torch.bincount(edge_index[0], minlength=num_nodes)
    adj_starts = torch.cat([degree.new_zeros(1), degree.cumsum(0)])
    adjacency = pymetis.CSRAdjacency(adj_starts=adj_starts.numpy(),
                                     adjacent=edge_index[1].numpy())
    _, membership = pymetis.part_graph(num_parts, adjacency,
                                       options=pymetis.Options(seed=seed))
    return torch.as_tensor(np.asarray(membership), dtype=torch.long)


def _induced_edges(edge_index: Tensor, subset: Tensor, num_nodes: int) -> Tensor:
    """The edges of ``edge_index`` between nodes of the sorted ``subset``, in local ids."""
    local = torch.full((num_nodes,), -1, dtype=torch.long)
    local[subset] = torch.arange(subset.numel())
    edges = local[edge_index]
    return edges[:, (edges >= 0).all(dim=0)]


def _edges_inside_parts(edge_index: Tensor, part: Tensor, num_parts: int) -> list[Tensor]:
    """For each part, the edges with both ends in it (global ids, original order)."""
    edge_index = edge_index[:, part[edge_index[0]] == part[edge_index[1]]]
    edge_part = part[edge_index[0]]
    order = torch.argsort(edge_part, stable=True)
    counts = torch.bincount(edge_part, minlength=num_parts).tolist()
    return list(torch.split(edge_index[:, order], counts, dim=1))


def _client(data: Data, subset: Tensor, edge_index: Tensor, client_id: int) -> Data:
    client = Data(x=data.x[subset], edge_index=edge_index, global_id=subset, client_id=client_id)
    for key in ("y", *_MASKS):
        if data.get(key) is not None:
            client[key] = data[key][subset]
    return client


def _disjoint_subsets(part: Tensor, num_clients: int) -> list[Tensor]:
    return [torch.nonzero(part == k).view(-1) for k in range(num_clients)]


def _overlapping_subsets(part: Tensor, num_communities: int,
                         generator: torch.Generator) -> list[Tensor]:
    subsets = []
    for community in range(num_communities):
        members = torch.nonzero(part == community).view(-1)
        for _ in range(CLIENTS_PER_COMMUNITY):
            half = torch.randperm(members.numel(), generator=generator)[:members.numel() // 2]
            subsets.append(members[half].sort().values)
    return subsets


def partition_graph(data: Data, mode: str, num_clients: int, seed: int = 1234) -> list[Data]:
    r"""Split ``data`` into the subgraphs of ``num_clients`` federated clients with METIS.

    Args:
        data (Data): The graph, with ``x``, ``edge_index`` and optionally ``y`` and the
            ``train_mask`` / ``val_mask`` / ``test_mask`` of a global split.
        mode (str): ``"disjoint"`` (``num_clients`` METIS parts) or ``"overlapping"``
            (``num_clients // 5`` METIS communities, each giving 5 clients that each take a
            random half of its nodes).
        num_clients (int): The number of clients.
        seed (int): Seeds METIS and the random halves, together with ``mode`` and
            ``num_clients`` (a partition never depends on earlier ones).

    Returns:
        One ``Data`` per client with ``x``, ``y``, ``edge_index`` (local ids; the edges of
        ``data`` between the client's nodes), the masks restricted to its nodes,
        ``global_id`` (the ids of its nodes in ``data``) and ``client_id``.

    Raises:
        ValueError: no features, an unknown mode, ``num_clients < 1``, more clients than
            nodes, an overlapping ``num_clients`` that is not a multiple of 5, or a partition
            that leaves a client without nodes.
    """
    _check_partition_args(data, mode, num_clients)
    num_nodes = data.num_nodes
    generator = _generator(seed, mode, num_clients)
    num_parts = num_clients if mode == "disjoint" else num_clients // CLIENTS_PER_COMMUNITY
    metis_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    part = metis_parts(data.edge_index, num_nodes, num_parts, metis_seed)
    if mode == "disjoint":
        subsets = _disjoint_subsets(part, num_clients)
    else:
        subsets = _overlapping_subsets(part, num_parts, generator)
    empty = sum(subset.numel() == 0 for subset in subsets)
    if empty:
        raise ValueError(f"The {mode} partition of {num_nodes} nodes into {num_clients} clients "
                         f"leaves {empty} client(s) without nodes; use fewer clients.")
    candidates = _edges_inside_parts(data.edge_index, part, num_parts)
    per_part = 1 if mode == "disjoint" else CLIENTS_PER_COMMUNITY
    return [_client(data, subset, _induced_edges(candidates[k // per_part], subset, num_nodes), k)
            for k, subset in enumerate(subsets)]


# ---------------------------------------------------------------------------------------------
# Federated datasets and their cache
# ---------------------------------------------------------------------------------------------

@dataclass
class FederatedGraph:
    """The clients of one partitioned dataset (:func:`load_federated`)."""

    clients: list[Data]
    name: str
    mode: str
    num_clients: int
    seed: int
    num_features: int
    num_classes: int

    def __len__(self) -> int:
        return len(self.clients)

    def __getitem__(self, client_id: int) -> Data:
        return self.clients[client_id]

    def __iter__(self) -> Iterator[Data]:
        return iter(self.clients)

    def summary(self) -> list[dict]:
        """Per client: ``client_id``, ``nodes``, ``edges`` (directed entries of
        ``edge_index``), ``train`` / ``val`` / ``test`` node counts and ``labels`` (the
        number of nodes of each class)."""
        return client_summary(self.clients, self.num_classes)

    def plot_label_distribution(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG of stacked bars (one per client) of the label distribution."""
        title = f"{self.name}, {self.mode}, {self.num_clients} clients (seed {self.seed})"
        return plot_label_distribution(self.clients, self.num_classes, path, title)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.name}, mode={self.mode!r}, "
                f"num_clients={self.num_clients}, seed={self.seed})")


def _cache_file(data: Data, name: str, root: str | os.PathLike[str] | None, mode: str,
                num_clients: int, seed: int) -> Path:
    folder, required, optional = dataset_files(name, root)
    files = [path for path in (*required, *optional) if path is not None]
    options = {"dataset": data.name, "mode": mode, "num_clients": num_clients, "seed": seed,
               "version": PARTITION_VERSION, "processing": PROCESSING_VERSION}
    if not files:  # a generated dataset (csbm): key on its content instead of raw files
        options["content"] = hashlib.sha256(data.edge_index.numpy().tobytes()
                                            + data.x.numpy().tobytes()).hexdigest()
    key = cache_key(files, folder, options)
    return cache_dir() / "federated" / f"{data.name}-{mode}{num_clients}-seed{seed}-{key[:16]}.pt"


def _load_partition(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # a truncated or foreign file is recomputed, not fatal
        warnings.warn(f"Ignoring unreadable partition cache {path} ({err})", stacklevel=3)
        return None


def _save_partition(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        _atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:
        warnings.warn(f"Could not write the partition cache at {path} ({err}); set "
                      f"$GRAPHMOE_CACHE to a writable folder", stacklevel=3)


def _clients_from_cache(graph: Data, payload: dict) -> list[Data]:
    return [_client(graph, subset, edge_index, k)
            for k, (subset, edge_index) in enumerate(zip(payload["global_ids"],
                                                         payload["edge_indices"]))]


def load_federated(name: str, mode: str, num_clients: int, seed: int = 1234,
                   root: str | os.PathLike[str] | None = None,
                   use_cache: bool = True) -> FederatedGraph:
    r"""Load dataset ``name`` and partition it among ``num_clients`` clients as FED-PUB does.

    :func:`graphmoe.data.load_dataset` → largest connected component → row-normalised
    features → one global 20/40/40 split drawn from ``seed`` → :func:`partition_graph`.
    ``global_id`` of a client indexes the nodes of the largest connected component.

    Args:
        name (str): A registered dataset (``graphmoe.data.list_datasets()``).
        mode (str): ``"disjoint"`` or ``"overlapping"``.
        num_clients (int): The number of clients.
        seed (int): Seed of the split and of the partition.
        root (str or PathLike, optional): The data root (default ``$GRAPHMOE_DATA``).
        use_cache (bool): Read and write the partition under ``cache_dir()/federated/``,
            keyed by the dataset's content hash, ``mode``, ``num_clients`` and ``seed``.
    """
    data = load_dataset(name, root)
    _check_partition_args(data, mode, num_clients)
    path = _cache_file(data, name, root, mode, num_clients, seed) if use_cache else None
    payload = _load_partition(path) if path is not None else None
    if payload is not None:
        clients = _clients_from_cache(_prepare(data, payload["lcc"], seed), payload)
    else:
        lcc = largest_component_nodes(data.edge_index, data.num_nodes)
        clients = partition_graph(_prepare(data, lcc, seed), mode, num_clients, seed)
        if path is not None:
            _save_partition(path, {"lcc": lcc,
                                   "global_ids": [c.global_id for c in clients],
                                   "edge_indices": [c.edge_index for c in clients]})
    return FederatedGraph(clients=clients, name=data.name, mode=mode, num_clients=num_clients,
                          seed=seed, num_features=int(data.x.size(-1)),
                          num_classes=int(data.num_classes))
