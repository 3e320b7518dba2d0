r"""The Mowst training schedule and its early-stopping bookkeeping, as a mixin of
:class:`~graphmoe.training.mowst.MowstModule`.

The schedule is a plain dict (saved in checkpoints): the current phase (``pretrain_weak``,
``pretrain_strong``, ``weak``, ``strong``, ``joint`` or ``done``), the phases queued, the round,
the phase's epochs, best score and epochs without improvement, the best state seen so far (weights
and optimizer state, restored at the end of a turn), and the history of turns. After every
validation :meth:`MowstSchedule._advance` updates it, ends a turn after ``patience`` epochs
without improvement (or ``max_turn_epochs``), restores the best state and picks the next phase;
Mowst stops after ``outer_patience`` rounds without improvement (or ``max_rounds``).
"""
from __future__ import annotations

import copy
import math
from typing import Any

from torch_geometric.data import Data

from graphmoe.training.mowst_eval import quantiles

__all__ = ["PRETRAIN", "MowstSchedule"]

PRETRAIN = ("none", "weak", "strong", "both")


class MowstSchedule:
    """Alternating turns / joint phase with early stopping and restore (mixin: needs the
    module's ``hparams``, ``schedule``, ``_cache``, ``_evaluate`` and ``_labelled``)."""

    def _initial_schedule(self) -> dict[str, Any]:
        hp = self.hparams
        phases = {"none": [], "weak": ["pretrain_weak"], "strong": ["pretrain_strong"],
                  "both": ["pretrain_weak", "pretrain_strong"]}[hp.pretrain]
        main = "weak" if hp.variant == "mowst" else "joint"
        return {"phase": (phases + [main])[0], "queue": phases[1:] + [main] if phases else [],
                "round": 0, "phase_epochs": 0, "phase_best": -math.inf, "phase_bad": 0,
                "best_score": -math.inf, "best_state": None, "expert_state": None,
                "round_start_best": -math.inf, "turn_start_best": -math.inf,
                "rounds_without_improvement": 0, "history": []}

    def _snapshot(self, prefixes: tuple[str, ...] | None = None) -> dict[str, Any]:
        state = {k: v.detach().clone() for k, v in self.state_dict().items()
                 if prefixes is None or k.startswith(prefixes)}
        snap: dict[str, Any] = {"model": state}
        if prefixes is None:
            snap["optimizer"] = copy.deepcopy(self.optimizers().optimizer.state_dict())
        return snap

    def _restore(self, snap: dict[str, Any]) -> None:
        self.load_state_dict(snap["model"], strict="optimizer" in snap)
        if "optimizer" in snap:
            self.optimizers().optimizer.load_state_dict(snap["optimizer"])
        self._cache.clear()

    def _expert_prefixes(self, which: str) -> tuple[str, ...]:
        return (f"model.{which}.", f"crossfit.{which}.")

    def _advance(self, batch: Data, ev: dict[str, Any]) -> float:
        """One step of the schedule after a validation; returns the score of the held weights."""
        s, hp = self.schedule, self.hparams
        s["phase_epochs"] += 1
        phase = s["phase"]
        pretraining = phase.startswith("pretrain_")
        score = ev[f"{phase.removeprefix('pretrain_')}_score"] if pretraining else ev["score"]
        if score > s["phase_best"]:
            s["phase_best"], s["phase_bad"] = score, 0
            if pretraining:
                s["expert_state"] = self._snapshot(
                    self._expert_prefixes(phase.removeprefix("pretrain_")))
        else:
            s["phase_bad"] += 1
        if not pretraining and ev["score"] > s["best_score"]:
            s["best_score"], s["best_state"] = ev["score"], self._snapshot()
        ended = s["phase_bad"] >= hp.patience or s["phase_epochs"] >= hp.max_turn_epochs
        if not ended:
            return float("nan") if pretraining else ev["score"]
        # end of the phase: go back to the best state, record the turn, pick the next phase
        if pretraining:
            self._restore(s["expert_state"])
            s["expert_state"] = None
        else:
            self._restore(s["best_state"])
        record = {"round": s["round"], "phase": phase, "epochs": s["phase_epochs"],
                  "phase_best": s["phase_best"],
                  "kept": bool(pretraining or s["phase_best"] > s["turn_start_best"])}
        self._next_phase()
        if pretraining and s["phase"].startswith("pretrain_"):
            s["history"].append(record)
            return float("nan")
        after = self._evaluate(batch, "val")
        if pretraining:  # the mixture is assembled now (C = 0.5): its first score
            # It is a candidate like every later state: a first gate turn that validates worse
            # (e.g. a gate fitted against an under-trained expert) is rolled back.
            s["best_score"], s["best_state"] = after["score"], self._snapshot()
            s["round_start_best"] = s["turn_start_best"] = after["score"]
            # the pretrained experts alone: MLP / GNN baselines with the same settings (for the
            # report only; selection never looks at test)
            test = self._evaluate(batch, "test") if batch.get("test_mask") is not None else None
            s["pretrained"] = {
                which: {"val": after[f"{which}_score"],
                        "test": test[f"{which}_score"] if test else float("nan")}
                for which in ("weak", "strong")}
        record.update(self._turn_summary(batch, after))
        s["history"].append(record)
        self.log_dict({f"turn/{k}": v for k, v in record.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)},
                      on_step=False, on_epoch=True, batch_size=1)
        if s["phase"] == "done":
            self.trainer.should_stop = True
        return after["score"]

    def _next_phase(self) -> None:
        s, hp = self.schedule, self.hparams
        phase = s["phase"]
        if s["queue"]:
            s["phase"] = s["queue"].pop(0)
        elif phase == "weak":
            s["phase"] = "strong"
        elif phase == "strong":
            s["round"] += 1
            improved = s["best_score"] > s["round_start_best"]
            s["rounds_without_improvement"] = 0 if improved else s["rounds_without_improvement"] + 1
            s["round_start_best"] = s["best_score"]
            stop = (s["rounds_without_improvement"] >= hp.outer_patience
                    or s["round"] >= hp.max_rounds)
            s["phase"] = "done" if stop else "weak"
        else:  # joint
            s["phase"] = "done"
        s["phase_epochs"], s["phase_best"], s["phase_bad"] = 0, -math.inf, 0
        s["turn_start_best"] = s["best_score"]
        self._cache.clear()

    def _turn_summary(self, batch: Data, ev: dict[str, Any]) -> dict[str, Any]:
        conf = ev["conf"]
        out: dict[str, Any] = {"val": ev["score"], "val_weak": ev["weak_score"],
                               "val_strong": ev["strong_score"], "conf_mean": ev["conf_mean"],
                               "weak_frac": ev["weak_frac"]}
        for k, v in quantiles(conf).items():
            out[f"conf_{k}"] = v
        train = self._labelled(batch, "train")
        out["conf_mean_train"] = float(conf[train].mean()) if bool(train.any()) else float("nan")
        return out
