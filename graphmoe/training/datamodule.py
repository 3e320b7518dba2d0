"""LightningDataModules over :func:`graphmoe.data.load_dataset` graphs."""
from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from graphmoe.training.metrics import OGB_PREFIX, metric_key

__all__ = ["GraphDataModule", "NodeDataModule", "full_batch_loader"]


def _first(items: list[Data]) -> Data:
    return items[0]


def full_batch_loader(data: Data) -> DataLoader:
    """A loader yielding ``data`` itself once per epoch (full-batch training)."""
    return DataLoader([data], batch_size=1, collate_fn=_first)


class GraphDataModule(pl.LightningDataModule):
    """One graph from :func:`graphmoe.data.load_dataset`, loaded on first use.

    The graph is loaded lazily but before training starts: reading :attr:`num_features`,
    :attr:`num_classes` or :attr:`metric` (as the CLI's argument links do when it builds the
    model) loads it, so sizes are known before any model exists.

    Args:
        name: dataset name (``graphmoe datasets`` lists them).
        root: data root; default ``$GRAPHMOE_DATA``, else ``./datasets``.
        split: index of the fixed split for datasets that ship several.
        seed: seed of random splits and synthetic graphs.
        dataset_options: extra keyword options for ``load_dataset`` (e.g. CSBM parameters).
        transform: a PyG transform applied once to the loaded graph, e.g.
            ``torch_geometric.transforms.NormalizeFeatures()`` (in YAML: a ``class_path``).
    """

    def __init__(
        self,
        name: str = "csbm",
        root: str | None = None,
        split: int = 0,
        seed: int = 0,
        dataset_options: dict[str, Any] | None = None,
        transform: BaseTransform | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.root = root
        self.split = split
        self.seed = seed
        self.dataset_options = dict(dataset_options or {})
        self.transform = transform
        self._data: Data | None = None

    @classmethod
    def from_data(cls, data: Data, **kwargs: Any) -> GraphDataModule:
        """Wrap an in-memory graph (with ``train_mask``/``val_mask``/``test_mask``) instead of loading."""
        kwargs.setdefault("name", str(getattr(data, "name", "custom")))
        module = cls(**kwargs)
        module._data = data
        return module

    @property
    def data(self) -> Data:
        """The graph (loaded on first access)."""
        if self._data is None:
            from graphmoe.data import load_dataset

            data = load_dataset(
                self.name, self.root, split=self.split, seed=self.seed, **self.dataset_options
            )
            self._data = self.transform(data) if self.transform is not None else data
        return self._data

    @property
    def num_features(self) -> int:
        """Number of node features (``data.x.size(-1)``)."""
        return int(self.data.x.size(-1))

    @property
    def num_classes(self) -> int:
        """Number of classes (``data.num_classes``, else ``y.max() + 1``; labels for multi-label)."""
        data = self.data
        value = getattr(data, "num_classes", None)
        if isinstance(value, Tensor):
            value = value.item()
        if value is None:
            y = data.y
            value = y.size(-1) if self.multilabel else int(y.max()) + 1
        return int(value)

    @property
    def multilabel(self) -> bool:
        """Whether targets are ``[num_nodes, num_labels]`` 0/1 matrices."""
        y = self.data.y
        return y.dim() > 1 and y.size(-1) > 1

    @property
    def metric(self) -> str:
        """The dataset's evaluation metric: ``data.metric`` (default ``"acc"``).

        Datasets that the ``ogb`` package knows (``ogbn-arxiv``, ...) are scored by its official
        ``Evaluator``: ``"ogb:<name>"``, logged under the same key (``acc``/``rocauc``).
        """
        data = self.data
        metric = str(getattr(data, "metric", None) or "acc")
        name = str(getattr(data, "name", self.name))
        if name.startswith(("ogbn-", "ogbg-", "ogbl-")) and not metric.startswith(OGB_PREFIX):
            try:
                if metric_key(OGB_PREFIX + name) == metric:
                    return OGB_PREFIX + name
            except ValueError:  # a custom dataset in OGB format, unknown to ogb's table
                pass
        return metric

    def prepare_data(self) -> None:
        """Load (and for online datasets, download and process) the graph once."""
        _ = self.data

    def setup(self, stage: str) -> None:
        _ = self.data


class NodeDataModule(GraphDataModule):
    r"""Node classification batches: the full graph, or sampled neighbourhoods of seed nodes.

    With ``batch_size=None`` (default) every stage gets the whole graph once per epoch and the
    module picks nodes with ``train_mask``/``val_mask``/``test_mask``. With a ``batch_size``,
    :func:`graphmoe.data.neighbor_loader` samples ``num_neighbors[l]`` neighbours per layer
    around ``batch_size`` seed nodes of the stage's mask (seeds come first in each batch).

    Args:
        name, root, split, seed, dataset_options, transform: see :class:`GraphDataModule`.
        batch_size: seed nodes per mini-batch; ``None`` for full-batch.
        num_neighbors: neighbours sampled per layer (``-1``: all); default ``[10, 10]`` when
            ``batch_size`` is set. Use one entry per message-passing layer.
        num_workers: loader worker processes.
        sparse_features: store ``data.x`` as a ``torch.sparse_csr`` tensor (after
            ``transform``), for sparse bag-of-words / one-hot features: the first layer's
            product with it then costs :math:`O(\mathrm{nnz})`. Full-batch only, and for the
            backbones that accept sparse features (MLP, GCN, GraphSAGE); the others raise a
            ``ValueError``. :attr:`num_features` is unchanged. (default: ``False``)
    """

    def __init__(
        self,
        name: str = "csbm",
        root: str | None = None,
        split: int = 0,
        seed: int = 0,
        batch_size: int | None = None,
        num_neighbors: list[int] | None = None,
        num_workers: int = 0,
        dataset_options: dict[str, Any] | None = None,
        transform: BaseTransform | None = None,
        sparse_features: bool = False,
    ) -> None:
        super().__init__(name, root, split, seed, dataset_options, transform)
        if batch_size is not None and batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}")
        if sparse_features and batch_size is not None:
            raise ValueError("sparse_features needs full-batch training (batch_size=None): "
                             "the neighbour sampler cannot slice sparse node features")
        if num_neighbors is not None and batch_size is None:
            raise ValueError("num_neighbors needs a batch_size (sampling is only for mini-batches)")
        self.batch_size = batch_size
        self.num_neighbors = list(num_neighbors) if num_neighbors is not None else None
        self.num_workers = num_workers
        self.sparse_features = sparse_features
        self.save_hyperparameters()

    @property
    def data(self) -> Data:
        """The graph (loaded on first access); ``x`` in CSR layout with ``sparse_features``."""
        data = super().data
        x = data.get("x")
        if self.sparse_features and x is not None and x.layout == torch.strided:
            data = copy.copy(data)  # a graph given to `from_data` keeps its dense x
            data.x = x.to_sparse_csr()
            self._data = data
        return data

    @property
    def sampled(self) -> bool:
        """Whether batches are sampled mini-batches."""
        return self.batch_size is not None

    def _loader(self, mask: Tensor | None, shuffle: bool) -> Any:
        if not self.sampled:
            return full_batch_loader(self.data)
        from graphmoe.data import neighbor_loader

        return neighbor_loader(
            self.data,
            self.num_neighbors or [10, 10],
            input_nodes=mask,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
        )

    def _mask(self, stage: str) -> Tensor:
        mask = self.data.get(f"{stage}_mask")
        if mask is None:
            raise ValueError(f"dataset {self.name!r} has no {stage}_mask; pick a split with split=")
        return mask

    def train_dataloader(self) -> Any:
        return self._loader(self._mask("train") if self.sampled else None, shuffle=True)

    def val_dataloader(self) -> Any:
        return self._loader(self._mask("val") if self.sampled else None, shuffle=False)

    def test_dataloader(self) -> Any:
        return self._loader(self._mask("test") if self.sampled else None, shuffle=False)

    def predict_dataloader(self) -> Any:
        return self._loader(None, shuffle=False)
