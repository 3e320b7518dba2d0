r"""MoleculeNet CSV files (SMILES + labels) turned into molecular graphs with OGB's featurisation.

MoleculeNet (Wu et al., "MoleculeNet: a benchmark for molecular machine learning", Chem. Sci.
2018) ships each dataset as a CSV with one molecule per row: a SMILES column and one or more
label columns (the columns of PyG's ``torch_geometric.datasets.MoleculeNet`` table; the catalog,
:mod:`graphmoe.data.catalog`, names them). Each SMILES becomes a graph through
:func:`ogb.utils.smiles2graph` (RDKit), the featurisation of OGB's ``ogbg-mol*`` datasets:

* ``x``: ``[num_atoms, 9]`` long atom features (atomic number, chirality, degree, formal
  charge, number of Hs, radical electrons, hybridisation, aromatic, in ring);
* ``edge_index``: ``[2, 2 * num_bonds]`` (both directions of every bond);
* ``edge_attr``: ``[2 * num_bonds, 3]`` long bond features (type, stereo, conjugated),

so that :class:`ogb.graphproppred.mol_encoder.AtomEncoder` / ``BondEncoder`` embed them.

Rows whose SMILES RDKit cannot parse (BBBP has 11), that give no atoms, or whose labels are all
missing are skipped and counted (``num_invalid``, ``invalid_rows``: 0-based data-row numbers).
Missing labels of multi-task datasets (Tox21, SIDER, ClinTox) stay ``NaN`` and are masked by the
loss and the metric, as in OGB.

The loader returns the whole dataset *packed* in one ``Data`` (concatenated atoms and bonds with
``node_ptr``/``edge_ptr`` offsets; ``edge_index`` local to each molecule) so that the data
layer caches it like any graph; :class:`graphmoe.data.graphs.GraphDataset` unpacks it. The
Bemis-Murcko scaffold of each molecule is computed here too (``scaffold``), so that scaffold
splits of a cached dataset need no RDKit.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from ..scaffold import import_rdkit

__all__ = ["TASK_TYPES", "process_moleculenet", "read_moleculenet_csv"]

#: ``task_type`` values, as OGB's ``master.csv`` spells them.
TASK_TYPES = ("binary classification", "regression")


def read_moleculenet_csv(path: Path, smiles_column: str, targets: Sequence[str],
                         ) -> tuple[list[str], np.ndarray]:
    """SMILES strings and ``[num_rows, num_targets]`` float labels (``NaN`` = missing).

    Raises:
        ValueError: ``smiles_column`` or a target is not a column of the file (the error
            lists the columns).
    """
    import pandas as pd

    frame = pd.read_csv(path)
    columns = list(frame.columns)
    missing = [c for c in (smiles_column, *targets) if c not in columns]
    if missing:
        raise ValueError(f"{path.name} has no column(s) {missing}; its columns are {columns} "
                         f"(pass targets=[...] with label columns of the file)")
    if smiles_column in targets:
        raise ValueError(f"targets must be label columns, not the SMILES column {smiles_column!r}")
    labels = frame[list(targets)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
    smiles = [s.strip() if isinstance(s, str) else "" for s in frame[smiles_column].tolist()]
    return smiles, labels


def _graph(smiles: str, chem) -> tuple[dict[str, np.ndarray], object] | None:
    """``(smiles2graph(smiles), RDKit molecule)``, or ``None`` when RDKit cannot parse it or it
    has no atoms (``smiles2graph`` itself fails on those)."""
    from ogb.utils import smiles2graph

    if not smiles:
        return None
    mol = chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return smiles2graph(smiles), mol


def _scaffold(mol, include_chirality: bool) -> str:
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=include_chirality)


def process_moleculenet(folder: Path, required: list[Path], optional: list[Path | None], *,
                        smiles_column: str, label_columns: Sequence[str], task_type: str,
                        targets: Sequence[str] | str | None = None,
                        include_chirality: bool = True) -> Data:
    """Read one MoleculeNet CSV into a packed ``Data`` (see the module docstring).

    Args:
        smiles_column: column holding the SMILES.
        label_columns: the dataset's label columns (its tasks).
        task_type: ``"binary classification"`` or ``"regression"``.
        targets: a subset (or other numeric columns) of the file to predict instead of
            ``label_columns``; a single name is one task.
        include_chirality: keep stereo information in the Murcko scaffolds.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
    chem = import_rdkit()
    targets = [targets] if isinstance(targets, str) else list(targets or label_columns)
    if not targets:
        raise ValueError("targets must name at least one label column")
    smiles, labels = read_moleculenet_csv(required[0], smiles_column, targets)
    xs, edges, attrs, ys, kept, scaffolds, invalid = [], [], [], [], [], [], []
    node_ptr, edge_ptr = [0], [0]
    for row, (s, y) in enumerate(zip(smiles, labels)):
        parsed = _graph(s, chem) if not np.isnan(y).all() else None
        if parsed is None:
            invalid.append(row)
            continue
        graph, mol = parsed
        xs.append(graph["node_feat"])
        edges.append(graph["edge_index"])
        attrs.append(graph["edge_feat"])
        node_ptr.append(node_ptr[-1] + int(graph["num_nodes"]))
        edge_ptr.append(edge_ptr[-1] + graph["edge_index"].shape[1])
        ys.append(y)
        kept.append(s)
        scaffolds.append(_scaffold(mol, include_chirality))
    if not kept:
        raise ValueError(f"{required[0].name}: no row has a valid SMILES and a label")
    if invalid:
        warnings.warn(f"{required[0].name}: skipped {len(invalid)} of {len(smiles)} rows "
                      f"(invalid SMILES or no label), e.g. data rows {invalid[:5]}", stacklevel=2)
    y = torch.from_numpy(np.stack(ys)).to(torch.float32)
    if task_type == "binary classification":
        observed = y[~torch.isnan(y)]
        if not bool(((observed == 0) | (observed == 1)).all()):
            raise ValueError(f"{required[0].name}: classification targets {targets} must be 0/1 "
                             f"(or empty for missing)")
    return Data(
        x=torch.from_numpy(np.concatenate(xs)).long(),
        edge_index=torch.from_numpy(np.concatenate(edges, axis=1)).long(),
        edge_attr=torch.from_numpy(np.concatenate(attrs)).long().view(-1, 3),
        node_ptr=torch.tensor(node_ptr, dtype=torch.long),
        edge_ptr=torch.tensor(edge_ptr, dtype=torch.long),
        y=y, smiles=kept, scaffold=scaffolds, targets=targets, task_type=task_type,
        num_rows=len(smiles), num_invalid=len(invalid), invalid_rows=invalid,
        metric="rocauc" if task_type == "binary classification" else "rmse",
    )

