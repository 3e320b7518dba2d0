"""MoleculeNet CSVs as graph datasets: counts, invalid SMILES, scaffold split, cache, errors."""
from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import torch

from graphmoe.data import FORMATS, list_datasets, load_dataset
from graphmoe.data.graphs import GraphDataset
from graphmoe.data.scaffold import murcko_scaffold, random_graph_split, scaffold_split

REPO = Path(__file__).resolve().parents[2]


def test_bbbp_counts_features_and_scaffold_split(data_root):
    with pytest.warns(UserWarning, match="skipped 11 of 2050 rows"):
        bbbp = load_dataset("bbbp", data_root)
    assert isinstance(bbbp, GraphDataset)
    # 11 SMILES of BBBP do not parse in RDKit: 2,039 graphs, as ogbg-molbbbp.
    assert (len(bbbp), bbbp.num_rows, bbbp.num_invalid) == (2039, 2050, 11)
    assert bbbp.invalid_rows[:2] == [59, 61]
    assert (bbbp.num_tasks, bbbp.metric, bbbp.task_type) == (1, "rocauc", "binary classification")
    sizes = [int(bbbp.split_idx[k].numel()) for k in ("train", "valid", "test")]
    assert sizes == [1631, 204, 204]  # ogbg-molbbbp's split sizes
    graph = bbbp[0]
    assert graph.x.dtype == torch.long and graph.x.size(1) == 9
    assert graph.edge_attr.dtype == torch.long and graph.edge_attr.size(1) == 3
    assert graph.edge_index.size(1) == graph.edge_attr.size(0)
    assert graph.y.shape == (1, 1) and set(bbbp._data.y.view(-1).tolist()) == {0.0, 1.0}
    assert load_dataset("ogbg-molbbbp", data_root).name == "bbbp"  # alias
    row = next(r for r in list_datasets(data_root) if r["name"] == "bbbp")
    assert row["task"] == "graph" and row["present"] and row["metric"] == "rocauc"


def test_esol_scaffold_split_is_disjoint_deterministic_and_80_10_10(data_root):
    esol = load_dataset("esol", data_root)
    assert (len(esol), esol.num_invalid, esol.metric, esol.num_tasks) == (1128, 0, "rmse", 1)
    assert bool(torch.isfinite(esol._data.y).all())
    split = esol.split_idx
    parts = {k: {esol.scaffold[i] for i in split[k].tolist()} for k in split}
    assert not parts["train"] & parts["valid"] and not parts["train"] & parts["test"]
    assert not parts["valid"] & parts["test"]
    everything = torch.cat(list(split.values())).sort().values
    assert torch.equal(everything, torch.arange(len(esol)))
    assert [int(split[k].numel()) for k in ("train", "valid", "test")] == [902, 113, 113]
    again = load_dataset("esol", data_root, seed=5)  # the scaffold split ignores the seed
    assert all(torch.equal(split[k], again.split_idx[k]) for k in split)
    assert esol.scaffold[0] == murcko_scaffold(esol.smiles[0])


def test_scaffold_split_convention_and_random_split():
    # groups: "a" x4, "b" x3, "c" x2, "d" x1 -> the largest fill train first.
    scaffolds = ["b", "a", "a", "c", "b", "a", "d", "c", "a", "b"]
    split = scaffold_split(scaffolds, 0.7, 0.2)
    assert split["train"].tolist() == [0, 1, 2, 4, 5, 8, 9]  # a + b
    assert split["valid"].tolist() == [3, 7] and split["test"].tolist() == [6]
    one = random_graph_split(100, seed=1)
    assert [int(v.numel()) for v in one.values()] == [80, 10, 10]
    assert all(torch.equal(one[k], random_graph_split(100, seed=1)[k]) for k in one)
    assert not torch.equal(one["test"], random_graph_split(100, seed=2)["test"])
    with pytest.raises(ValueError, match="frac_train"):
        scaffold_split(scaffolds, 0.9, 0.2)


def test_random_split_option(data_root):
    a = load_dataset("esol", data_root, split_scheme="random", seed=1)
    b = load_dataset("esol", data_root, split_scheme="random", seed=2)
    assert a.split_scheme == "random" and not torch.equal(a.split_idx["test"], b.split_idx["test"])
    with pytest.raises(ValueError, match="split_scheme"):
        load_dataset("esol", data_root, split_scheme="stratified")
    with pytest.raises(TypeError, match="unexpected option"):
        load_dataset("esol", data_root, train_per_class=20)


def test_second_load_is_a_cache_hit(data_root, monkeypatch):
    load_dataset("esol", data_root)

    def boom(*args, **kwargs):
        raise AssertionError("processed again instead of read from the cache")

    monkeypatch.setitem(FORMATS, "moleculenet", dataclasses.replace(FORMATS["moleculenet"],
                                                                    process=boom))
    monkeypatch.setitem(sys.modules, "rdkit", None)  # a cached dataset needs no RDKit
    assert len(load_dataset("esol", data_root)) == 1128


def _write(root: Path, name: str, text: str) -> Path:
    folder = root / "moleculenet"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return root


def test_invalid_smiles_and_missing_labels_are_skipped_or_kept_as_nan(tmp_path):
    root = _write(tmp_path, "BBBP.csv", "num,name,p_np,smiles\n1,a,1,CCO\n2,b,0,C1CC\n"
                                        "3,c,1,\n4,d,,c1ccccc1\n5,e,0,c1ccccc1O\n6,f,1,[Na+]\n")
    with pytest.warns(UserWarning, match="skipped 3 of 6 rows"):
        data = load_dataset("bbbp", root)
    assert len(data) == 3 and data.invalid_rows == [1, 2, 3] and data.smiles[2] == "[Na+]"
    assert data[2].num_nodes == 1 and data[2].edge_index.size(1) == 0  # one atom, no bond
    root = _write(tmp_path, "clintox.csv", "smiles,FDA_APPROVED,CT_TOX\nCCO,1,\nCCN,,1\nCCC,0,0\n")
    tox = load_dataset("clintox", root)
    assert tox.num_tasks == 2 and tox.metric == "rocauc"
    assert torch.isnan(tox._data.y).sum() == 2  # missing labels of a multi-task set stay NaN


def test_unknown_target_column_and_missing_rdkit(tmp_path, monkeypatch):
    root = _write(tmp_path, "BBBP.csv", "num,name,p_np,smiles\n1,a,1,CCO\n")
    with pytest.raises(ValueError, match=re.escape("no column(s) ['nope']")):
        load_dataset("bbbp", root, targets=["nope"])
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError, match=re.escape("pip install graphmoe[chem]")):
        load_dataset("bbbp", root, force_reload=True)


def test_graphmoe_imports_rdkit_lazily():
    pattern = re.compile(r"^(from|import) rdkit", re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "graphmoe").rglob("*.py")
                 if pattern.search(p.read_text())]
    assert offenders == []
