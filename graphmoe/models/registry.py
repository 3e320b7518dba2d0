"""Build a backbone by name: ``build_model("gcn", in_channels=..., ...)``."""
from __future__ import annotations

import torch

from graphmoe.models.basic_gnn import GAT, GCN, GIN, GraphSAGE
from graphmoe.models.dagnn import DAGNN
from graphmoe.models.gine import GINE
from graphmoe.models.gmoe import GMoE
from graphmoe.models.gmoe_gin import GMoEGIN
from graphmoe.models.mlp import MLP

MODEL_REGISTRY: dict[str, type[torch.nn.Module]] = {
    "mlp": MLP,
    "gcn": GCN,
    "sage": GraphSAGE,
    "graphsage": GraphSAGE,
    "gat": GAT,
    "gin": GIN,
    "dagnn": DAGNN,
    "gmoe": GMoE,
    # graph-level molecules: GIN with bond features, GMoE with hop-wise GIN experts
    "gine": GINE,
    "gmoe_gin": GMoEGIN,
}


def build_model(name: str, **kwargs) -> torch.nn.Module:
    """Instantiate the model registered as ``name`` (case-insensitive) with ``**kwargs``.

    Raises:
        ValueError: if ``name`` is not in :data:`MODEL_REGISTRY`.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in MODEL_REGISTRY:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[key](**kwargs)
