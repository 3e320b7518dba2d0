r"""Classic node-level topology metrics, the baselines TC is compared with.

Wang et al., "A Topological Perspective on Demystifying GNN-Based Link Prediction Performance",
ICLR 2024, correlate per-node link prediction performance with degree, subgraph density and
clustering as well as with TC (:mod:`graphmoe.metrics.tc`).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from torch import Tensor

from graphmoe.metrics._graph import (
    adjacency,
    check_edge_index,
    check_K,
    infer_num_nodes,
    row_counts,
    row_sums,
    support,
    to_tensor,
    triangles_per_node,
)


def _adjacency(
    edge_index: Tensor, num_nodes: int | None, symmetrize: bool, remove_self_loops: bool
) -> tuple[sp.csr_matrix, int]:
    ei = check_edge_index(edge_index)
    num_nodes = infer_num_nodes(num_nodes, edge_index=ei)
    return adjacency(ei, num_nodes, "edge_index", symmetrize, remove_self_loops), num_nodes


def node_degree(
    edge_index: Tensor, num_nodes: int | None = None, symmetrize: bool = False
) -> Tensor:
    r"""Degree :math:`d_i = |N(i)|` of every node in the undirected graph ``edge_index``.

    Duplicate edges count once; a self-loop counts once (as in the paper's neighbour sets). Pass
    the training, validation or test edges (both directions) for the train/val/test degree.

    Returns:
        ``[num_nodes]`` tensor of the default dtype.
    """
    adj, _ = _adjacency(edge_index, num_nodes, symmetrize, remove_self_loops=False)
    return to_tensor(row_counts(adj).astype(np.float64), edge_index.device)


def clustering_coefficient(
    edge_index: Tensor, num_nodes: int | None = None, symmetrize: bool = False
) -> Tensor:
    r"""Local clustering coefficient of every node (Watts & Strogatz, 1998).

    .. math::
        c_i = \frac{2 T_i}{d_i (d_i - 1)}, \qquad
        2 T_i = \left(A \odot A^2\right) \mathbf{1},

    with :math:`T_i` the number of triangles through :math:`i` (counted with the forward
    algorithm rather than :math:`A^2`); :math:`c_i = 0` where
    :math:`d_i < 2`. Self-loops are ignored (as :func:`networkx.clustering` does). It equals
    train-split TC with :math:`K = 1`.

    Returns:
        ``[num_nodes]`` tensor of the default dtype.
    """
    adj, _ = _adjacency(edge_index, num_nodes, symmetrize, remove_self_loops=True)
    deg = row_counts(adj).astype(np.float64)
    twice_tri = 2.0 * triangles_per_node(adj)
    pairs = deg * (deg - 1)
    out = np.divide(twice_tri, pairs, out=np.zeros_like(pairs), where=pairs > 0)
    return to_tensor(out, edge_index.device)


def khop_density(
    edge_index: Tensor, num_nodes: int | None = None, K: int = 1, symmetrize: bool = False
) -> Tensor:
    r"""Edge density of each node's :math:`K`-hop subgraph.

    With :math:`V_i` the nodes within :math:`K` hops of :math:`i` (:math:`i` included) and
    :math:`E_i` the edges among them (the induced subgraph, self-loops ignored),

    .. math::
        \rho_i = \frac{|E_i|}{\binom{|V_i|}{2}}, \qquad
        |V_i| = (B \mathbf{1})_i, \quad 2|E_i| = \left(B \odot (B A)\right) \mathbf{1},

    where :math:`B = \mathrm{supp}((A + I)^K)`; :math:`\rho_i = 0` where :math:`|V_i| < 2`.
    Matches :func:`networkx.density` of :func:`networkx.ego_graph` with ``radius=K``.

    Returns:
        ``[num_nodes]`` tensor of the default dtype.
    """
    K = check_K(K)
    adj, num_nodes = _adjacency(edge_index, num_nodes, symmetrize, remove_self_loops=True)
    step = (adj + sp.identity(num_nodes, format="csr")).tocsr()
    reach = step
    for _ in range(K - 1):
        reach = support((reach @ step).tocsr())
    size = row_counts(reach).astype(np.float64)
    twice_edges = row_sums(reach.multiply(reach @ adj))
    pairs = size * (size - 1)
    out = np.divide(twice_edges, pairs, out=np.zeros_like(pairs), where=pairs > 0)
    return to_tensor(out, edge_index.device)
