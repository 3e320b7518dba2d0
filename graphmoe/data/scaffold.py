r"""Splits of graph-level datasets: Bemis-Murcko scaffold splits and seeded random splits.

Scaffold split (Bemis & Murcko, J. Med. Chem. 1996; used for MoleculeNet by Wu et al. 2018 and by
OGB's ``ogbg-mol*`` datasets, Hu et al. 2020): molecules are grouped by the SMILES of their
Murcko scaffold (ring systems plus the linkers between them, side chains removed), the groups
are sorted by size, largest first (ties: the group whose first molecule comes *last*, as in the
reference's ``sorted(..., key=(len, first index), reverse=True)``), and whole
groups fill the training set up to ``frac_train`` of the molecules, then validation up to
``frac_train + frac_valid``, then test. This is ``scaffold_split`` of
snap-stanford/pretrain-gnns (``splitters.py``), which produced OGB's splits: test molecules have
scaffolds never seen in training, and the split is deterministic (no seed).

Only :func:`murcko_scaffold` needs RDKit (the ``chem`` extra); splitting works on the scaffold
strings, which the MoleculeNet loader computes once and caches.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .splits import split_generator

__all__ = ["GRAPH_SPLITS", "graph_split", "import_rdkit", "murcko_scaffold", "random_graph_split",
           "scaffold_split"]

#: Split schemes of graph-level datasets.
GRAPH_SPLITS = ("scaffold", "random")

SplitIndex = dict[str, Tensor]


def import_rdkit() -> Any:
    """``rdkit.Chem``, or an ``ImportError`` that says how to install it."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:
        raise ImportError("reading molecules (SMILES) needs RDKit, which is not installed: "
                          "pip install graphmoe[chem] (or pip install rdkit)") from err
    RDLogger.DisableLog("rdApp.*")  # invalid SMILES are counted, not printed one by one
    return Chem


def murcko_scaffold(smiles: str, include_chirality: bool = True) -> str:
    """SMILES of the Bemis-Murcko scaffold of ``smiles`` (``""`` for acyclic molecules).

    ``include_chirality=True`` as in pretrain-gnns' ``generate_scaffold`` (OGB's splits).
    """
    import_rdkit()
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=include_chirality)


def _check_fractions(frac_train: float, frac_valid: float) -> None:
    if not (0.0 < frac_train < 1.0 and 0.0 <= frac_valid and frac_train + frac_valid <= 1.0):
        raise ValueError(f"frac_train and frac_valid must satisfy 0 < frac_train < 1, "
                         f"frac_valid >= 0 and frac_train + frac_valid <= 1, got "
                         f"frac_train={frac_train}, frac_valid={frac_valid}")


def _as_index(items: list[int]) -> Tensor:
    return torch.tensor(sorted(items), dtype=torch.long)


def scaffold_split(scaffolds: Sequence[str], frac_train: float = 0.8,
                   frac_valid: float = 0.1) -> SplitIndex:
    """``{"train", "valid", "test"}`` index tensors of the scaffold split (module docstring).

    Args:
        scaffolds: the scaffold string of each graph, in dataset order.
        frac_train: fraction of graphs for training (default 0.8).
        frac_valid: fraction for validation (default 0.1); the rest is for testing.
    """
    _check_fractions(frac_train, frac_valid)
    groups: dict[str, list[int]] = {}
    for i, scaffold in enumerate(scaffolds):
        groups.setdefault(scaffold, []).append(i)
    ordered = sorted(groups.values(), key=lambda s: (len(s), s[0]), reverse=True)
    n = len(scaffolds)
    train_cut, valid_cut = frac_train * n, (frac_train + frac_valid) * n
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for group in ordered:
        if len(train) + len(group) > train_cut:
            if len(train) + len(valid) + len(group) > valid_cut:
                test.extend(group)
            else:
                valid.extend(group)
        else:
            train.extend(group)
    return {"train": _as_index(train), "valid": _as_index(valid), "test": _as_index(test)}


def random_graph_split(num_graphs: int, frac_train: float = 0.8, frac_valid: float = 0.1, *,
                       seed: int = 0, split: int = 0) -> SplitIndex:
    """A random permutation cut at ``frac_train`` and ``frac_train + frac_valid``.

    Split ``split`` of ``seed`` draws from :func:`graphmoe.data.splits.split_generator`, so it is
    reproducible and independent of the global RNG (as node splits are).
    """
    _check_fractions(frac_train, frac_valid)
    perm = torch.randperm(num_graphs, generator=split_generator(seed, split))
    n_train, n_valid = int(frac_train * num_graphs), int(frac_valid * num_graphs)
    parts = (perm[:n_train], perm[n_train:n_train + n_valid], perm[n_train + n_valid:])
    return {k: v.sort().values for k, v in zip(("train", "valid", "test"), parts)}


def graph_split(scheme: str, scaffolds: Sequence[str], *, frac_train: float = 0.8,
                frac_valid: float = 0.1, seed: int = 0, split: int = 0) -> SplitIndex:
    """Split by ``scheme`` (``"scaffold"``: deterministic; ``"random"``: seeded)."""
    if scheme == "scaffold":
        return scaffold_split(scaffolds, frac_train, frac_valid)
    if scheme == "random":
        return random_graph_split(len(scaffolds), frac_train, frac_valid, seed=seed, split=split)
    raise ValueError(f"split_scheme must be one of {GRAPH_SPLITS} for a graph dataset, "
                     f"got {scheme!r}")
