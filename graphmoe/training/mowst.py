r"""Mowst and Mowst* training as a LightningModule (manual optimization).

The math (dispersion, gate, losses, inference rules, cross-fitting, conditional computation) is
in :mod:`graphmoe.models.mowst`; this module runs the schedules, one full-batch training step
per Lightning epoch, and decides after each validation what happens next:

* **Mowst** (``variant="mowst"``), alternating turns as in the paper: (a) the weak expert and
  the gate train while the strong expert is frozen *and in eval mode*; (b) the strong expert
  trains while the weak expert and the gate are frozen in eval mode. A turn stops after
  ``patience`` epochs without improving its own best validation metric (or after
  ``max_turn_epochs``). The model then goes back to the best state seen so far: the turn's
  best if it beat every earlier state, else the state before the turn (weights of both experts,
  the gate, the cross-fitting copies and the optimizer state are saved and restored together).
  A round is (a) then (b); training stops after ``outer_patience`` rounds without improvement
  (or ``max_rounds``).
* **Mowst*** (``variant="mowst_star"``): one joint phase on the mixture likelihood, with the
  same early stopping and restore.
* ``pretrain``: ``"weak"``, ``"strong"`` or ``"both"`` first trains that expert alone (plain
  cross-entropy), early-stopped on its own validation metric.
* ``gate_fit``: ``"crossfit"`` (default) fits the gate on out-of-fold predictions of ``K``
  copies of the experts (:mod:`graphmoe.models.mowst_crossfit`); ``"insample"`` fits it on the
  training nodes, as published (this reproduces the gate collapse).

Model selection is by the validation metric of the whole model under the chosen inference rule
(random draws use a fixed generator, so the score is a function of the weights). ``val/<metric>``
is logged *after* the schedule's decision, for the weights the model holds at the end of the
epoch, so the best checkpoint of :class:`~graphmoe.training.BestCheckpoint` is the state the
schedule keeps. During pretraining it is NaN (the mixture is not assembled yet).

Logged per epoch: ``val/<metric>``, ``val/loss``, ``mowst/conf_mean`` (mean :math:`C` over all
nodes), ``mowst/weak_frac`` (fraction routed to the weak expert), the experts' own validation
metrics ``mowst/weak_<metric>``, ``mowst/strong_<metric>``, ``mowst/phase``; at the end of each
turn ``turn/val``, ``turn/conf_mean``, ``turn/weak_frac`` and the quantiles ``turn/conf_q*`` of
:math:`C`. The whole turn history and the final distribution of :math:`C` per split go to
``mowst.json`` in the log directory.

Layout: this module holds the LightningModule (construction, setup, optimizer, the Lightning
steps and hooks); the schedule and its bookkeeping are in :mod:`graphmoe.training.mowst_schedule`,
the per-phase losses in :mod:`graphmoe.training.mowst_losses`, evaluation and the routing summary
in :mod:`graphmoe.training.mowst_eval` (mixins of :class:`MowstModule`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.training.base import TaskModule
from graphmoe.training.metrics import build_metric, metric_key
from graphmoe.training.mowst_eval import QUANTILES, MowstEvaluation
from graphmoe.training.mowst_losses import MowstLosses
from graphmoe.training.mowst_schedule import PRETRAIN, MowstSchedule

__all__ = ["MowstModule", "QUANTILES", "SUMMARY_FILE"]

SUMMARY_FILE = "mowst.json"
GATE_FITS = ("crossfit", "insample")


def _choice(name: str, value: Any, choices: tuple, owner: str = "MowstModule") -> Any:
    if value not in choices:
        raise ValueError(f"{owner} expects {name} to be one of {list(choices)}, got {value!r}")
    return value


class MowstModule(MowstSchedule, MowstLosses, MowstEvaluation, TaskModule):
    r"""Mowst / Mowst* node classification (Zeng et al., ICLR 2024) with a weak and a strong
    expert from :func:`graphmoe.models.build_model`.

    Args:
        weak: registry name of the weak expert (default ``"mlp"``).
        strong: registry name of the strong expert (``"gcn"``, ``"sage"``, ``"gat"``, ``"gin"``,
            ``"dagnn"``).
        hidden_channels, num_layers, dropout: backbone settings shared by both experts.
        weak_kwargs, strong_kwargs: per-expert overrides and extra backbone arguments
            (``{"dropout": 0.2, "norm": "batch_norm"}``).
        variant: ``"mowst"`` (alternating turns, confidence-weighted losses) or
            ``"mowst_star"`` (joint training of the probability mixture).
        dispersion: ``"variance"``, ``"entropy"`` or ``"both"``.
        gate_input: ``"dispersion"`` or ``"dispersion+x"``.
        gate_hidden, gate_layers, gate_dropout: the gate MLP.
        detach_dispersion: keep the gate's gradient out of the weak expert (reference behaviour).
        gate_fit: ``"crossfit"`` (default: the gate learns from out-of-fold predictions, see
            :mod:`graphmoe.models.mowst_crossfit`) or ``"insample"`` (as published).
        num_folds: folds of the training nodes for ``"crossfit"``.
        expert_weights: how an expert's turn weighs the nodes (Mowst): ``"mean"`` (the published
            loss, :math:`\frac{1}{|S|}\sum_v C_v \mathrm{CE}^{w}_v`) or ``"normalized"``
            (:math:`\sum_v C_v \mathrm{CE}^{w}_v / \sum_v C_v`, and :math:`1 - C_v` for the
            strong expert: the same minimiser, but an expert given few nodes is not starved
            into its weight decay); default ``"normalized"`` with ``gate_fit="crossfit"``,
            ``"mean"`` with ``"insample"``.
        pretrain: ``"none"``, ``"weak"``, ``"strong"`` or ``"both"``.
        inference: ``"random"`` (the paper's rule, averaged over ``num_draws`` draws),
            ``"threshold"`` or ``"soft"``; default ``"random"`` for Mowst, ``"soft"`` for Mowst*.
        threshold: threshold of the ``"threshold"`` rule (weak where :math:`C \ge` threshold).
        num_draws: draws of the random rule; the metric is averaged over them.
        conditional_inference: at test/predict time run the strong expert only on the receptive
            field of the nodes routed to it (hard rules; predictions are unchanged).
        gate_steps: optimizer steps of the gate per training step of a gate-fitting phase (the
            weak turn of Mowst, the joint phase of Mowst*). With ``"crossfit"`` the gate's loss
            depends on the experts only through out-of-fold outputs computed once per step, so
            the extra steps fit the gate to those outputs at the cost of the gate alone; without
            them the gate moves a few hundredths of a logit before the turn's early stopping ends
            it (measured: C stays at 0.51-0.59 from its 0.5 start on Reed98 and filtered
            chameleon). Default 20 with ``"crossfit"``, 1 (as published) with ``"insample"``.
        lr: Adam learning rate of the experts; ``gate_lr`` of the gate (default ``lr``).
        weight_decay: Adam (L2) weight decay.
        patience: epochs without improvement that end a turn (and a pretraining phase).
        max_turn_epochs: longest turn.
        outer_patience: rounds (weak turn + strong turn) without improvement that end Mowst.
        max_rounds: most rounds.
        seed: seed of the folds and of the random rule's evaluation draws.
        in_channels, out_channels, metric: linked from the data by the CLI (``-1`` / ``None``:
            from the datamodule at setup; ``metric`` is ``"acc"`` without a datamodule).
    """

    def __init__(
        self,
        weak: str = "mlp",
        strong: str = "gcn",
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.5,
        weak_kwargs: dict[str, Any] | None = None,
        strong_kwargs: dict[str, Any] | None = None,
        variant: str = "mowst",
        dispersion: str = "variance",
        gate_input: str = "dispersion",
        gate_hidden: int = 64,
        gate_layers: int = 2,
        gate_dropout: float = 0.0,
        detach_dispersion: bool = True,
        gate_fit: str = "crossfit",
        num_folds: int = 5,
        expert_weights: str | None = None,
        pretrain: str = "both",
        inference: str | None = None,
        threshold: float = 0.5,
        num_draws: int = 10,
        conditional_inference: bool = False,
        lr: float = 0.01,
        gate_lr: float | None = None,
        gate_steps: int | None = None,
        weight_decay: float = 5e-4,
        patience: int = 50,
        max_turn_epochs: int = 500,
        outer_patience: int = 2,
        max_rounds: int = 10,
        seed: int = 0,
        in_channels: int = -1,
        out_channels: int = -1,
        metric: str | None = None,
    ) -> None:
        super().__init__()
        from graphmoe.models.mowst import DISPERSIONS, GATE_INPUTS, RULES, check_variant

        variant = check_variant(variant, "MowstModule")
        _choice("dispersion", dispersion, DISPERSIONS)
        _choice("gate_input", gate_input, GATE_INPUTS)
        _choice("gate_fit", gate_fit, GATE_FITS)
        if expert_weights is None:
            expert_weights = "normalized" if gate_fit == "crossfit" else "mean"
        _choice("expert_weights", expert_weights, ("normalized", "mean"))
        _choice("pretrain", pretrain, PRETRAIN)
        if inference is None:
            inference = "random" if variant == "mowst" else "soft"
        _choice("inference", inference, RULES)
        if gate_steps is None:
            gate_steps = 20 if gate_fit == "crossfit" else 1
        for name, value, low in (("patience", patience, 1), ("max_turn_epochs", max_turn_epochs, 1),
                                 ("outer_patience", outer_patience, 1), ("max_rounds", max_rounds, 1),
                                 ("num_draws", num_draws, 1), ("num_folds", num_folds, 2),
                                 ("gate_steps", gate_steps, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"MowstModule expects {name} to be an int >= {low}, got {value!r}")
        self.save_hyperparameters()
        self.hparams.update(variant=variant, inference=inference, expert_weights=expert_weights,
                            gate_steps=gate_steps)
        self._expert_weights = expert_weights
        self.automatic_optimization = False
        self.metric_key = metric_key(metric or "acc")
        self.model: torch.nn.Module | None = None
        self.crossfit: torch.nn.Module | None = None
        self.schedule: dict[str, Any] = self._initial_schedule()
        self._cache: dict[str, Tensor] = {}
        self._subgraphs: dict[tuple, tuple] = {}
        self._summary: dict[str, Any] = {}
        if in_channels > 0 and out_channels > 0:
            self._build(in_channels, out_channels)

    # -- construction -------------------------------------------------------------------------

    def _expert(self, name: str, overrides: dict[str, Any] | None, in_channels: int,
                out_channels: int) -> torch.nn.Module:
        from graphmoe.models import build_model

        hp = self.hparams
        kwargs: dict[str, Any] = {"in_channels": in_channels, "hidden_channels": hp.hidden_channels,
                                  "out_channels": out_channels, "dropout": hp.dropout}
        if name.lower() != "dagnn":
            kwargs["num_layers"] = hp.num_layers
        kwargs.update(overrides or {})
        return build_model(name, **kwargs)

    def _build(self, in_channels: int, out_channels: int) -> None:
        from graphmoe.models.mowst import Mowst

        hp = self.hparams
        self.hparams.update(in_channels=in_channels, out_channels=out_channels)
        weak = self._expert(hp.weak, hp.weak_kwargs, in_channels, out_channels)
        strong = self._expert(hp.strong, hp.strong_kwargs, in_channels, out_channels)
        self.model = Mowst(weak, strong, dispersion=hp.dispersion, gate_input=hp.gate_input,
                           gate_hidden=hp.gate_hidden, gate_layers=hp.gate_layers,
                           gate_dropout=hp.gate_dropout, detach_dispersion=hp.detach_dispersion,
                           in_channels=in_channels)
        self._build_metrics()

    def _build_metrics(self) -> None:
        metric, out_channels = self.hparams.metric or "acc", self.hparams.out_channels
        self.val_metric = build_metric(metric, out_channels)
        self.test_metric = build_metric(metric, out_channels)

    def on_metric_resolved(self) -> None:
        if self.model is not None:
            self._build_metrics()

    def _build_crossfit(self, fold: Tensor) -> None:
        from graphmoe.models.mowst_crossfit import CrossFitExperts

        if self.model is None:
            raise RuntimeError("MowstModule builds its cross-fitting copies after its experts")
        self.crossfit = CrossFitExperts(self.model.weak, self.model.strong, fold)

    def setup(self, stage: str) -> None:
        """Build the experts from the datamodule's sizes if needed, and the cross-fitting folds."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is None or not hasattr(datamodule, "num_features"):
            if self.model is None:
                raise RuntimeError("MowstModule needs in_channels and out_channels, or a "
                                   "datamodule that exposes num_features and num_classes")
            return
        if getattr(datamodule, "multilabel", False):
            raise ValueError("MowstModule supports single-label node classification only; "
                             "the dataset has multi-label targets")
        self.resolve_metric()
        if getattr(datamodule, "sampled", False):
            raise ValueError("MowstModule trains full-batch: set data.batch_size to null "
                             "(the schedule and cross-fitting need every node each epoch)")
        if self.model is None:
            self._build(datamodule.num_features, datamodule.num_classes)
        for key, value in (("in_channels", datamodule.num_features),
                           ("out_channels", datamodule.num_classes)):
            if self.hparams[key] != value:
                raise ValueError(f"MowstModule has {key}={self.hparams[key]} but the dataset "
                                 f"needs {value}; leave model.{key} out so that it is taken "
                                 f"from the data")
        if self.hparams.gate_fit == "crossfit" and self.crossfit is None and stage == "fit":
            from graphmoe.models.mowst_crossfit import make_folds

            data = datamodule.data
            self._build_crossfit(make_folds(self._labelled(data, "train"),
                                            self.hparams.num_folds, self.hparams.seed))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One Adam with three parameter groups (weak side, gate with ``gate_lr``, strong side).

        Only the parameters a phase trains receive gradients, and Adam leaves parameters
        without a gradient untouched (no weight decay either), so one optimizer serves every
        phase; its state is saved and restored with the weights.
        """
        if self.model is None:
            raise RuntimeError("MowstModule has no experts yet (see setup)")
        hp = self.hparams
        weak = list(self.model.weak.parameters())
        strong = list(self.model.strong.parameters())
        if self.crossfit is not None:
            weak += list(self.crossfit.weak.parameters())
            strong += list(self.crossfit.strong.parameters())
        gate_lr = hp.gate_lr if hp.gate_lr is not None else hp.lr
        return torch.optim.Adam([
            {"params": weak, "lr": hp.lr, "name": "weak"},
            {"params": list(self.model.gate.parameters()), "lr": gate_lr, "name": "gate"},
            {"params": strong, "lr": hp.lr, "name": "strong"},
        ], lr=hp.lr, weight_decay=hp.weight_decay)

    # -- data helpers -------------------------------------------------------------------------

    @staticmethod
    def _labelled(batch: Data, stage: str) -> Tensor:
        mask = batch.get(f"{stage}_mask")
        if mask is None:
            raise ValueError(f"MowstModule needs data.{stage}_mask (a bool [num_nodes] mask)")
        if batch.y.dim() > 1 and batch.y.size(-1) > 1:
            raise ValueError("MowstModule supports single-label targets only")
        return mask & (batch.y.view(-1) >= 0)

    @staticmethod
    def _check_batch(batch: Data) -> None:
        if isinstance(getattr(batch, "batch_size", None), int):
            raise ValueError("MowstModule trains full-batch; got a sampled mini-batch "
                             "(set data.batch_size to null)")

    @staticmethod
    def _graph(batch: Data) -> tuple[Tensor, Tensor, Tensor | None]:
        from graphmoe.models.mowst import Mowst

        Mowst.check_features(batch.get("x"), "data.x")
        return batch.x, batch.edge_index, batch.get("edge_weight")

    # -- training -----------------------------------------------------------------------------

    def training_step(self, batch: Data, batch_idx: int) -> Tensor | None:
        self._check_batch(batch)
        phase = self.schedule["phase"]
        if phase == "done":
            self.trainer.should_stop = True
            return None
        optimizer = self.optimizers()
        for _ in range(self.hparams.gate_steps - 1 if phase in ("weak", "joint") else 0):
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(self._gate_loss(phase, batch))
            optimizer.step()  # only the gate has gradients: Adam leaves the experts alone
        self._clear_step_cache()
        optimizer.zero_grad(set_to_none=True)
        loss = self._phase_loss(phase, batch)
        self.manual_backward(loss)
        optimizer.step()
        n = int(self._labelled(batch, "train").sum())
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=n)
        return loss.detach()

    # -- evaluation steps (scores in graphmoe.training.mowst_eval) ----------------------------

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        self._check_batch(batch)
        ev = self._evaluate(batch, "val")
        score = ev["score"]
        fitting = self._trainer is not None and self.trainer.state.fn == "fit" \
            and not self.trainer.sanity_checking
        if fitting:
            score = self._advance(batch, ev)
        self._log_eval("val", ev, score)

    def test_step(self, batch: Data, batch_idx: int) -> None:
        self._check_batch(batch)
        ev = self._evaluate(batch, "test", conditional=self.hparams.conditional_inference)
        self._log_eval("test", ev, ev["score"])

    def predict_step(self, batch: Data, batch_idx: int) -> dict[str, Tensor]:
        """``{"node_id": [N], "logits": [N, C]}``: log-probabilities under the inference rule."""
        self._check_batch(batch)
        hp = self.hparams
        x, ei, ew = self._graph(batch)
        self._set_modes(set())
        conditional = hp.conditional_inference and hp.inference != "soft"
        pred = self.model.predict(x, ei, ew, rule=hp.inference, threshold=hp.threshold,
                                  num_draws=hp.num_draws, generator=self._generator(),
                                  conditional=conditional)
        logits = pred.probs.clamp_min(1e-12).log()
        return {"node_id": torch.arange(logits.size(0), device=logits.device), "logits": logits}

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Log-probabilities ``[N, C]`` under the module's inference rule."""
        hp = self.hparams
        pred = self.model.predict(x, edge_index, edge_weight, rule=hp.inference,
                                  threshold=hp.threshold, num_draws=hp.num_draws,
                                  generator=self._generator())
        return pred.probs.clamp_min(1e-12).log()

    # -- hooks --------------------------------------------------------------------------------

    def on_fit_end(self) -> None:
        """Hold the best state (when training was cut short), write ``mowst.json``."""
        s = self.schedule
        if s["best_state"] is not None and s["phase"] != "done":
            self._restore(s["best_state"])
        datamodule = getattr(self.trainer, "datamodule", None)
        data = getattr(datamodule, "data", None)
        summary: dict[str, Any] = {
            "variant": self.hparams.variant, "gate_fit": self.hparams.gate_fit,
            "inference": self.hparams.inference, "best_val": s["best_score"],
            "pretrained": s.get("pretrained"), "history": s["history"]}
        if isinstance(data, Data):
            data = data.to(self.device)
            summary["final"] = self.routing_summary(data)
        self._summary = summary
        log_dir = self.trainer.log_dir if self.trainer.logger is not None else None
        if log_dir and self.trainer.is_global_zero:
            path = Path(log_dir) / SUMMARY_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=2, default=float) + "\n")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mowst_schedule"] = self.schedule

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the experts (and cross-fitting copies) a checkpoint holds; resume the schedule."""
        hp = checkpoint.get("hyper_parameters", {})
        state = checkpoint.get("state_dict", {})
        if self.model is None and hp.get("in_channels", -1) > 0 and hp.get("out_channels", -1) > 0:
            self._build(hp["in_channels"], hp["out_channels"])
        for key in ("in_channels", "out_channels"):
            if key in hp and self.model is not None and hp[key] != self.hparams[key]:
                raise ValueError(
                    f"the checkpoint was trained with {key}={hp[key]} but this model has "
                    f"{key}={self.hparams[key]} (from the data): evaluate it on the dataset "
                    f"it was trained on")
        if self.crossfit is None and "crossfit.fold" in state and self.model is not None:
            self._build_crossfit(state["crossfit.fold"])
        if "mowst_schedule" in checkpoint:
            self.schedule = checkpoint["mowst_schedule"]
