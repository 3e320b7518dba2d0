"""Neighbour sampling on CSR in pure PyTorch (no ``pyg-lib``, no ``torch-sparse``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    NegativeSampling,
    NodeSamplerInput,
    SamplerOutput,
)

# Rows with more than `k` in-edges use Floyd's algorithm (O(k^2) work) once
# their size exceeds `k^2 / _FLOYD_RATIO`, and a random-key sort (O(deg log
# deg)) below that:
_FLOYD_RATIO = 16


def check_num_neighbors(num_neighbors: Any) -> list[int]:
    r"""Validates :obj:`num_neighbors` and returns it as a list of ints.

    Raises:
        ValueError: If :obj:`num_neighbors` is not a non-empty list of ints
            that are each :obj:`-1` (all neighbours) or :obj:`>= 0`.
    """
    if not isinstance(num_neighbors, (Sequence, Tensor)) or isinstance(num_neighbors, str):
        raise ValueError(f"'num_neighbors' must be a list of ints (one per hop), "
                         f"got {type(num_neighbors).__name__}")
    values = num_neighbors.tolist() if isinstance(num_neighbors, Tensor) else list(num_neighbors)
    if len(values) == 0:
        raise ValueError("'num_neighbors' must hold at least one hop, got an empty list")
    for hop, k in enumerate(values):
        if isinstance(k, bool) or not isinstance(k, int) or k < -1:
            raise ValueError(f"'num_neighbors' must hold ints >= -1 (-1 = all neighbours), "
                             f"got {k!r} for hop {hop}")
    return values


def to_csc(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""Converts :obj:`edge_index` into target-major compressed form.

    Returns :obj:`(colptr, row, perm)`: the in-edges of node :obj:`i` are the
    CSC positions :obj:`colptr[i]:colptr[i + 1]`, their sources are
    :obj:`row[colptr[i]:colptr[i + 1]]` and their ids in :obj:`edge_index` are
    :obj:`perm[colptr[i]:colptr[i + 1]]` (increasing, as the sort is stable).
    """
    src, dst = edge_index[0], edge_index[1]
    perm = torch.argsort(dst, stable=True)
    colptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(dst, minlength=num_nodes), dim=0, out=colptr[1:])
    return colptr, src[perm], perm


def _segment_arange(count: Tensor) -> tuple[Tensor, Tensor]:
    r"""For segments of sizes :obj:`count`, returns the segment id and the
    offset within its segment of every element (both of length
    :obj:`count.sum()`)."""
    seg = torch.repeat_interleave(torch.arange(count.numel()), count)
    start = torch.cumsum(count, dim=0) - count
    return seg, torch.arange(seg.numel()) - start[seg]


def _randint_below(high: Tensor) -> Tensor:
    r"""Draws one uniform integer in :obj:`[0, high)` per entry of :obj:`high`
    (all :obj:`> 0`) from torch's global generator."""
    out = (torch.rand(high.shape, dtype=torch.double) * high).long()
    return torch.minimum(out, high - 1)  # `rand * high` may round up to `high`


def _sample_by_sort(deg: Tensor, k: int) -> Tensor:
    r"""For rows of sizes :obj:`deg` (all :obj:`> k`), draws :obj:`k` distinct
    offsets per row uniformly by giving every candidate a random key and
    keeping the :obj:`k` smallest keys of each row.

    Returns the offsets row by row, increasing within a row.
    """
    row, offset = _segment_arange(deg)
    # Row id in the high bits, a random key in the low ones:
    key = (row << 31) | torch.randint(0, 1 << 31, (row.numel(), ))
    order = torch.argsort(key)
    # Sorting keeps rows contiguous, so a row starts at the same position
    # before and after it; the rank of `order[j]` in its row is `j - start`:
    rank = torch.arange(order.numel()) - (order - offset[order])
    chosen = torch.sort(order[rank < k]).values
    return offset[chosen]


def _sample_by_floyd(deg: Tensor, k: int) -> Tensor:
    r"""For rows of sizes :obj:`deg` (all :obj:`> k`), draws :obj:`k` distinct
    offsets per row uniformly with Floyd's algorithm (Bentley and Floyd,
    "Programming Pearls: A Sample of Brilliance", CACM 1987), vectorised over
    rows: :math:`\mathcal{O}(k^2)` work per row, independent of its size.

    Returns a :obj:`[num_rows, k]` tensor, increasing along each row.
    """
    out = deg.new_empty(deg.numel(), k)
    for i in range(k):
        top = deg - k + i
        pick = _randint_below(top + 1)
        seen = (out[:, :i] == pick.unsqueeze(1)).any(dim=1)
        out[:, i] = torch.where(seen, top, pick)
    return torch.sort(out, dim=1).values


def _unique_first(index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Returns the sorted unique values of :obj:`index`, the inverse map, and
    the position of each unique value's first occurrence in :obj:`index`."""
    uniq, inv = torch.unique(index, return_inverse=True)
    first = torch.full_like(uniq, index.numel())
    first.scatter_reduce_(0, inv, torch.arange(index.numel()), reduce='amin')
    return uniq, inv, first


class _NodeIndex:
    r"""Maps global node ids to batch-local ids, growing hop by hop.

    Keeps the seen global ids sorted so that a lookup is one
    :meth:`torch.searchsorted`: memory and time scale with the batch, not
    with the graph.
    """
    def __init__(self, seed: Tensor) -> None:
        # A repeated seed maps to its first copy:
        self.ids, _, self.local = _unique_first(seed)

    def insert(self, glob: Tensor, offset: int) -> tuple[Tensor, Tensor]:
        r"""Returns the local ids of :obj:`glob` and the global ids of the
        nodes not seen before, which get local ids :obj:`offset, offset + 1,
        ...` in order of first appearance in :obj:`glob`."""
        uniq, inv, first = _unique_first(glob)
        pos = torch.searchsorted(self.ids, uniq)
        found = torch.zeros_like(uniq, dtype=torch.bool)
        if self.ids.numel() > 0:
            pos.clamp_(max=self.ids.numel() - 1)
            found = self.ids[pos] == uniq
        local = torch.empty_like(uniq)
        local[found] = self.local[pos[found]]

        new, order = uniq[~found], torch.argsort(first[~found])
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel())
        local[~found] = offset + rank

        self.ids, perm = torch.sort(torch.cat([self.ids, new]))
        self.local = torch.cat([self.local, offset + rank])[perm]
        return local[inv], new[order]


class CSRNeighborSampler(BaseSampler):
    r"""Directed neighbour sampler in pure PyTorch, a drop-in for
    :class:`torch_geometric.sampler.NeighborSampler` on homogeneous graphs
    where neither :obj:`pyg-lib` nor :obj:`torch-sparse` is installed.

    From the seed nodes :math:`\mathcal{V}_0`, hop :math:`h` samples for every
    node :math:`i \in \mathcal{V}_{h-1}` up to :math:`k_h` of its in-edges
    :math:`(j \rightarrow i)`, uniformly, and adds the sources :math:`j` not
    seen yet to :math:`\mathcal{V}_h` (the GraphSAGE sampler of Hamilton et
    al., "Inductive Representation Learning on Large Graphs", NeurIPS 2017).
    Only sampled edges are kept (PyG's :obj:`subgraph_type="directional"`,
    :obj:`disjoint=False`), so :math:`L` hops feed an :math:`L`-layer GNN.

    Every hop is vectorised over its frontier (Python loops run over hops
    and, for hub nodes, over the :math:`k_h` draws, never over nodes).
    Without replacement, a node with more than :math:`k_h` in-edges gets
    :math:`k_h` distinct ones, uniformly: by a random-key sort within its
    segment of the CSR, or, for hubs with more than :math:`k_h^2 / 16`
    in-edges, by Floyd's algorithm in :math:`\mathcal{O}(k_h^2)`. With
    replacement, :math:`k_h` offsets are drawn independently. Randomness comes
    from torch's global generator, so :meth:`torch.manual_seed` makes sampling
    reproducible.

    The output follows PyG's conventions: seed nodes first in :obj:`node`,
    then the nodes of hop 1, 2, ...; :obj:`(row, col)` are batch-local
    (source, target) pairs, grouped by hop and by target; :obj:`edge` holds
    ids into the original :obj:`edge_index`.

    Args:
        data (torch_geometric.data.Data): The graph (on any device; the
            sampler keeps a CPU copy of its structure).
        num_neighbors (List[int]): The number of in-edges to sample per node
            for each hop; :obj:`-1` takes all of them.
        replace (bool, optional): Sample with replacement.
            (default: :obj:`False`)
    """
    def __init__(
        self,
        data: Data,
        num_neighbors: Sequence[int],
        replace: bool = False,
    ) -> None:
        self.num_neighbors = check_num_neighbors(num_neighbors)
        self.replace = bool(replace)
        self.num_nodes, edge_index = _graph_of(data)
        self.colptr, self.row, self.perm = to_csc(edge_index, self.num_nodes)

    @property
    def num_hops(self) -> int:
        return len(self.num_neighbors)

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs: Any) -> SamplerOutput:
        r"""Samples the computation graph of the seed nodes in :obj:`index`."""
        if index.input_type is not None:
            raise TypeError(f"'{self.__class__.__name__}' samples homogeneous graphs only, "
                            f"got seed nodes of type {index.input_type!r}")
        if index.time is not None:
            raise NotImplementedError(f"'{self.__class__.__name__}' does not support "
                                      f"temporal sampling (seed times were given)")
        out = self.sample(index.node)
        out.metadata = (index.input_id, index.time)
        return out

    def sample_from_edges(
        self,
        index: EdgeSamplerInput,
        neg_sampling: NegativeSampling | None = None,
    ) -> SamplerOutput:
        raise NotImplementedError(f"'{self.__class__.__name__}' samples from nodes only")

    def sample(self, seed: Tensor) -> SamplerOutput:
        r"""Samples :obj:`num_hops` hops around the global node ids
        :obj:`seed` (repeated seeds are kept, each sampled on its own)."""
        seed = self._check_seed(seed)
        index = _NodeIndex(seed)
        nodes, rows, cols, edges = [seed], [], [], []
        begin, end = 0, seed.numel()
        for k in self.num_neighbors:
            target, pos = self._sample_hop(nodes[-1], k)
            source, new_nodes = index.insert(self.row[pos], offset=end)
            rows.append(source)
            cols.append(begin + target)
            edges.append(self.perm[pos])
            nodes.append(new_nodes)
            begin, end = end, end + new_nodes.numel()

        return SamplerOutput(
            node=torch.cat(nodes),
            row=torch.cat(rows),
            col=torch.cat(cols),
            edge=torch.cat(edges),
            batch=None,
            num_sampled_nodes=[n.numel() for n in nodes],
            num_sampled_edges=[e.numel() for e in edges],
        )

    def _sample_hop(self, frontier: Tensor, k: int) -> tuple[Tensor, Tensor]:
        r"""Samples in-edges of :obj:`frontier`; returns for each sampled edge
        the index of its target in :obj:`frontier` and its CSC position,
        grouped by target."""
        start = self.colptr[frontier]
        deg = self.colptr[frontier + 1] - start
        if k < 0:
            target, offset = _segment_arange(deg)
        elif self.replace:
            target, _ = _segment_arange(torch.where(deg > 0, k, 0))
            offset = _randint_below(deg[target])
        else:
            target, offset = _segment_arange(deg.clamp(max=k))
            over = deg > k
            if k > 0 and bool(over.any()):
                hub = over & (deg * _FLOYD_RATIO > k * k)
                mid = over & ~hub
                offset[mid[target]] = _sample_by_sort(deg[mid], k)
                offset[hub[target]] = _sample_by_floyd(deg[hub], k).view(-1)
        return target, start[target] + offset

    def _check_seed(self, seed: Tensor) -> Tensor:
        if not isinstance(seed, Tensor) or seed.dim() != 1:
            raise ValueError("The seed nodes must be a 1-dimensional index tensor")
        if seed.is_floating_point() or seed.is_complex() or seed.dtype == torch.bool:
            raise ValueError(f"The seed nodes must be integer node indices, got {seed.dtype}")
        seed = seed.to(device='cpu', dtype=torch.long)
        if seed.numel() > 0 and (int(seed.min()) < 0 or int(seed.max()) >= self.num_nodes):
            raise ValueError(f"The seed nodes must lie in [0, {self.num_nodes}), got "
                             f"values in [{int(seed.min())}, {int(seed.max())}]")
        return seed

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_neighbors={self.num_neighbors}, '
                f'replace={self.replace})')


def _graph_of(data: Data) -> tuple[int, Tensor]:
    r"""Returns the number of nodes and a checked CPU :obj:`edge_index`."""
    if not isinstance(data, Data):
        raise TypeError(f"'data' must be a homogeneous torch_geometric.data.Data, "
                        f"got {type(data).__name__}")
    num_nodes = data.num_nodes
    if num_nodes is None:
        raise ValueError("'data' has no nodes: set 'num_nodes' or 'x'")
    edge_index = data.edge_index
    if edge_index is None:
        return num_nodes, torch.empty(2, 0, dtype=torch.long)
    edge_index = edge_index.as_subclass(Tensor)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'data.edge_index' must have shape [2, num_edges], "
                         f"got {list(edge_index.shape)}")
    if edge_index.is_floating_point() or edge_index.is_complex():
        raise ValueError(f"'data.edge_index' must hold integer node indices, "
                         f"got {edge_index.dtype}")
    edge_index = edge_index.to(device='cpu', dtype=torch.long)
    if edge_index.numel() > 0 and (int(edge_index.min()) < 0
                                   or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"'data.edge_index' must hold node indices in [0, {num_nodes}), "
                         f"got values in [{int(edge_index.min())}, {int(edge_index.max())}]")
    return num_nodes, edge_index
