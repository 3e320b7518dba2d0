r"""Graph-level property prediction (MoleculeNet / ``ogbg-mol*`` style) as Lightning modules.

* :class:`GraphPropertyDataModule`: a :class:`~graphmoe.data.graphs.GraphDataset` from
  :func:`graphmoe.data.load_dataset` (``bbbp``, ``esol``, ...), mini-batches of graphs from
  :class:`torch_geometric.loader.DataLoader` over its ``train``/``valid``/``test`` split.
* :class:`GraphPredictor`: OGB's molecule GNN recipe (Hu et al., "Open Graph Benchmark",
  NeurIPS 2020): ``AtomEncoder`` -> backbone (``gine``, ``gmoe_gin``, any
  :func:`graphmoe.models.build_model` name) -> global mean pooling -> linear head, trained with
  masked binary cross-entropy (classification; ``NaN`` labels are missing) or MSE (regression),
  scored by OGB's evaluator convention (ROC-AUC averaged over the tasks that have both classes;
  RMSE averaged over tasks).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.transforms import BaseTransform
from torchmetrics import Metric

from graphmoe.training.base import TaskModule, split_output
from graphmoe.training.datamodule import GraphDataModule

__all__ = ["GRAPH_METRICS", "GraphMetric", "GraphPredictor", "GraphPropertyDataModule"]

#: Metrics of graph-level tasks: ROC-AUC (classification, higher is better), RMSE (regression,
#: lower is better: checkpoint with ``mode: min``).
GRAPH_METRICS = ("rocauc", "rmse")
POOLS = {"mean": global_mean_pool, "add": global_add_pool, "max": global_max_pool}


class GraphPropertyDataModule(GraphDataModule):
    """Batches of graphs of a graph-level dataset with its split (scaffold by default).

    Exposes ``num_features`` (node feature columns: 9 OGB atom features), ``num_classes``
    (= the number of tasks, the model's outputs), ``metric`` (``"rocauc"``/``"rmse"``) and
    ``task_type``, which the CLI links into the model.

    Args:
        name, root, split, seed, dataset_options: see :class:`GraphDataModule`;
            ``dataset_options`` may hold ``targets`` (label columns).
        batch_size: graphs per mini-batch (OGB / GMoE: 32).
        split_scheme: ``"scaffold"`` (deterministic) or ``"random"`` (split ``split`` of ``seed``).
        frac_train, frac_valid: split fractions (80/10/10).
        max_graphs: keep only the first ``max_graphs`` graphs of each stage (quick runs, tests).
        num_workers: loader worker processes.
        transform: a PyG transform applied to every graph when it is loaded.
    """

    def __init__(
        self,
        name: str = "bbbp",
        root: str | None = None,
        split: int = 0,
        seed: int = 0,
        batch_size: int = 32,
        split_scheme: str = "scaffold",
        frac_train: float = 0.8,
        frac_valid: float = 0.1,
        max_graphs: int | None = None,
        num_workers: int = 0,
        dataset_options: dict[str, Any] | None = None,
        transform: BaseTransform | None = None,
    ) -> None:
        super().__init__(name, root, split, seed, dataset_options, transform)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_graphs is not None and max_graphs < 1:
            raise ValueError(f"max_graphs must be a positive integer or None, got {max_graphs!r}")
        self.batch_size = batch_size
        self.split_scheme = split_scheme
        self.frac_train, self.frac_valid = frac_train, frac_valid
        self.max_graphs = max_graphs
        self.num_workers = num_workers
        self.save_hyperparameters()

    @property
    def data(self) -> Any:
        """The :class:`~graphmoe.data.graphs.GraphDataset` (loaded on first access)."""
        if self._data is None:
            from graphmoe.data import load_dataset

            dataset = load_dataset(self.name, self.root, split=self.split, seed=self.seed,
                                   split_scheme=self.split_scheme, frac_train=self.frac_train,
                                   frac_valid=self.frac_valid, **self.dataset_options)
            if not hasattr(dataset, "split_idx"):
                raise ValueError(f"dataset {self.name!r} is not a graph-level dataset; use "
                                 f"NodeDataModule (node tasks) or LinkDataModule (link tasks)")
            dataset.transform = self.transform
            self._data = dataset
        return self._data

    @property
    def num_features(self) -> int:
        return int(self.data.num_node_features)

    @property
    def num_classes(self) -> int:
        """The number of tasks (one output per task)."""
        return int(self.data.num_tasks)

    @property
    def multilabel(self) -> bool:
        return self.num_classes > 1

    @property
    def metric(self) -> str:
        return str(self.data.metric)

    @property
    def task_type(self) -> str:
        return str(self.data.task_type)

    def stage_dataset(self, stage: str) -> Any:
        """The graphs of ``stage`` (``"train"``, ``"val"``, ``"test"``), cut to ``max_graphs``."""
        index = self.data.split_idx["valid" if stage == "val" else stage]
        if self.max_graphs is not None:
            index = index[:self.max_graphs]
        return self.data[index]

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.stage_dataset(stage), batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class GraphMetric(Metric):
    """OGB's graph property evaluator (``ogb.graphproppred.Evaluator``) as a torchmetrics
    ``Metric``: ``"rocauc"`` = mean over tasks with both classes among the labelled graphs
    (``NaN`` when no task has), ``"rmse"`` = mean over tasks of the RMSE of labelled graphs."""

    full_state_update = False

    def __init__(self, metric: str, num_tasks: int) -> None:
        super().__init__()
        if metric not in GRAPH_METRICS:
            raise ValueError(f"metric must be one of {GRAPH_METRICS} for a graph task, "
                             f"got {metric!r}")
        from ogb.graphproppred import Evaluator

        self.evaluator = Evaluator.__new__(Evaluator)  # __init__ only reads OGB's master.csv
        self.evaluator.name, self.evaluator.num_tasks = "graphmoe", int(num_tasks)
        self.evaluator.eval_metric = metric
        self.key = metric
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.preds.append(pred.detach().float())
        self.target.append(target.detach().float())

    def compute(self) -> Tensor:
        preds = torch.cat(self.preds) if isinstance(self.preds, list) else self.preds
        target = torch.cat(self.target) if isinstance(self.target, list) else self.target
        try:
            value = self.evaluator.eval({"y_true": target.cpu().numpy(),
                                         "y_pred": preds.cpu().numpy()})[self.key]
        except RuntimeError:  # ROC-AUC: no task with both classes (a tiny split)
            value = np.nan
        return torch.tensor(float(value))


class GraphPredictor(TaskModule):
    r"""Graph-level prediction with any backbone of :func:`graphmoe.models.build_model`.

    .. math::
        \hat{\mathbf{y}}_G = \mathbf{W}\,\frac{1}{|G|}\sum_{v \in G}
        f\big(\mathrm{AtomEncoder}(\mathbf{X}), A, \mathbf{E}\big)_v + \mathbf{b}

    trained with :math:`\frac{1}{|M|}\sum_{(G,t) \in M} \mathrm{BCEWithLogits}(\hat{y}_{G,t},
    y_{G,t})` over the observed labels :math:`M` (classification) or the MSE (regression), plus
    the backbone's auxiliary loss (GMoE's balancing loss). Bond features ``edge_attr`` go to
    backbones with ``supports_edge_attr`` (``gine``, ``gmoe_gin``), which embed them with OGB's
    ``BondEncoder`` in every layer; plain backbones (``gin``, ``gcn``) see the graph only.

    Args:
        backbone: registry name (``gine``, ``gmoe_gin``, ``gin``, ``gcn``, ...).
        hidden_channels: embedding size (OGB / GMoE: 300).
        num_layers: message-passing layers (5).
        dropout: dropout of the backbone (0.5).
        backbone_kwargs: extra backbone arguments (``num_experts``, ``k``, ``hops``, ...).
        node_encoder: ``"atom"`` (OGB ``AtomEncoder`` over the 9 long atom features) or
            ``"linear"`` (float node features).
        pool: readout, ``"mean"`` (OGB default), ``"add"`` or ``"max"``.
        lr, weight_decay: Adam (OGB / GMoE: 1e-3, 0).
        in_channels: node feature columns (linked from the data by the CLI).
        out_channels: number of tasks (linked from ``data.num_classes``).
        metric: ``"rocauc"`` or ``"rmse"`` (linked from the data).
    """

    def __init__(
        self,
        backbone: str = "gine",
        hidden_channels: int = 300,
        num_layers: int = 5,
        dropout: float = 0.5,
        backbone_kwargs: dict[str, Any] | None = None,
        node_encoder: str = "atom",
        pool: str = "mean",
        lr: float = 0.001,
        weight_decay: float = 0.0,
        in_channels: int = -1,
        out_channels: int = -1,
        metric: str = "rocauc",
    ) -> None:
        super().__init__()
        if metric not in GRAPH_METRICS:
            raise ValueError(f"GraphPredictor: metric must be one of {GRAPH_METRICS}, got "
                             f"{metric!r}")
        if node_encoder not in ("atom", "linear"):
            raise ValueError(f"node_encoder must be 'atom' or 'linear', got {node_encoder!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {sorted(POOLS)}, got {pool!r}")
        self.save_hyperparameters()
        self.metric_key = metric
        self.model: torch.nn.Module | None = None
        if in_channels > 0 and out_channels > 0:
            self._build(in_channels, out_channels)

    def _build(self, in_channels: int, out_channels: int) -> None:
        from ogb.graphproppred.mol_encoder import AtomEncoder

        from graphmoe.models import build_model

        hp = self.hparams
        self.hparams.update(in_channels=in_channels, out_channels=out_channels)
        hidden = hp.hidden_channels
        self.encoder = (AtomEncoder(hidden) if hp.node_encoder == "atom"
                        else torch.nn.Linear(in_channels, hidden))
        self.model = build_model(hp.backbone, in_channels=hidden, hidden_channels=hidden,
                                 num_layers=hp.num_layers, dropout=hp.dropout,
                                 **(hp.backbone_kwargs or {}))
        self.head = torch.nn.Linear(int(getattr(self.model, "out_channels", hidden)),
                                    out_channels)
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metric", GraphMetric(hp.metric, out_channels))

    def setup(self, stage: str) -> None:
        """Build from the datamodule's sizes if they were not given; check them."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is None or not hasattr(datamodule, "num_features"):
            return
        if self.model is None:
            self._build(datamodule.num_features, datamodule.num_classes)
        for key, value in (("in_channels", datamodule.num_features),
                           ("out_channels", datamodule.num_classes)):
            if self.hparams[key] != value:
                raise ValueError(f"GraphPredictor has {key}={self.hparams[key]} but the dataset "
                                 f"gives {value}; leave model.{key} out so that it is taken "
                                 f"from the data")

    # -- forward ------------------------------------------------------------------------------

    def _encode_nodes(self, x: Tensor) -> Tensor:
        if self.hparams.node_encoder == "atom":
            from ogb.utils.features import get_atom_feature_dims

            dims = get_atom_feature_dims()
            if x.is_floating_point() or x.dim() != 2 or x.size(1) != len(dims):
                raise ValueError(f"node_encoder='atom' expects OGB's {len(dims)} long atom "
                                 f"features per node (ogb.utils.smiles2graph), got {x.dtype} "
                                 f"{tuple(x.shape)}; use node_encoder='linear' for float features")
        return self.encoder(x)

    def _run(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """Predictions ``[num_graphs, num_tasks]`` and the backbone's auxiliary loss."""
        if self.model is None:
            raise RuntimeError("GraphPredictor has no backbone yet: pass in_channels and "
                               "out_channels, or train it with a GraphPropertyDataModule")
        h = self._encode_nodes(batch.x)
        if getattr(self.model, "supports_edge_attr", False):
            if batch.get("edge_attr") is None:
                raise ValueError(f"backbone {self.hparams.backbone!r} needs edge features but "
                                 f"the batch has no edge_attr (the dataset has none); pass "
                                 f"backbone_kwargs={{'edge_encoder': None}} or use 'gin'")
            out = self.model(h, batch.edge_index, batch.edge_attr)
        else:
            out = self.model(h, batch.edge_index)
        h, aux = split_output(out, self.model)
        index = batch.batch if batch.get("batch") is not None else h.new_zeros(
            h.size(0), dtype=torch.long)
        pooled = POOLS[self.hparams.pool](h, index, size=batch.num_graphs)
        return self.head(pooled), aux

    def forward(self, batch: Batch) -> Tensor:
        """Predictions (logits for classification) ``[num_graphs, num_tasks]``."""
        return self._run(batch)[0]

    def _loss(self, pred: Tensor, y: Tensor) -> Tensor:
        labelled = ~torch.isnan(y)
        if self.metric_key == "rocauc":
            return F.binary_cross_entropy_with_logits(pred[labelled], y[labelled])
        return F.mse_loss(pred[labelled], y[labelled])

    def _shared_step(self, batch: Batch, stage: str) -> Tensor | None:
        if stage == "train" and batch.num_nodes <= 1:
            return None  # batch norm cannot train on a single node (OGB skips these too)
        pred, aux = self._run(batch)
        y = batch.y.view(pred.shape).to(pred.dtype)
        loss = self._loss(pred, y)
        metric = getattr(self, f"{stage}_metric")
        metric.update(pred, y)
        n = int(batch.num_graphs)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}/{self.metric_key}", metric, on_step=False, on_epoch=True,
                 batch_size=n, prog_bar=stage != "test")
        return loss if stage != "train" else self.add_aux_loss(loss, aux, batch_size=n)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """``{"pred": [num_graphs, num_tasks]}`` (probabilities for classification)."""
        pred = self(batch)
        return {"pred": pred.sigmoid() if self.metric_key == "rocauc" else pred}
