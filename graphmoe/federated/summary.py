"""Per-client statistics of a federated partition and a plot of their label distributions."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch_geometric.data import Data

__all__ = ["client_summary", "label_histogram", "plot_label_distribution"]


def label_histogram(y: torch.Tensor | None, num_classes: int) -> list[int]:
    """The number of nodes of each class in ``y`` (unlabelled ``-1`` entries are skipped)."""
    if y is None:
        return [0] * num_classes
    y = y.view(-1)
    return torch.bincount(y[y >= 0], minlength=num_classes).tolist()


def _count(client: Data, key: str) -> int:
    mask = client.get(key)
    return int(mask.sum()) if mask is not None else 0


def client_summary(clients: Sequence[Data], num_classes: int) -> list[dict]:
    """One row per client: ``client_id``, ``nodes``, ``edges`` (directed entries of
    ``edge_index``), ``train`` / ``val`` / ``test`` node counts, ``labels`` (class histogram)."""
    return [{
        "client_id": int(client.client_id),
        "nodes": int(client.num_nodes),
        "edges": int(client.edge_index.size(1)),
        "train": _count(client, "train_mask"),
        "val": _count(client, "val_mask"),
        "test": _count(client, "test_mask"),
        "labels": label_histogram(client.get("y"), num_classes),
    } for client in clients]


def plot_label_distribution(clients: Sequence[Data], num_classes: int,
                            path: str | os.PathLike[str], title: str = "") -> Path:
    """Write a PNG with one stacked bar per client: its number of nodes of each class."""
    # The object-oriented API renders with Agg and never touches pyplot's global backend.
    from matplotlib.figure import Figure

    counts = torch.tensor([label_histogram(c.get("y"), num_classes) for c in clients])
    counts = counts.view(len(clients), num_classes)
    client_ids = [int(c.client_id) for c in clients]
    fig = Figure(figsize=(max(6.0, 0.35 * len(clients) + 2.0), 4.0), layout="constrained")
    ax = fig.subplots()
    bottom = torch.zeros(len(clients), dtype=counts.dtype)
    colors = _class_colors(num_classes)
    for label in range(num_classes):
        ax.bar(client_ids, counts[:, label].tolist(), bottom=bottom.tolist(),
               color=colors[label], label=str(label), width=0.8)
        bottom += counts[:, label]
    ax.set_xlabel("client")
    ax.set_ylabel("nodes")
    ax.set_title(title or "Label distribution per client")
    if len(clients) <= 30:
        ax.set_xticks(client_ids)
    if num_classes <= 20:
        ax.legend(title="class", fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path


def _class_colors(num_classes: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if num_classes > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(num_classes)]
