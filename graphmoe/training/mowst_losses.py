r"""The per-phase training losses of :class:`~graphmoe.training.mowst.MowstModule`, as a mixin:
which parts train in each phase (pretraining, the weak and strong turns of Mowst, the joint phase
of Mowst*), the losses of :mod:`graphmoe.models.mowst` on the training nodes, with and without
cross-fitting (:mod:`graphmoe.models.mowst_crossfit`), and the experts' rows computed on the
least of the graph that gives the same outputs (:mod:`graphmoe.models.mowst_conditional`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from graphmoe.ops.aggregate import select_rows

__all__ = ["MowstLosses"]


class MowstLosses:
    """Losses of one training step (mixin: needs the module's ``model``, ``crossfit``,
    ``hparams``, ``_expert_weights``, ``_cache``, ``_subgraphs``, ``_graph`` and ``_labelled``)."""

    def _pair_loss(self, weak: Tensor, strong: Tensor, gate_logit: Tensor, y: Tensor,
                   experts: bool = False) -> Tensor:
        """The variant's loss; ``experts=True`` marks an expert-fitting loss under fixed weights,
        normalised per expert when ``expert_weights="normalized"`` (see the class docstring)."""
        from graphmoe.models.mowst import mowst_loss, mowst_star_loss, normalized_mowst_loss

        if self.hparams.variant == "mowst":
            if experts and self._expert_weights == "normalized":
                return normalized_mowst_loss(weak, strong, torch.sigmoid(gate_logit), y)
            return mowst_loss(weak, strong, torch.sigmoid(gate_logit), y)
        return mowst_star_loss(weak, strong, gate_logit, y)

    def _cached(self, key: str, fn) -> Tensor:
        if key not in self._cache:
            with torch.no_grad():
                self._cache[key] = fn()
        return self._cache[key]

    def _set_modes(self, trained: set[str]) -> None:
        """Train mode for the trained parts, eval mode (no dropout, frozen BN) for the rest."""
        m, cf = self.model, self.crossfit
        parts = {"weak": [m.weak], "strong": [m.strong], "gate": [m.gate]}
        if cf is not None:
            parts["weak"].append(cf.weak)
            parts["strong"].append(cf.strong)
        for name, modules in parts.items():
            for module in modules:
                module.train(name in trained)

    def _rows(self, module: torch.nn.Module, batch: Data, stage: str) -> Tensor:
        """``module``'s logits on the labelled nodes of ``stage``, computed on the least of the
        graph that gives the same outputs (rows only for the MLP, the receptive field of those
        nodes for a GNN; see :func:`graphmoe.models.mowst_conditional.rows_of`)."""
        from graphmoe.models.mowst import receptive_field_hops
        from graphmoe.models.mowst_conditional import (
            needs_source_degree,
            receptive_subgraph,
            rows_of,
        )

        x, ei, ew = self._graph(batch)
        mask = self._labelled(batch, stage)
        hops = receptive_field_hops(module)
        sub = None
        if hops:
            key = (stage, id(ei), hops, needs_source_degree(module))
            cached = self._subgraphs.get(key)
            if cached is None or cached[0] is not ei:
                sub = receptive_subgraph(x, ei, ew, mask, hops, key[-1])
                # a receptive field as large as the graph saves nothing: use the graph itself
                cached = (ei, sub if sub.stats["node_fraction"] < 0.9 else None)
                self._subgraphs[key] = cached
            sub = cached[1]
            if sub is None:
                return module(x, ei, ew)[mask]
        return rows_of(module, x, ei, ew, mask, hops, sub)

    def _gate_loss(self, phase: str, batch: Data) -> Tensor:
        """The loss of one gate-only step of a gate-fitting phase (``weak``, ``joint``): the
        variant's loss of the gate's confidences with both experts' outputs held constant
        (out-of-fold with cross-fitting), computed once per training step."""
        m, cf = self.model, self.crossfit
        T = self._labelled(batch, "train")
        y = batch.y.view(-1)[T]
        x_T = self._cached("x_train", lambda: select_rows(batch.x, T))
        self._set_modes({"weak", "gate"} if phase == "weak" else {"weak", "strong", "gate"})

        def rows(module: torch.nn.Module) -> Tensor:
            return self._rows(module, batch, "train")

        if cf is not None:
            fold = cf.fold[T]
            W = self._cached("step_weak_oof", lambda: cf.out_of_fold("weak", rows, fold))
            S = self._cached("strong_oof" if phase == "weak" else "step_strong_oof",
                             lambda: cf.out_of_fold("strong", rows, fold))
        else:
            W = self._cached("step_weak", lambda: rows(m.weak))
            S = self._cached("strong" if phase == "weak" else "step_strong",
                             lambda: rows(m.strong))
        return self._pair_loss(W, S, m.gate_logit(W, x_T), y)

    def _clear_step_cache(self) -> None:
        """Forget the outputs held for one training step (the experts change at its end)."""
        for key in [k for k in self._cache if k.startswith("step_")]:
            del self._cache[key]

    def _phase_loss(self, phase: str, batch: Data) -> Tensor:
        """The loss of one training step of ``phase`` on the training nodes ``T``.

        Everything is computed on the rows of ``T`` (and the receptive field a GNN needs). With
        cross-fitting, copy ``k`` trains on ``T`` minus fold ``k`` and predicts fold ``k``.
        """
        m, cf = self.model, self.crossfit
        T = self._labelled(batch, "train")
        y = batch.y.view(-1)[T]
        fold = cf.fold[T] if cf is not None else None

        def rows(module: torch.nn.Module) -> Tensor:
            return self._rows(module, batch, "train")

        x_T = self._cached("x_train", lambda: select_rows(batch.x, T))
        if phase.startswith("pretrain_"):
            which = phase.removeprefix("pretrain_")
            self._set_modes({which})
            loss = F.cross_entropy(rows(getattr(m, which)), y)
            if cf is not None:
                for k, copy_k in enumerate(cf.copies(which)):
                    fk = fold != k
                    loss = loss + F.cross_entropy(rows(copy_k)[fk], y[fk])
            return loss
        if phase == "weak":
            self._set_modes({"weak", "gate"})
            S = self._cached("strong", lambda: rows(m.strong))
            if cf is None:  # as published: the gate learns on the training nodes
                W = rows(m.weak)
                return self._pair_loss(W, S, m.gate_logit(W, x_T), y)
            S_oof = self._cached("strong_oof", lambda: cf.out_of_fold("strong", rows, fold))
            W_oof = cf.out_of_fold("weak", rows, fold)
            g_oof = m.gate_logit(W_oof, x_T)
            loss = self._pair_loss(W_oof, S_oof, g_oof, y)  # reaches the gate only
            weights = g_oof.detach()
            loss = loss + self._pair_loss(rows(m.weak), S, weights, y, experts=True)
            for k, copy_k in enumerate(cf.weak):
                fk = fold != k
                S_k = self._cached(f"strong_{k}", lambda k=k: rows(cf.strong[k]))
                loss = loss + self._pair_loss(rows(copy_k)[fk], S_k[fk], weights[fk], y[fk],
                                              experts=True)
            return loss
        if phase == "strong":
            self._set_modes({"strong"})
            W = self._cached("weak", lambda: rows(m.weak))
            if cf is None:
                g = self._cached("gate", lambda: m.gate_logit(W, x_T))
                return self._pair_loss(W, rows(m.strong), g, y, experts=True)
            g_oof = self._cached("gate_oof", lambda: m.gate_logit(
                cf.out_of_fold("weak", rows, fold), x_T))
            loss = self._pair_loss(W, rows(m.strong), g_oof, y, experts=True)
            for k, copy_k in enumerate(cf.strong):
                fk = fold != k
                loss = loss + self._pair_loss(W[fk], rows(copy_k)[fk], g_oof[fk], y[fk],
                                              experts=True)
            return loss
        # joint (Mowst*)
        self._set_modes({"weak", "strong", "gate"})
        if cf is None:
            W = rows(m.weak)
            return self._pair_loss(W, rows(m.strong), m.gate_logit(W, x_T), y)
        W_oof = cf.out_of_fold("weak", rows, fold)
        S_oof = cf.out_of_fold("strong", rows, fold)
        g_oof = m.gate_logit(W_oof, x_T)
        loss = self._pair_loss(W_oof, S_oof, g_oof, y)  # reaches the gate only
        weights = g_oof.detach()
        loss = loss + self._pair_loss(rows(m.weak), rows(m.strong), weights, y)
        for k in range(cf.num_folds):
            fk = fold != k
            loss = loss + self._pair_loss(rows(cf.weak[k])[fk], rows(cf.strong[k])[fk],
                                          weights[fk], y[fk])
        return loss
