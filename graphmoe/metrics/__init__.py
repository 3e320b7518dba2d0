"""Node-level metrics for link prediction analysis.

Topological Concentration (exact :func:`topological_concentration` and approximated
:func:`approximate_tc`), the classic topology metrics it is compared with (:func:`node_degree`,
:func:`khop_density`, :func:`clustering_coefficient`) and per-node ranking metrics
(:func:`node_ranking_metrics`: Hits@K, MRR, NDCG@K). Edge indices are PyG ``[2, E]`` tensors of
undirected graphs, with both directions of every edge listed.
"""
from graphmoe.metrics.atc import approximate_tc
from graphmoe.metrics.ranking import hits_at_k, mrr, ndcg_at_k, node_ranking_metrics
from graphmoe.metrics.structure import clustering_coefficient, khop_density, node_degree
from graphmoe.metrics.tc import TopologicalConcentration, topological_concentration

__all__ = [
    "TopologicalConcentration",
    "topological_concentration",
    "approximate_tc",
    "node_degree",
    "khop_density",
    "clustering_coefficient",
    "node_ranking_metrics",
    "hits_at_k",
    "mrr",
    "ndcg_at_k",
]
