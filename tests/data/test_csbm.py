"""The synthetic two-region CSBM: homophily per region, determinism, model separation."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import degree

from graphmoe.data import csbm, load_dataset, region_homophily, validate_graph


@pytest.mark.parametrize("homophily", [(0.8, 0.2), (0.95, 0.05), (0.5,), (0.3, 0.6, 0.9)])
@pytest.mark.parametrize("pattern", ["cyclic", "uniform"])
def test_region_homophily_is_as_requested(homophily, pattern):
    data = csbm(num_nodes=2000, homophily=homophily, pattern=pattern, seed=1)
    measured = region_homophily(data.edge_index, data.y, data.region)
    assert measured == pytest.approx(list(homophily), abs=0.03)


def test_defaults_match_the_demo_spec():
    data = load_dataset("csbm")
    assert (data.num_nodes, data.num_features, data.num_classes) == (3000, 32, 5)
    assert data.name == "csbm" and data.metric == "acc"
    assert 8.0 < data.num_edges / data.num_nodes < 11.0
    assert data.is_undirected() and not data.has_self_loops()
    assert torch.bincount(data.region).tolist() == [1500, 1500]
    assert [int(data[k].sum()) for k in ("train_mask", "val_mask", "test_mask")] == \
        [1500, 750, 750]
    validate_graph(data)


def test_seeded_graph_and_split():
    a, b = csbm(seed=7), csbm(seed=7)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
    assert torch.equal(a.train_mask, b.train_mask)
    c = csbm(seed=8)
    assert not torch.equal(a.y, c.y)
    d, e = load_dataset("csbm", seed=7, split=1), load_dataset("csbm", seed=7)
    assert torch.equal(d.edge_index, e.edge_index) and torch.equal(d.x, e.x)
    assert not torch.equal(d.train_mask, e.train_mask)


def test_options_pass_through_load_dataset():
    data = load_dataset("csbm", num_nodes=500, num_classes=3, num_features=8,
                        homophily=(0.9,), region_sizes=None, avg_degree=4.0, signal=(2.0,))
    assert (data.num_nodes, data.num_features, data.num_classes) == (500, 8, 3)
    assert data.region.unique().tolist() == [0]


def test_region_sizes():
    data = csbm(num_nodes=1000, region_sizes=(0.25, 0.75))
    assert torch.bincount(data.region).tolist() == [250, 750]


@pytest.mark.parametrize("kwargs, message", [
    ({"homophily": (1.2, 0.1)}, "homophily"),
    ({"region_sizes": (1.0,)}, "region_sizes"),
    ({"num_classes": 1}, "num_classes"),
    ({"pattern": "random"}, "pattern"),
    ({"signal": (1.0, 2.0, 3.0)}, "signal"),
    ({"signal": (1.0, -1.0)}, "signal"),
    ({"train_ratio": 0.9, "val_ratio": 0.2}, "train_ratio"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        csbm(num_nodes=100, **kwargs)


def _ridge_accuracy(features, data, mask):
    """Test accuracy of a least-squares linear classifier: a fast stand-in for training."""
    y = torch.nn.functional.one_hot(data.y).float()
    x = torch.cat([features, torch.ones(features.size(0), 1)], dim=1)
    a = x[data.train_mask]
    w = torch.linalg.solve(a.T @ a + torch.eye(a.size(1)), a.T @ y[data.train_mask])
    pred = (x @ w).argmax(dim=1)
    sel = data.test_mask & mask
    return float((pred[sel] == data.y[sel]).float().mean())


def _gcn_smooth(x, edge_index):
    n = x.size(0)
    loops = torch.arange(n)
    ei = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
    deg = degree(ei[1], n)
    w = (deg[ei[0]] * deg[ei[1]]).rsqrt().unsqueeze(-1)
    return torch.zeros_like(x).index_add_(0, ei[1], x[ei[0]] * w)


def test_graph_helps_far_more_in_the_homophilous_region():
    data = csbm(seed=0)
    smooth = _gcn_smooth(_gcn_smooth(data.x, data.edge_index), data.edge_index)
    gains = []
    for r in (0, 1):
        region = data.region == r
        gains.append(_ridge_accuracy(smooth, data, region) - _ridge_accuracy(data.x, data, region))
    assert gains[0] > 0.3 and gains[0] > gains[1] + 0.1


@pytest.mark.slow
def test_mlp_gcn_sage_reach_clearly_different_accuracies():
    from torch_geometric.nn.models import GCN, MLP, GraphSAGE

    data = load_dataset("csbm")
    f, c = data.num_features, data.num_classes

    def accuracy(model, graph: bool, masks) -> tuple[float, ...]:
        torch.manual_seed(0)
        model.reset_parameters()
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
        for _ in range(100):
            model.train()
            opt.zero_grad()
            out = model(data.x, data.edge_index) if graph else model(data.x)
            loss = torch.nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask])
            loss.backward()
            opt.step()
        model.eval()
        out = model(data.x, data.edge_index) if graph else model(data.x)
        return tuple(float((out.argmax(1)[mask] == data.y[mask]).float().mean()) for mask in masks)

    homophilous = data.test_mask & (data.region == 0)
    heterophilous = data.test_mask & (data.region == 1)
    mlp = accuracy(MLP([f, 64, c], dropout=0.5), graph=False, masks=(homophilous, heterophilous))
    gcn = accuracy(GCN(f, 64, 2, c, dropout=0.5), graph=True, masks=(homophilous, heterophilous))
    sage = accuracy(GraphSAGE(f, 64, 2, c, dropout=0.5), graph=True,
                    masks=(homophilous, heterophilous))
    # the GCN wins where neighbours share labels, the MLP where features carry them
    assert gcn[0] > mlp[0] + 0.2 and mlp[1] > gcn[1] + 0.2, (mlp, gcn)
    assert min(sage) > 0.75, sage  # a root weight lets GraphSAGE do both
