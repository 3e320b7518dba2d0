"""validate_graph rejects malformed graphs with a one-sentence ValueError."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from graphmoe.data import validate_graph


def good_graph() -> Data:
    x = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, -1])
    edge_index = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    train = torch.tensor([True, True, False, False, False, False])
    val = torch.tensor([False, False, True, False, False, False])
    test = torch.tensor([False, False, False, True, True, False])
    return Data(x=x, y=y, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test,
                name="toy", num_classes=3, metric="acc")


def _set(data: Data, **changes) -> Data:
    for key, value in changes.items():
        data[key] = value
    return data


def test_good_graph_passes():
    data = good_graph()
    assert validate_graph(data) is data


@pytest.mark.parametrize("changes, message", [
    ({"edge_index": torch.tensor([[0, 1], [1, 6]])}, r"node indices in \[0, 6\].*6 nodes"),
    ({"edge_index": torch.tensor([[0, -1], [1, 2]])}, "node indices"),
    ({"edge_index": torch.tensor([[0, 1, 2]])}, r"shape \[2, num_edges\]"),
    ({"edge_index": torch.tensor([[0.0], [1.0]])}, "torch.long"),
    ({"x": torch.tensor([[float("nan")]] * 6)}, "1 NaN|6 NaN"),
    ({"x": torch.full((6, 3), float("inf"))}, "NaN or infinite"),
    ({"x": torch.ones(6, 3, dtype=torch.long)}, "floating point"),
    ({"x": torch.randn(6)}, "2-D"),
    ({"y": torch.tensor([0, 1, 2, 0, 1])}, r"shape \[6\]"),
    ({"y": torch.tensor([0, 1, 3, 0, 1, 0])}, "label 3 but num_classes=3"),
    ({"y": torch.tensor([0, 1, 2, 0, 1, -2])}, "label -2"),
    ({"y": torch.zeros(6)}, "torch.long"),
    ({"train_mask": torch.ones(5, dtype=torch.bool)}, r"train_mask must be a bool tensor"),
    ({"val_mask": torch.zeros(6, dtype=torch.long)}, r"val_mask must be a bool tensor"),
    ({"test_mask": torch.ones(6, dtype=torch.bool)}, "unlabelled"),
    ({"test_mask": torch.tensor([True, False, False, False, False, False])}, "both"),
    ({"metric": "f1"}, "metric"),
])
def test_bad_graphs_are_rejected(changes, message):
    data = _set(good_graph(), **changes)
    with pytest.raises(ValueError, match=message) as info:
        validate_graph(data)
    assert "\n" not in str(info.value) and "graph 'toy'" in str(info.value)


def test_empty_graph_is_rejected():
    data = Data(x=torch.empty(0, 3), y=torch.empty(0, dtype=torch.long),
                edge_index=torch.empty(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        validate_graph(data)


def test_nan_count_is_exact():
    data = good_graph()
    data.x[0, 0] = float("nan")
    data.x[3, 2] = float("inf")
    with pytest.raises(ValueError, match="2 NaN or infinite"):
        validate_graph(data)
