"""Every registered dataset present in the shared data root loads with the counts of
its PROVENANCE.md; provided and random splits behave."""
from __future__ import annotations

import pytest
import torch

from graphmoe.data import list_datasets, load_dataset

# name: (nodes, directed edges as loaded, features, classes, metric). Undirected sets
# hold each stored edge twice; directed ones keep the stored (de-duplicated) edges.
EXPECTED = {
    "cora": (2708, 2 * 5278, 1433, 7, "acc"),
    "citeseer": (3327, 2 * 4552, 3703, 6, "acc"),
    "cora-npz": (2708, 10556, 1433, 7, "acc"),
    "citeseer-npz": (3312, 9072, 3703, 6, "acc"),
    "amazon-photo": (7650, 238162, 745, 8, "acc"),
    "minesweeper": (10000, 2 * 39402, 7, 2, "rocauc"),
    "tolokers": (11758, 2 * 519000, 10, 2, "rocauc"),
    "chameleon": (2277, 2 * 31371, 2325, 5, "acc"),
    "chameleon-directed": (2277, 36101, 2325, 5, "acc"),
    "chameleon-filtered": (890, 2 * 8854, 2325, 5, "acc"),
    "chameleon-filtered-directed": (890, 13584, 2325, 5, "acc"),
    "squirrel": (5201, 2 * 198353, 2089, 5, "acc"),
    "squirrel-directed": (5201, 217073, 2089, 5, "acc"),
    "squirrel-filtered": (2223, 2 * 46998, 2089, 5, "acc"),
    "squirrel-filtered-directed": (2223, 65718, 2089, 5, "acc"),
    "actor": (7600, 2 * 26659, 932, 5, "acc"),
    "cornell": (183, 2 * 277, 1703, 5, "acc"),
    "texas": (183, 2 * 279, 1703, 5, "acc"),
    "texas-4-classes": (183, 2 * 279, 1703, 5, "acc"),
    "wisconsin": (251, 2 * 450, 1703, 5, "acc"),
    # Geom-GCN edge lists, coalesced like PyG's WebKB/Actor (film has duplicate lines).
    "geom-cornell": (183, 298, 1703, 5, "acc"),
    "geom-texas": (183, 325, 1703, 5, "acc"),
    "geom-wisconsin": (251, 515, 1703, 5, "acc"),
    "geom-film": (7600, 30019, 932, 5, "acc"),
    # LINKX: adjacency nnz as stored (symmetric); feature counts as in the LINKX paper.
    "amherst41": (2235, 181908, 1193, 2, "acc"),
    "reed98": (962, 37624, 745, 2, "acc"),
    "johnshopkins55": (5180, 373172, 2406, 2, "acc"),
    "cornell5": (18660, 1581554, 4735, 2, "acc"),
    "twitch-de": (9498, 2 * 153138, 2514, 2, "rocauc"),
}


@pytest.fixture(scope="module")
def present(data_root) -> set[str]:
    # node datasets; link datasets (SEAL) are checked in test_link_data.py
    return {r["name"] for r in list_datasets(data_root) if r["present"] and r["task"] == "node"}


def test_every_present_dataset_has_expected_counts(present):
    unexpected = present - set(EXPECTED) - {"csbm"}
    assert not unexpected, f"add expected counts for {sorted(unexpected)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_loads_with_provenance_counts(data_root, present, name):
    if name not in present:
        pytest.skip(f"{name} is not in {data_root}")
    nodes, edges, features, classes, metric = EXPECTED[name]
    data = load_dataset(name, data_root)
    assert (data.num_nodes, data.num_edges, data.num_features) == (nodes, edges, features)
    assert (data.num_classes, data.metric, data.name) == (classes, metric, name)
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.long
    assert data.edge_index.dtype == torch.long
    for key in ("train_mask", "val_mask", "test_mask"):
        mask = data[key]
        assert mask.dtype == torch.bool and mask.shape == (nodes,) and mask.any()
    assert not (data.train_mask & data.val_mask).any()
    assert not (data.train_mask & data.test_mask).any()


def test_planetoid_public_split(data_root):
    data = load_dataset("Cora", data_root)
    assert [int(data[k].sum()) for k in ("train_mask", "val_mask", "test_mask")] == [140, 500, 1000]
    with pytest.raises(ValueError, match="split=1 is out of range"):
        load_dataset("cora", data_root, split=1)


@pytest.mark.parametrize("name", ["minesweeper", "geom-cornell", "chameleon-filtered"])
def test_provided_splits_differ(data_root, name):
    masks = [load_dataset(name, data_root, split=s).train_mask for s in range(10)]
    for i in range(10):
        for j in range(i + 1, 10):
            assert not torch.equal(masks[i], masks[j]), (i, j)
    with pytest.raises(ValueError, match="provides 10 split"):
        load_dataset(name, data_root, split=10)


def test_twitch_uses_its_five_linkx_splits(data_root):
    data = load_dataset("twitch-de", data_root, split=4)
    assert [int(data[k].sum()) for k in ("train_mask", "val_mask", "test_mask")] == \
        [4749, 2374, 2375]
    with pytest.raises(ValueError, match="provides 5 split"):
        load_dataset("twitch-de", data_root, split=5)


def test_random_per_class_split_is_seeded(data_root):
    a = load_dataset("amazon-photo", data_root, seed=3, split=2)
    b = load_dataset("amazon-photo", data_root, seed=3, split=2)
    c = load_dataset("amazon-photo", data_root, seed=3, split=3)
    d = load_dataset("amazon-photo", data_root, seed=4, split=2)
    assert torch.equal(a.train_mask, b.train_mask) and torch.equal(a.test_mask, b.test_mask)
    assert not torch.equal(a.train_mask, c.train_mask)
    assert not torch.equal(a.train_mask, d.train_mask)
    counts = torch.bincount(a.y[a.train_mask], minlength=8)
    assert counts.tolist() == [20] * 8
    assert torch.bincount(a.y[a.val_mask], minlength=8).tolist() == [30] * 8


def test_split_options(data_root):
    data = load_dataset("cora-npz", data_root, train_per_class=5, val_per_class=10)
    assert int(data.train_mask.sum()) == 35 and int(data.val_mask.sum()) == 70
    data = load_dataset("cora", data_root, split_scheme="ratio", train_ratio=0.6, val_ratio=0.2)
    assert int(data.train_mask.sum()) == int(0.6 * 2708)
    assert int(data.val_mask.sum()) == int(0.2 * 2708)
    with pytest.raises(ValueError, match="split_scheme"):
        load_dataset("cora", data_root, split_scheme="stratified")


def test_fb100_excludes_unlabelled_nodes(data_root):
    splits = [load_dataset("reed98", data_root, split=s) for s in range(3)]
    data = splits[0]
    labelled = data.y >= 0
    assert (~labelled).any()  # Reed98 has students without a gender entry
    inside = data.train_mask | data.val_mask | data.test_mask
    assert torch.equal(inside, labelled)
    assert abs(int(data.train_mask.sum()) - 0.5 * int(labelled.sum())) <= 1
    assert not torch.equal(splits[1].train_mask, splits[2].train_mask)


def test_undirected_option(data_root):
    directed = load_dataset("geom-texas", data_root)
    undirected = load_dataset("geom-texas", data_root, undirected=True)
    assert undirected.num_edges > directed.num_edges
    assert undirected.is_undirected() and not directed.is_undirected()
