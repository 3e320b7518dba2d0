r"""Graph-level datasets: many small graphs with one label vector each, plus their split.

:func:`graphmoe.data.load_dataset` returns a :class:`GraphDataset` for ``task="graph"``
datasets (MoleculeNet). It is a PyG :class:`~torch_geometric.data.InMemoryDataset` (so
``dataset[idx]``, slicing by an index tensor and :class:`torch_geometric.loader.DataLoader`
work as usual) with OGB's ``PygGraphPropPredDataset`` attributes: ``split_idx`` /
:meth:`GraphDataset.get_idx_split` (``{"train", "valid", "test"}`` index tensors),
``num_tasks``, ``task_type``, ``eval_metric`` (= ``metric``: ``"rocauc"`` for classification,
``"rmse"`` for regression).

Each graph is ``Data(x, edge_index, edge_attr, y)`` with ``y`` of shape ``[1, num_tasks]``
(float; ``NaN`` = missing label), so that a batch has ``y`` of shape ``[batch_size, num_tasks]``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

__all__ = ["GraphDataset", "unpack_graphs", "validate_graph_dataset"]


def unpack_graphs(packed: Data) -> list[Data]:
    """The graphs of a packed dataset (``node_ptr``/``edge_ptr`` offsets; see
    :mod:`graphmoe.data.formats.moleculenet`)."""
    node_ptr, edge_ptr = packed.node_ptr.tolist(), packed.edge_ptr.tolist()
    edge_attr = packed.get("edge_attr")
    graphs = []
    for i in range(len(node_ptr) - 1):
        n0, n1, e0, e1 = node_ptr[i], node_ptr[i + 1], edge_ptr[i], edge_ptr[i + 1]
        graph = Data(x=packed.x[n0:n1], edge_index=packed.edge_index[:, e0:e1],
                     y=packed.y[i:i + 1], num_nodes=n1 - n0)
        if edge_attr is not None:
            graph.edge_attr = edge_attr[e0:e1]
        graphs.append(graph)
    return graphs


def validate_graph_dataset(packed: Data, name: str) -> None:
    """Raise a one-sentence ``ValueError`` for an empty molecule, local edge indices out of range,
    non-finite features or a malformed label matrix (``NaN`` labels are allowed: missing)."""
    node_ptr, edge_ptr = packed.node_ptr, packed.edge_ptr
    sizes = node_ptr.diff()
    if sizes.numel() == 0:
        raise ValueError(f"graph dataset {name!r} holds no graphs")
    if bool((sizes <= 0).any()):
        first = int((sizes <= 0).nonzero()[0])
        raise ValueError(f"graph dataset {name!r}: graph {first} has no nodes (empty molecule)")
    if packed.y.dim() != 2 or packed.y.size(0) != sizes.numel():
        raise ValueError(f"graph dataset {name!r}: y must be [num_graphs={sizes.numel()}, "
                         f"num_tasks], got {tuple(packed.y.shape)}")
    if bool(torch.isinf(packed.y).any()):
        raise ValueError(f"graph dataset {name!r}: y holds infinite labels")
    ei = packed.edge_index
    if ei.numel():
        graph_of_edge = torch.repeat_interleave(torch.arange(sizes.numel()), edge_ptr.diff())
        limit = sizes[graph_of_edge]
        if bool(((ei < 0) | (ei >= limit)).any()):
            raise ValueError(f"graph dataset {name!r}: edge_index holds node indices outside "
                             f"their molecule")
    if packed.x.is_floating_point() and not bool(torch.isfinite(packed.x).all()):
        raise ValueError(f"graph dataset {name!r}: x contains NaN or infinite values")


class GraphDataset(InMemoryDataset):
    r"""A graph-level dataset held in memory, with its split and task description.

    Args:
        graphs (list[Data]): the graphs, each with ``y`` of shape ``[1, num_tasks]``.
        name (str): dataset name.
        task_type (str): ``"binary classification"`` or ``"regression"``.
        split_idx (dict): ``{"train", "valid", "test"}`` long index tensors.
        metric (str, optional): ``"rocauc"`` or ``"rmse"``; default from ``task_type``.
        info (dict, optional): further plain attributes (``smiles``, ``scaffold``, ``targets``,
            ``num_invalid``, ``invalid_rows``, ``split_scheme``, ...), set on the dataset.
    """

    def __init__(self, graphs: Sequence[Data], name: str, task_type: str,
                 split_idx: Mapping[str, Tensor], metric: str | None = None,
                 info: Mapping[str, Any] | None = None) -> None:
        super().__init__(None)
        if not graphs:
            raise ValueError(f"graph dataset {name!r} holds no graphs")
        self.name = name
        self.task_type = task_type
        self.metric = metric or ("rmse" if task_type == "regression" else "rocauc")
        self.num_tasks = int(graphs[0].y.size(-1))
        for key in ("train", "valid", "test"):
            if key not in split_idx:
                raise ValueError(f"split_idx needs 'train', 'valid' and 'test', got {sorted(split_idx)}")
        self.split_idx = {k: torch.as_tensor(split_idx[k], dtype=torch.long)
                          for k in ("train", "valid", "test")}
        for key, value in dict(info or {}).items():
            setattr(self, key, value)
        self._data, self.slices = self.collate(list(graphs))

    @property
    def eval_metric(self) -> str:
        """OGB's name for :attr:`metric`."""
        return self.metric

    def get_idx_split(self) -> dict[str, Tensor]:
        """``{"train", "valid", "test"}`` index tensors (as OGB's datasets)."""
        return dict(self.split_idx)

    def subset(self, stage: str) -> GraphDataset:
        """The graphs of ``stage`` (``"train"``, ``"valid"``/``"val"`` or ``"test"``)."""
        key = "valid" if stage == "val" else stage
        if key not in self.split_idx:
            raise ValueError(f"stage must be 'train', 'valid' or 'test', got {stage!r}")
        return self[self.split_idx[key]]

    def __repr__(self) -> str:
        sizes = "/".join(str(int(self.split_idx[k].numel())) for k in ("train", "valid", "test"))
        return (f"{type(self).__name__}({self.name!r}, graphs={len(self)}, "
                f"num_tasks={self.num_tasks}, metric={self.metric!r}, split={sizes})")
