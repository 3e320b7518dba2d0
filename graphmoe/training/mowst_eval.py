r"""Evaluation of :class:`~graphmoe.training.mowst.MowstModule`, as a mixin: the metric of the
whole model under the inference rule and of each expert on a split (random draws from a fixed
generator, so the score is a function of the weights), its logging, and the per-split routing
summary (quantiles of the confidence :math:`C`) written to ``mowst.json``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["PHASE_CODE", "QUANTILES", "MowstEvaluation", "quantiles"]

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
#: ``mowst/phase`` as logged, per schedule phase (:mod:`graphmoe.training.mowst_schedule`).
PHASE_CODE = {"pretrain_weak": -2, "pretrain_strong": -1, "weak": 0, "strong": 1, "joint": 2,
              "done": 3}


def quantiles(values: Tensor) -> dict[str, float]:
    """``{"q00": ..., "q10": ..., ...}``: the :data:`QUANTILES` of ``values`` (``{}`` if empty)."""
    if values.numel() == 0:
        return {}
    q = torch.quantile(values.float().cpu(), torch.tensor(QUANTILES))
    return {f"q{int(round(p * 100)):02d}": float(v) for p, v in zip(QUANTILES, q)}


class MowstEvaluation:
    """Scores and logs of the model and its experts (mixin: needs the module's ``model``,
    ``hparams``, ``schedule``, the metrics, ``_rows``, ``_pair_loss``, ``_set_modes``, ``_graph``
    and ``_labelled``)."""

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.hparams.seed) + 7919)

    @torch.no_grad()
    def _evaluate(self, batch: Data, stage: str, conditional: bool = False) -> dict[str, Any]:
        """Metric of the whole model (and of each expert) on ``stage``'s nodes, eval mode.

        ``conf`` is :math:`C` on every node; the experts run on the rows of ``stage`` only
        (``conditional=True``: the paper's inference path, the strong expert on the receptive
        field of the nodes routed to it, over the whole graph).
        """
        m, hp = self.model, self.hparams
        self._set_modes(set())
        x, ei, ew = self._graph(batch)
        y = batch.y.view(-1)
        mask = self._labelled(batch, stage)
        rule = dict(rule=hp.inference, threshold=hp.threshold, num_draws=hp.num_draws,
                    generator=self._generator())
        stats: dict[str, float] = {}
        weak_all = m.weak(x, ei, ew)
        gate_all = m.gate_logit(weak_all, x)
        if conditional and hp.inference != "soft":
            pred = m.predict(x, ei, ew, conditional=True, **rule)
            stats = pred.stats
            draws = pred.draw_probs()[:, mask]
            strong = pred.strong_probs[mask].nan_to_num(1.0 / pred.probs.size(-1)).log()
            frac = float(pred.weak_mask[:, mask].float().mean())
        else:
            from graphmoe.models.mowst import route

            strong = self._rows(m.strong, batch, stage)
            draws_all = route(torch.sigmoid(gate_all), hp.inference, hp.threshold, hp.num_draws,
                              self._generator())  # drawn for every node, as predict() does
            pred = m.combine(weak_all[mask], strong, gate_all[mask], rule=hp.inference,
                             weak_mask=None if draws_all is None else draws_all[:, mask])
            draws, frac = pred.draw_probs(), pred.stats["fraction_weak"]
        weak, gate = weak_all[mask], gate_all[mask]
        metric = self.test_metric if stage == "test" else self.val_metric
        scores = []
        for probs in draws:
            metric.update(probs.clamp_min(1e-12).log(), y[mask])
            scores.append(float(metric.compute()))
            metric.reset()
        expert_scores = {}
        for name, logits in (("weak", weak), ("strong", strong)):
            if name == "strong" and stats:  # skipped rows: no score of the strong expert alone
                expert_scores[name] = float("nan")
                continue
            metric.update(logits, y[mask])
            expert_scores[name] = float(metric.compute())
            metric.reset()
        loss = self._pair_loss(weak, strong, gate, y[mask])
        conf = torch.sigmoid(gate_all)
        return {"score": sum(scores) / len(scores), "loss": float(loss),
                "weak_score": expert_scores["weak"], "strong_score": expert_scores["strong"],
                "conf_mean": float(conf.mean()), "weak_frac": frac,
                "n": int(mask.sum()), "conf": conf, **{f"cond_{k}": v for k, v in stats.items()}}

    def _log_eval(self, stage: str, ev: dict[str, Any], score: float) -> None:
        key = self.metric_key
        n = max(ev["n"], 1)
        self.log(f"{stage}/{key}", score, on_step=False, on_epoch=True, batch_size=n,
                 prog_bar=stage != "test")
        self.log(f"{stage}/loss", ev["loss"], on_step=False, on_epoch=True, batch_size=n)
        extra = {f"mowst/{stage}_weak_{key}": ev["weak_score"],
                 f"mowst/{stage}_strong_{key}": ev["strong_score"],
                 "mowst/conf_mean": ev["conf_mean"], "mowst/weak_frac": ev["weak_frac"]}
        for name in ("node_fraction", "edge_fraction"):
            if f"cond_{name}" in ev:
                extra[f"mowst/{stage}_{name}"] = ev[f"cond_{name}"]
        if stage == "val":
            extra["mowst/phase"] = float(PHASE_CODE[self.schedule["phase"]])
        self.log_dict(extra, on_step=False, on_epoch=True, batch_size=n)

    @torch.no_grad()
    def routing_summary(self, data: Data) -> dict[str, Any]:
        """Per split: metric of the model and of each expert, mean and quantiles of :math:`C`,
        fraction routed to the weak expert."""
        out: dict[str, Any] = {}
        for stage in ("train", "val", "test"):
            if data.get(f"{stage}_mask") is None:
                continue
            ev = self._evaluate(data, stage)
            conf = ev["conf"][self._labelled(data, stage)]
            out[stage] = {"score": ev["score"], "weak_score": ev["weak_score"],
                          "strong_score": ev["strong_score"],
                          "conf_mean": float(conf.mean()) if conf.numel() else float("nan"),
                          "conf_quantiles": quantiles(conf),
                          "weak_frac_threshold": float((conf >= self.hparams.threshold)
                                                       .float().mean()) if conf.numel() else 0.0}
        out["all"] = {"conf_mean": float(ev["conf"].mean()),
                      "conf_quantiles": quantiles(ev["conf"])}
        return out
