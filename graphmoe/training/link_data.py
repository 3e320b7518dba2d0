"""The data side of link prediction: :class:`LinkDataModule`, a link split
(:mod:`graphmoe.data.link`) handed whole to every stage (the validation and test negatives come
with the split; training negatives are drawn by :class:`~graphmoe.training.link.LinkPredictor`)."""
from __future__ import annotations

from typing import Any

from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from graphmoe.training.datamodule import GraphDataModule, full_batch_loader

__all__ = ["LinkDataModule"]


class LinkDataModule(GraphDataModule):
    """A link split (:func:`graphmoe.data.link.load_link_dataset`), full batch at every stage.

    Args:
        name: a link dataset (``usair``, ``ogbl-collab``, ...) or any node dataset (``cora``).
        root: data root; default ``$GRAPHMOE_DATA``, else ``./datasets``.
        split, seed: which seeded split (ignored by ``ogbl-*``, which have an official split).
        val_ratio, test_ratio: held-out fractions of the undirected edges (default 5% / 10%).
        neg_ratio: negatives per validation / test positive.
        dataset_options: format options (``features="onehot"|"random"|"constant"`` for the
            featureless SEAL sets, ``meta_dict`` for OGB).
        transform: a PyG transform applied once to the split, e.g. ``NormalizeFeatures()``.
    """

    def __init__(
        self,
        name: str = "cora",
        root: str | None = None,
        split: int = 0,
        seed: int = 0,
        val_ratio: float = 0.05,
        test_ratio: float = 0.1,
        neg_ratio: float = 1.0,
        dataset_options: dict[str, Any] | None = None,
        transform: BaseTransform | None = None,
    ) -> None:
        super().__init__(name, root, split, seed, dataset_options, transform)
        self.val_ratio, self.test_ratio, self.neg_ratio = val_ratio, test_ratio, neg_ratio
        self.save_hyperparameters()

    @classmethod
    def from_data(cls, data: Data, **kwargs: Any) -> LinkDataModule:
        """Wrap an in-memory link split (checked with :func:`~graphmoe.data.link.check_link_split`)."""
        from graphmoe.data.link import check_link_split

        check_link_split(data)
        return super().from_data(data, **kwargs)  # type: ignore[return-value]

    @property
    def data(self) -> Data:
        """The link split (loaded on first access)."""
        if self._data is None:
            from graphmoe.data.link import load_link_dataset

            data = load_link_dataset(
                self.name, self.root, seed=self.seed, split=self.split, val_ratio=self.val_ratio,
                test_ratio=self.test_ratio, neg_ratio=self.neg_ratio, **self.dataset_options)
            self._data = self.transform(data) if self.transform is not None else data
        return self._data

    @property
    def num_classes(self) -> None:
        """``None``: link prediction has no classes. (The CLI links ``data.num_classes`` to
        ``model.out_channels``; ``None`` leaves the embedding size at ``hidden_channels``.)"""
        return None

    @property
    def multilabel(self) -> bool:
        return False

    @property
    def metric(self) -> str:
        """``data.metric``: ``"rocauc"`` (SEAL, node datasets), or ``"ogb:<name>"`` for the
        ``ogbl-*`` datasets that ogb's evaluator knows (else their ``hits@K``)."""
        return super().metric

    def train_dataloader(self) -> Any:
        return full_batch_loader(self.data)

    def val_dataloader(self) -> Any:
        return full_batch_loader(self.data)

    def test_dataloader(self) -> Any:
        return full_batch_loader(self.data)

    def predict_dataloader(self) -> Any:
        return full_batch_loader(self.data)
