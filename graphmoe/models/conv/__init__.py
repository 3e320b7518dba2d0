"""Message-passing layers whose aggregation runs through :func:`graphmoe.ops.aggregate`."""
from graphmoe.models.conv.gat_conv import GATConv
from graphmoe.models.conv.gcn_conv import GCNConv, gcn_norm, gcn_propagate
from graphmoe.models.conv.gin_conv import GINConv
from graphmoe.models.conv.sage_conv import SAGEConv

__all__ = ["GCNConv", "SAGEConv", "GATConv", "GINConv", "gcn_norm", "gcn_propagate"]
