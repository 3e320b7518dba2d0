"""Mini-batch loaders for graphs that do not fit full-batch."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch_geometric.typing
from torch_geometric.data import Data
from torch_geometric.loader import NeighborLoader, NodeLoader
from torch_geometric.typing import InputNodes

from graphmoe.data.sampler import CSRNeighborSampler, check_num_neighbors

# `NeighborLoader` options that the pure-PyTorch sampler supports only at
# these values (anything else needs `pyg-lib`):
_FALLBACK_ONLY = {
    'subgraph_type': ('directional', ),
    'disjoint': (False, ),
    'directed': (True, ),
    'sample_direction': ('forward', ),
    'temporal_strategy': ('uniform', ),
    'time_attr': (None, ),
    'weight_attr': (None, ),
    'input_time': (None, ),
}
# `NeighborSampler` options that only tune its CSR build; ignored here:
_IGNORED = ('is_sorted', 'share_memory')


def neighbor_loader(
    data: Data,
    num_neighbors: Sequence[int],
    input_nodes: InputNodes = None,
    batch_size: int = 1,
    shuffle: bool = False,
    *,
    replace: bool = False,
    **loader_kwargs: Any,
) -> NodeLoader:
    r"""A neighbour-sampling mini-batch loader that runs with or without
    :obj:`pyg-lib`.

    With :obj:`pyg-lib` installed, returns PyG's own
    :class:`~torch_geometric.loader.NeighborLoader`. Otherwise returns a
    :class:`~torch_geometric.loader.NodeLoader` driven by
    :class:`~graphmoe.data.sampler.CSRNeighborSampler`, whose batches look the
    same: seed nodes first, :obj:`batch_size`, :obj:`n_id`, :obj:`e_id`,
    :obj:`input_id`, :obj:`num_sampled_nodes`, :obj:`num_sampled_edges`.

    .. code-block:: python

        loader = neighbor_loader(data, [15, 10], input_nodes=data.train_mask,
                                 batch_size=512, shuffle=True)
        for batch in loader:
            out = model(batch.x, batch.edge_index)[:batch.batch_size]

    Args:
        data (torch_geometric.data.Data): The graph.
        num_neighbors (List[int]): In-edges to sample per node and hop
            (:obj:`-1` = all).
        input_nodes (torch.Tensor, optional): Seed node indices or a boolean
            mask; all nodes if :obj:`None`. (default: :obj:`None`)
        batch_size (int, optional): Seed nodes per batch. (default: :obj:`1`)
        shuffle (bool, optional): Reshuffle the seed nodes every epoch.
            (default: :obj:`False`)
        replace (bool, optional): Sample with replacement.
            (default: :obj:`False`)
        **loader_kwargs (optional): Further arguments of
            :class:`~torch_geometric.loader.NodeLoader` and
            :class:`torch.utils.data.DataLoader` (e.g. :obj:`num_workers`,
            :obj:`transform`, :obj:`drop_last`).
    """
    num_neighbors = check_num_neighbors(num_neighbors)
    if torch_geometric.typing.WITH_PYG_LIB:
        return NeighborLoader(data, num_neighbors, input_nodes=input_nodes,
                              batch_size=batch_size, shuffle=shuffle, replace=replace,
                              **loader_kwargs)

    _check_fallback_kwargs(loader_kwargs)
    sampler = CSRNeighborSampler(data, num_neighbors, replace=replace)
    return NodeLoader(data, node_sampler=sampler, input_nodes=input_nodes,
                      batch_size=batch_size, shuffle=shuffle, **loader_kwargs)


def _check_fallback_kwargs(loader_kwargs: dict[str, Any]) -> None:
    r"""Drops the :obj:`NeighborLoader` options that the pure-PyTorch sampler
    handles implicitly, and rejects those it cannot honour."""
    for key in _IGNORED:
        loader_kwargs.pop(key, None)
    for key, allowed in _FALLBACK_ONLY.items():
        if key not in loader_kwargs:
            continue
        value = loader_kwargs.pop(key)
        if str(getattr(value, 'value', value)) not in map(str, allowed):
            raise ValueError(f"'{key}={value!r}' needs pyg-lib; without it "
                             f"neighbor_loader supports only {key}={allowed[0]!r}")
