r"""Link prediction as a LightningModule, with overall and per-node ranking evaluation.

* :class:`LinkDataModule` (:mod:`graphmoe.training.link_data`) hands the whole link split
  (:mod:`graphmoe.data.link`) to every stage.
* :class:`LinkPredictor` encodes nodes with any backbone of :func:`graphmoe.models.build_model`
  on the *training* graph, scores a pair with a dot-product or MLP decoder, and minimises binary
  cross-entropy against negatives drawn afresh each epoch. Validation and test log ROC-AUC and
  OGB-style Hits@K over the stage's positive and negative pairs (OGB's own ``Evaluator`` for
  ``ogbl-*``), and the test stage also ranks, for every source node, all its candidate targets
  (:func:`node_link_metrics`): per-node Hits@K, MRR and NDCG@K, logged as means
  (``test/node_mrr``) and kept per node in :attr:`LinkPredictor.node_metrics`.
* Optional TC-guided edge re-weighting during message passing (``reweight_alpha > 0``), the
  variant of Wang et al., "A Topological Perspective on Demystifying GNN-Based Link Prediction
  Performance", ICLR 2024 (see :meth:`LinkPredictor.update_edge_weight`).

This module holds the task module; the decoders are in :mod:`graphmoe.training.link_decoders`,
the metrics and per-node ranking in :mod:`graphmoe.training.link_eval`. Their public names are
re-exported here (``graphmoe.training.link.LinkDataModule`` is the CLI's ``class_path``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import softmax as scatter_softmax
from torchmetrics.functional.classification import binary_auroc

from graphmoe.training.base import TaskModule, split_output
from graphmoe.training.link_data import LinkDataModule
from graphmoe.training.link_decoders import DotDecoder, MLPDecoder, build_decoder
from graphmoe.training.link_eval import HITS, hits_at_k_overall, link_metric_key, node_link_metrics
from graphmoe.training.metrics import OGB_PREFIX

__all__ = [
    "DotDecoder",
    "LinkDataModule",
    "LinkPredictor",
    "MLPDecoder",
    "hits_at_k_overall",
    "link_metric_key",
    "node_link_metrics",
]


class LinkPredictor(TaskModule):
    r"""Link prediction with any backbone of :func:`graphmoe.models.build_model`.

    Node embeddings :math:`\mathbf{Z} = f(\mathbf{X}, A_{\mathrm{train}})` score a pair with the
    decoder (:class:`DotDecoder` or :class:`MLPDecoder`); training minimises

    .. math::
        -\frac{1}{|P|}\sum_{(u,v) \in P} \log\sigma(s(u,v))
        - \frac{1}{|Q|}\sum_{(u,v) \in Q} \log(1 - \sigma(s(u,v)))

    over the training edges :math:`P` and ``neg_ratio`` :math:`\cdot |P|` random non-edges
    :math:`Q` drawn each epoch. Validation and test log ``{stage}/loss``, ``{stage}/rocauc``,
    ``{stage}/hits@K`` (OGB's definition, for each ``hits_k``) and, for ``ogb:<name>`` metrics,
    OGB's evaluator. The test stage also logs the means of the per-node metrics of
    :func:`node_link_metrics` (``test/node_hits@K``, ``test/node_mrr``, ``test/node_ndcg@K``)
    and keeps them per node in :attr:`node_metrics` ``["test"]``.

    TC-guided re-weighting (``reweight_alpha > 0``): after epoch ``reweight_warmup`` and then
    every ``reweight_interval`` epochs, :meth:`update_edge_weight` sets the message-passing
    weights of the training graph; they are saved with the checkpoint.

    Args:
        backbone: registry name (``gcn``, ``sage``, ``gat``, ``gin``, ``mlp``, ...).
        hidden_channels: hidden size of the backbone.
        num_layers: number of backbone layers.
        out_channels: embedding size (default: ``hidden_channels``).
        dropout: backbone dropout.
        backbone_kwargs: extra backbone arguments (``norm``, ``residual``, ``heads``, ...).
        decoder: ``"dot"`` or ``"mlp"``.
        decoder_layers: layers of the MLP decoder.
        decoder_dropout: dropout of the MLP decoder.
        neg_ratio: training negatives per training positive.
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        in_channels: number of node features; ``-1`` takes it from the datamodule.
        metric: monitored metric: ``"rocauc"``, ``"hits@K"`` or ``"ogb:<ogbl dataset>"``.
        hits_k: the K of the logged overall Hits@K.
        node_k: the K of the per-node Hits@K / NDCG@K.
        node_eval: rank every source node's candidates at test time.
        node_candidates: ``"all"`` nodes, or that many sampled candidates per source node.
        reweight_alpha: strength of TC-guided re-weighting (``0``: off).
        reweight_warmup: first epoch (1-based) after which weights are updated.
        reweight_interval: epochs between updates.
    """

    def __init__(
        self,
        backbone: str = "gcn",
        hidden_channels: int = 64,
        num_layers: int = 2,
        out_channels: int | None = None,
        dropout: float = 0.0,
        backbone_kwargs: dict[str, Any] | None = None,
        decoder: str = "dot",
        decoder_layers: int = 2,
        decoder_dropout: float = 0.0,
        neg_ratio: float = 1.0,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        in_channels: int = -1,
        metric: str = "rocauc",
        hits_k: Sequence[int] = (10, 20, 50),
        node_k: Sequence[int] = (10, 20),
        node_eval: bool = True,
        node_candidates: str | int = "all",
        reweight_alpha: float = 0.0,
        reweight_warmup: int = 1,
        reweight_interval: int = 1,
    ) -> None:
        super().__init__()
        if decoder not in ("dot", "mlp"):
            raise ValueError(f"decoder must be 'dot' or 'mlp', got {decoder!r}")
        if isinstance(neg_ratio, bool) or not isinstance(neg_ratio, (int, float)) or neg_ratio <= 0:
            raise ValueError(f"neg_ratio must be a positive number, got {neg_ratio!r}")
        for name, ks in (("hits_k", hits_k), ("node_k", node_k)):
            if isinstance(ks, (str, int)) or not ks or any(
                    isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in ks):
                raise ValueError(f"{name} must be a non-empty list of ints >= 1, got {ks!r}")
        if reweight_alpha < 0:
            raise ValueError(f"reweight_alpha must be >= 0, got {reweight_alpha}")
        if reweight_warmup < 1 or reweight_interval < 1:
            raise ValueError(f"reweight_warmup and reweight_interval must be >= 1, got "
                             f"{reweight_warmup} and {reweight_interval}")
        self.save_hyperparameters()
        self.metric_key = link_metric_key(metric)
        self._ogb_evaluator = None
        self.encoder: nn.Module | None = None
        self.decoder: nn.Module | None = None
        self.register_buffer("tc_edge_weight", None)
        #: Per-node metrics of the last evaluated stage: ``{"test": {"mrr": [N], ...}}``.
        self.node_metrics: dict[str, dict[str, Tensor]] = {}
        if in_channels > 0:
            self._build(in_channels)

    # -- construction -------------------------------------------------------------------------

    def _build(self, in_channels: int) -> None:
        from graphmoe.models import build_model

        hp = self.hparams
        self.hparams.update(in_channels=in_channels)
        out = hp.out_channels or hp.hidden_channels
        self.encoder = build_model(hp.backbone, in_channels=in_channels,
                                   hidden_channels=hp.hidden_channels, num_layers=hp.num_layers,
                                   out_channels=out, dropout=hp.dropout,
                                   **(hp.backbone_kwargs or {}))
        self.decoder = build_decoder(hp.decoder, out, hp.decoder_layers, hp.decoder_dropout)

    def setup(self, stage: str) -> None:
        """Build the encoder from the datamodule's feature size if it was not given; check it."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is None or not hasattr(datamodule, "num_features"):
            return
        if self.encoder is None:
            self._build(datamodule.num_features)
        if self.hparams.in_channels != datamodule.num_features:
            raise ValueError(
                f"LinkPredictor has in_channels={self.hparams.in_channels} but the dataset has "
                f"{datamodule.num_features} node features; set model.in_channels="
                f"{datamodule.num_features} (or leave it out so that it is taken from the data)")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make room for saved TC edge weights (the buffer is empty until the first update)."""
        weight = checkpoint.get("state_dict", {}).get("tc_edge_weight")
        if weight is not None:
            self.tc_edge_weight = torch.empty_like(weight)

    @property
    def ogb_evaluator(self) -> Any:
        """OGB's ``Evaluator`` when ``metric`` is ``ogb:<name>``, else ``None``."""
        metric = self.hparams.metric
        if self._ogb_evaluator is None and metric.startswith(OGB_PREFIX):
            from ogb.linkproppred import Evaluator

            self._ogb_evaluator = Evaluator(metric[len(OGB_PREFIX):])
        return self._ogb_evaluator

    # -- forward ------------------------------------------------------------------------------

    def _edge_weight(self, edge_index: Tensor, edge_weight: Tensor | None) -> Tensor | None:
        w = self.tc_edge_weight
        if edge_weight is None and w is not None and w.numel() == edge_index.size(1):
            return w
        return edge_weight

    def encode(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Node embeddings ``[num_nodes, out_channels]`` on the message-passing graph."""
        return self._encode_aux(x, edge_index, edge_weight)[0]

    def _encode_aux(self, x: Tensor, edge_index: Tensor,
                    edge_weight: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Embeddings and the encoder's auxiliary loss (``None`` for plain backbones)."""
        if self.encoder is None:
            raise RuntimeError("LinkPredictor has no encoder yet: pass in_channels, or train it "
                               "with a datamodule that exposes num_features")
        if x.size(-1) != self.hparams.in_channels:
            raise ValueError(f"LinkPredictor has in_channels={self.hparams.in_channels} but the "
                             f"graph has {x.size(-1)} node features (x.shape={tuple(x.shape)})")
        out = self.encoder(x, edge_index, self._edge_weight(edge_index, edge_weight))
        return split_output(out, self.encoder)

    def decode(self, z: Tensor, pairs: Tensor) -> Tensor:
        """Logits of the node pairs ``pairs`` ``[2, P]``."""
        return self.decoder(z[pairs[0]], z[pairs[1]])

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor) -> Tensor:
        """Logits of ``pairs`` ``[2, P]`` with message passing on ``edge_index``."""
        return self.decode(self.encode(x, edge_index), pairs)

    # -- steps --------------------------------------------------------------------------------

    def training_step(self, batch: Data, batch_idx: int) -> Tensor:
        from graphmoe.data.link import negative_edges

        pos = batch.train_pos_edge_index
        if pos.numel() == 0:
            raise ValueError("the training split has no edges (data.train_pos_edge_index is empty)")
        z, aux = self._encode_aux(batch.x, batch.edge_index)
        num_neg = max(1, round(self.hparams.neg_ratio * pos.size(1)))
        neg = negative_edges(int(batch.num_nodes), num_neg, batch.edge_index, unique=False,
                             device=z.device)
        pos_out, neg_out = self.decode(z, pos), self.decode(z, neg)
        loss = (F.binary_cross_entropy_with_logits(pos_out, torch.ones_like(pos_out))
                + F.binary_cross_entropy_with_logits(neg_out, torch.zeros_like(neg_out)))
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=pos.size(1))
        self._train_graph = (batch.x, batch.edge_index)
        return self.add_aux_loss(loss, aux, batch_size=pos.size(1))

    def _pairs(self, batch: Data, stage: str) -> tuple[Tensor, Tensor]:
        pos, neg = batch.get(f"{stage}_pos_edge_index"), batch.get(f"{stage}_neg_edge_index")
        for key, value in ((f"{stage}_pos_edge_index", pos), (f"{stage}_neg_edge_index", neg)):
            if value is None:
                raise ValueError(f"the {stage} stage needs data.{key}; build the split with "
                                 f"graphmoe.data.link.random_link_split")
            if value.numel() == 0:
                raise ValueError(f"the {stage} split has no edges (data.{key} is empty)")
        return pos, neg

    def _evaluate(self, batch: Data, stage: str) -> dict[str, Tensor]:
        pos, neg = self._pairs(batch, stage)
        z = self.encode(batch.x, batch.edge_index)
        pos_out, neg_out = self.decode(z, pos).float(), self.decode(z, neg).float()
        scores = torch.cat([pos_out, neg_out])
        labels = torch.cat([torch.ones_like(pos_out), torch.zeros_like(neg_out)])
        values = {"loss": F.binary_cross_entropy_with_logits(scores, labels),
                  "rocauc": binary_auroc(scores, labels.long())}
        for k in self.hparams.hits_k:
            values[f"hits@{k}"] = hits_at_k_overall(pos_out, neg_out, k)
        if HITS.fullmatch(self.metric_key) and self.metric_key not in values:
            values[self.metric_key] = hits_at_k_overall(pos_out, neg_out,
                                                        int(self.metric_key.split("@")[1]))
        evaluator = self.ogb_evaluator
        if evaluator is not None:  # OGB's numbers replace graphmoe's for its own metric
            res = evaluator.eval({"y_pred_pos": pos_out.cpu(), "y_pred_neg": neg_out.cpu()})
            values[self.metric_key] = torch.tensor(float(res[self.metric_key]))
        if stage == "test" and self.hparams.node_eval:
            # training and validation edges are known when ranking test edges
            known = torch.cat([batch.edge_index, batch.val_pos_edge_index], dim=1)
            per_node = node_link_metrics(z, self.decoder, pos, known, self.hparams.node_k,
                                         self.hparams.node_candidates)
            self.node_metrics[stage] = {k: v.detach().cpu() for k, v in per_node.items()}
            for name, v in per_node.items():
                values[f"node_{name}"] = torch.nanmean(v)
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True,
                     batch_size=pos.size(1), prog_bar=stage == "val" and name == self.metric_key)
        return values

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Data, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Data, batch_idx: int) -> dict[str, Tensor]:
        """``{"node_id": [N], "embedding": [N, out_channels]}``."""
        z = self.encode(batch.x, batch.edge_index)
        return {"node_id": torch.arange(z.size(0), device=z.device), "embedding": z}

    # -- TC-guided re-weighting ---------------------------------------------------------------

    @torch.no_grad()
    def update_edge_weight(self, x: Tensor, edge_index: Tensor) -> Tensor:
        r"""Set the TC-guided message-passing weights of the training graph and return them.

        The re-weighting of Wang et al. (ICLR 2024, Sec. 6; ``update_adj`` in
        ``YuWVandy/Topo_LP_GNN``): a neighbour whose embedding the decoder links to the other
        endpoint's aggregated neighbourhood gets more weight, which raises the topological
        concentration seen by message passing. For a message :math:`j \to i`,

        .. math::
            s_{ji} = \sigma\big(\mathrm{dec}(\mathbf{z}_i, \bar{\mathbf{z}}_j)\big), \qquad
            w_{ji} = 1 + \alpha\, d_j\, \frac{\exp s_{ji}}{\sum_{i' \in N(j)} \exp s_{ji'}},

        with :math:`\bar{\mathbf{z}}_j` the mean embedding over :math:`j`'s closed
        neighbourhood and :math:`d_j` its degree: the softmax spreads :math:`j`'s outgoing mass
        :math:`d_j` (its unit base weights) over its neighbours, as the reference normalises per
        node. The backbone then normalises the weights its own way (GCN's symmetric degree
        normalisation, SAGE's weighted mean), where the reference feeds pre-normalised weights
        to an un-normalised GCN.
        """
        from graphmoe.ops import aggregate

        if self.encoder is None or self.decoder is None:
            raise RuntimeError("LinkPredictor has no encoder yet")
        was_training = self.training
        self.eval()
        try:
            num_nodes = x.size(0)
            z = self.encode(x, edge_index)
            src, dst = edge_index
            deg = torch.bincount(src, minlength=num_nodes).to(z.dtype)
            mean = (aggregate(z, edge_index, reduce="sum", num_nodes=num_nodes) + z) / (
                deg + 1).unsqueeze(-1)
            score = torch.sigmoid(self.decoder(z[dst], mean[src]).float())
            share = scatter_softmax(score, src, num_nodes=num_nodes)
            weight = 1.0 + self.hparams.reweight_alpha * share * deg[src].float()
        finally:
            self.train(was_training)
        self.tc_edge_weight = weight.to(z.dtype)
        return self.tc_edge_weight

    def on_train_epoch_end(self) -> None:
        hp = self.hparams
        graph = getattr(self, "_train_graph", None)
        epoch = self.current_epoch + 1
        if (hp.reweight_alpha > 0 and graph is not None and epoch >= hp.reweight_warmup
                and (epoch - hp.reweight_warmup) % hp.reweight_interval == 0):
            self.update_edge_weight(*graph)
