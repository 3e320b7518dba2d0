"""Link-prediction data: SEAL networks, node datasets as graphs, seeded splits, negatives,
the OGB ogbl-* path (offline, written with ogb.io.DatasetSaver) and bad input."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import RandomLinkSplit
from torch_geometric.utils import is_undirected

from graphmoe.data import DatasetNotFoundError, cache_dir, list_datasets, load_dataset
from graphmoe.data.link import (
    LINK_SPLIT_KEYS,
    as_pyg_splits,
    check_link_split,
    load_link_dataset,
    load_link_graph,
    negative_edges,
    ogb_link_evaluator,
    random_link_split,
    write_ogb_link_dataset,
)

# nodes and undirected edges, from the folder's PROVENANCE.md
SEAL = {"usair": (332, 2126), "ns": (1589, 2742), "pb": (1222, 16714), "yeast": (2375, 11693),
        "celegans": (297, 2148), "power": (4941, 6594), "router": (5022, 6258),
        "ecoli": (1805, 14660)}


def _pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(u, v), max(u, v)) for u, v in edge_index.t().tolist()}


def ring(num_nodes: int = 40, chords: int = 2) -> Data:
    """A small undirected graph: a ring plus chords ``i -> i + chords``."""
    src = torch.arange(num_nodes)
    ei = torch.cat([torch.stack([src, (src + 1) % num_nodes]),
                    torch.stack([src, (src + chords) % num_nodes])], dim=1)
    ei = torch.cat([ei, ei.flip(0)], dim=1)
    data = Data(x=torch.randn(num_nodes, 4), edge_index=ei, num_nodes=num_nodes)
    data.name = "ring"
    return data


@pytest.mark.parametrize("name", sorted(SEAL))
def test_seal_graphs_match_their_provenance(name, data_root):
    graph = load_link_graph(name, data_root, features="constant")
    nodes, edges = SEAL[name]
    assert graph.num_nodes == nodes and graph.edge_index.size(1) == 2 * edges
    assert is_undirected(graph.edge_index) and bool((graph.edge_index[0] != graph.edge_index[1]).all())
    assert graph.x.shape == (nodes, 1) and graph.task == "link" and graph.metric == "rocauc"


def test_seal_feature_options(data_root):
    onehot = load_link_graph("usair", data_root)
    assert torch.equal(onehot.x, torch.eye(332))
    rand = load_link_graph("USAir", data_root, features="random", feature_dim=8, feature_seed=3)
    again = load_link_graph("seal-usair", data_root, features="random", feature_dim=8, feature_seed=3)
    assert rand.x.shape == (332, 8) and torch.equal(rand.x, again.x)
    with pytest.raises(ValueError, match="features must be one of"):
        load_link_graph("usair", data_root, features="degree")
    with pytest.raises(TypeError, match="unexpected option"):
        load_link_graph("usair", data_root, undirected=True)


def test_registry_lists_the_link_datasets(data_root):
    rows = {r["name"]: r for r in list_datasets(data_root)}
    for name in SEAL:
        assert rows[name]["task"] == "link" and rows[name]["present"]
    assert rows["ogbl-collab"]["task"] == "link" and rows["ogbl-collab"]["metric"] == "hits@50"


def test_load_dataset_of_a_link_dataset_is_its_split(data_root):
    data = load_dataset("usair", data_root)
    check_link_split(data)
    num_edges = SEAL["usair"][1]
    num_val, num_test = int(0.05 * num_edges), int(0.1 * num_edges)
    assert data.val_pos_edge_index.size(1) == num_val
    assert data.test_pos_edge_index.size(1) == num_test
    assert data.train_pos_edge_index.size(1) == num_edges - num_val - num_test
    assert data.val_neg_edge_index.size(1) == num_val and data.test_neg_edge_index.size(1) == num_test
    # the same sizes as PyG's RandomLinkSplit with the same ratios
    full = load_link_graph("usair", data_root)
    train, val, test = RandomLinkSplit(num_val=0.05, num_test=0.1, is_undirected=True,
                                       add_negative_train_samples=False)(full)
    assert int(val.edge_label.sum()) == num_val and int(test.edge_label.sum()) == num_test
    assert train.edge_index.size(1) == data.edge_index.size(1)


def test_split_is_a_partition_with_true_negatives(data_root):
    full = load_link_graph("celegans", data_root)
    data = load_link_dataset("celegans", data_root, seed=3, neg_ratio=2.0)
    edges = _pairs(full.edge_index)
    train, val, test = (_pairs(data[f"{s}_pos_edge_index"]) for s in ("train", "val", "test"))
    assert train | val | test == edges
    assert not (train & val) and not (train & test) and not (val & test)
    assert _pairs(data.edge_index) == train and is_undirected(data.edge_index)
    for stage in ("val", "test"):
        neg = data[f"{stage}_neg_edge_index"]
        assert neg.size(1) == 2 * data[f"{stage}_pos_edge_index"].size(1)
        assert bool((neg[0] < neg[1]).all())  # no self-loops, one direction
        assert len(_pairs(neg)) == neg.size(1) and not (_pairs(neg) & edges)
    assert not (_pairs(data.val_neg_edge_index) & _pairs(data.test_neg_edge_index))


def test_splits_are_seeded_and_cached(data_root):
    a = load_link_dataset("ns", data_root, seed=1, split=2)
    b = load_link_dataset("ns", data_root, seed=1, split=2)  # from the cache
    c = load_link_dataset("ns", data_root, seed=2, split=2)
    for key in LINK_SPLIT_KEYS:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a.test_pos_edge_index, c.test_pos_edge_index)
    cached = list((cache_dir() / "processed" / "ns").glob("*.pt"))
    assert len(cached) >= 3  # the graph and two splits
    fresh = random_link_split(load_link_graph("ns", data_root), seed=1, split=2)
    for key in LINK_SPLIT_KEYS:
        assert torch.equal(a[key], fresh[key])


def test_node_datasets_serve_link_prediction(data_root):
    data = load_link_dataset("Cora", data_root)
    assert data.x.shape == (2708, 1433) and data.name == "cora" and data.metric == "rocauc"
    total = sum(data[f"{s}_pos_edge_index"].size(1) for s in ("train", "val", "test"))
    assert total == 5278 and data.get("y") is None


def test_as_pyg_splits_layout(data_root):
    data = load_link_dataset("usair", data_root)
    train, val, test = as_pyg_splits(data)
    assert torch.equal(train.edge_label_index, data.train_pos_edge_index)
    assert bool(train.edge_label.eq(1).all())
    assert val.edge_label_index.size(1) == val.edge_label.numel() == 2 * data.val_pos_edge_index.size(1)
    assert torch.equal(test.edge_index, data.edge_index)


def test_negative_edges():
    graph = ring(20)
    gen = torch.Generator().manual_seed(0)
    neg = negative_edges(20, 50, graph.edge_index, generator=gen)
    assert neg.shape == (2, 50) and len(_pairs(neg)) == 50
    assert not (_pairs(neg) & _pairs(graph.edge_index)) and bool((neg[0] < neg[1]).all())
    available = 20 * 19 // 2 - 40
    assert len(_pairs(negative_edges(20, available, graph.edge_index, generator=gen))) == available
    with pytest.raises(ValueError, match="distinct negative pairs"):
        negative_edges(20, available + 1, graph.edge_index)
    assert negative_edges(20, 500, graph.edge_index, unique=False).shape == (2, 500)


# -- bad input ---------------------------------------------------------------------------------


def test_directed_graph_is_refused_or_symmetrised():
    graph = ring(30)
    directed = Data(x=graph.x, edge_index=graph.edge_index[:, :60], num_nodes=30)
    with pytest.raises(ValueError, match="directed.*symmetrize=True"):
        random_link_split(directed)
    split = random_link_split(directed, symmetrize=True, val_ratio=0.1, test_ratio=0.1)
    assert sum(split[f"{s}_pos_edge_index"].size(1) for s in ("train", "val", "test")) == 60


def test_split_with_no_edges_is_refused():
    with pytest.raises(ValueError, match="validation split has no edges"):
        random_link_split(ring(10), val_ratio=0.01, test_ratio=0.2)
    with pytest.raises(ValueError, match="must be a float in"):
        random_link_split(ring(10), test_ratio=0.0)
    with pytest.raises(ValueError, match="must be < 1"):
        random_link_split(ring(10), val_ratio=0.5, test_ratio=0.5)
    data = random_link_split(ring(40))
    empty = data.clone()
    empty.test_pos_edge_index = torch.empty(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="test_pos_edge_index has no edges"):
        check_link_split(empty)


def test_bad_link_graphs():
    with pytest.raises(ValueError, match="NaN"):
        random_link_split(Data(x=torch.full((4, 2), float("nan")),
                               edge_index=ring(4).edge_index, num_nodes=4))
    bad = ring(10)
    bad.edge_index = bad.edge_index + 5
    with pytest.raises(ValueError, match="node indices"):
        random_link_split(bad)


# -- OGB ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ogbl_root(data_root, tmp_path_factory):
    split = load_link_dataset("usair", data_root, features="random", feature_dim=8)
    root = tmp_path_factory.mktemp("ogbl-root")
    meta = write_ogb_link_dataset(split, "ogbl-usair", root, eval_metric="hits@20")
    return root, meta, split


def test_ogbl_round_trip_keeps_the_official_split(ogbl_root):
    root, meta, split = ogbl_root
    data = load_dataset("ogbl-usair", root)
    assert data.name == "ogbl-usair" and data.metric == "hits@20" and data.task == "link"
    assert torch.allclose(data.x, split.x)
    for key in LINK_SPLIT_KEYS:
        assert torch.equal(data[key], split[key]), key
    assert _pairs(data.edge_index) == _pairs(split.edge_index)
    with pytest.raises(ValueError, match="one official split"):
        load_dataset("ogbl-usair", root, split=1)
    by_meta = load_link_dataset("ogbl-usair", root / "elsewhere", meta_dict=meta)
    assert torch.equal(by_meta.test_neg_edge_index, split.test_neg_edge_index)


def test_ogbl_evaluator(ogbl_root):
    _, meta, _ = ogbl_root
    evaluator = ogb_link_evaluator("ogbl-usair", meta)
    res = evaluator.eval({"y_pred_pos": torch.tensor([3.0, 0.5]),
                          "y_pred_neg": torch.arange(30, dtype=torch.float) / 10})
    assert res == {"hits@20": 0.5}
    assert ogb_link_evaluator("ogbl-collab").eval_metric == "hits@50"


def test_missing_ogbl_dataset_names_its_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="raw/edge.csv.gz.*ogbl_ddi"):
        load_dataset("ogbl-ddi", tmp_path)
