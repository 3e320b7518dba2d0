"""Dataset registry: names, aliases, unknown names and options, list_datasets, README."""
from __future__ import annotations

from pathlib import Path

import pytest

from graphmoe.data import (
    CATALOG,
    DatasetInfo,
    get_dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
    registered_datasets,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, canonical", [
    ("cora", "cora"), ("Cora", "cora"), ("CORA", "cora"), ("planetoid-cora", "cora"),
    ("CiteSeer", "citeseer"), ("cora_npz", "cora-npz"), ("photo", "amazon-photo"),
    ("chameleon_filtered", "chameleon-filtered"), ("Texas_4_Classes", "texas-4-classes"),
    ("Johns Hopkins55", "johnshopkins55"), ("film", "geom-film"), ("geom-actor", "geom-film"),
    ("twitch-e", "twitch-de"), ("Roman_Empire", "roman-empire"), ("OGBN-Arxiv", "ogbn-arxiv"),
])
def test_names_are_case_insensitive_with_aliases(name, canonical):
    assert get_dataset_info(name).name == canonical


def test_unknown_ogbn_names_go_to_the_ogb_bridge():
    info = get_dataset_info("ogbn-mydata")
    assert info.format == "ogb_node" and info.folder == "ogbn_mydata"


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown dataset 'corra'.*'cora'"):
        get_dataset_info("corra")
    with pytest.raises(ValueError, match="chameleon"):
        load_dataset("chamelon")


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="'undirectd'"):
        load_dataset("cora", undirectd=True)
    with pytest.raises(TypeError, match="'split_scheme'"):  # csbm draws its own split
        load_dataset("csbm", split_scheme="ratio")


def test_bad_split_and_seed_types():
    with pytest.raises(TypeError, match="split"):
        load_dataset("csbm", split="0")
    with pytest.raises(ValueError, match="non-negative"):
        load_dataset("csbm", split=-1)


def test_registry_is_one_table_with_unique_keys():
    infos = registered_datasets()
    assert [i.name for i in infos] == [i.name for i in CATALOG]
    keys = [k for info in infos for k in info.keys]
    assert len(keys) == len(set(keys))


def test_register_dataset_rejects_clashes():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetInfo(name="my-cora", format="planetoid", aliases=("Cora",)))
    with pytest.raises(ValueError, match="unknown format"):
        register_dataset(DatasetInfo(name="my-set", format="no-such-format"))


def test_dataset_info_checks_its_fields():
    with pytest.raises(ValueError, match="task"):
        DatasetInfo(name="x", format="npz", task="nodes")
    with pytest.raises(ValueError, match="metric"):
        DatasetInfo(name="x", format="npz", metric="f1")
    assert DatasetInfo(name="x", format="npz", task="kg").task == "kg"


def test_list_datasets_on_an_empty_root(tmp_path):
    rows = list_datasets(tmp_path)
    assert {r["name"] for r in rows} == {i.name for i in registered_datasets()}
    for row in rows:
        assert {"name", "task", "folder", "present", "size_bytes"} <= set(row)
        assert row["present"] is (row["name"] == "csbm")
        assert row["size_bytes"] == 0


def test_list_datasets_sees_the_shared_root(data_root):
    rows = {r["name"]: r for r in list_datasets(data_root)}
    assert rows["cora"]["present"] and rows["cora"]["size_bytes"] == 572_444
    assert rows["amazon-photo"]["present"] and rows["amazon-photo"]["folder"] == "amazon_photo"
    assert not rows["pubmed"]["present"]


def test_readme_documents_every_dataset():
    readme = (REPO / "datasets" / "README.md").read_text()
    for info in registered_datasets():
        assert f"`{info.name}`" in readme, info.name
        if info.folder:
            assert info.folder in readme, info.folder
