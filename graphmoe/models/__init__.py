"""Backbones (MLP, GCN, GraphSAGE, GAT, GIN, GINE, DAGNN), GMoE, GMoE-GIN, Mowst, their layers and the registry."""
from graphmoe.models.basic_gnn import GAT, GCN, GIN, BasicGNN, GraphSAGE
from graphmoe.models.conv import GATConv, GCNConv, GINConv, SAGEConv
from graphmoe.models.dagnn import DAGNN
from graphmoe.models.dropout import Dropout
from graphmoe.models.gine import GINE, GINEConv
from graphmoe.models.gmoe import GMoE, GMoEConv
from graphmoe.models.gmoe_gin import GMoEGIN, GMoEGINConv
from graphmoe.models.mlp import MLP
from graphmoe.models.mowst import ConfidenceGate, Mowst, MowstOutput, MowstPrediction
from graphmoe.models.registry import MODEL_REGISTRY, build_model

__all__ = [
    "BasicGNN",
    "MLP",
    "GCN",
    "GraphSAGE",
    "GAT",
    "GIN",
    "DAGNN",
    "GMoE",
    "GMoEConv",
    "GINE",
    "GINEConv",
    "GMoEGIN",
    "GMoEGINConv",
    "Mowst",
    "ConfidenceGate",
    "MowstOutput",
    "MowstPrediction",
    "GCNConv",
    "SAGEConv",
    "GATConv",
    "GINConv",
    "Dropout",
    "build_model",
    "MODEL_REGISTRY",
]
