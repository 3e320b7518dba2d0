r"""Synthetic contextual stochastic block model (CSBM) with two homophily regions.

The embedded default dataset of graphmoe (``load_dataset("csbm")``, ``make demo``):
a graph whose nodes fall into a *homophilous* and a *heterophilous* region, so that
models which mix a node with its neighbours (GCN), keep them apart (GraphSAGE) or
ignore the graph (MLP) reach clearly different accuracies, and a mixture of
experts has something to route. The dataset's defaults (``graphmoe.data.formats``)
give the heterophilous region stronger features (``signal=(1.0, 3.0)``, uniform
heterophily): there the MLP beats the GCN, and its confidence shows where.

Generative process (Deshpande et al., "Contextual Stochastic Block Models",
NeurIPS 2018, with per-region homophily):

* labels :math:`y_i \sim \mathrm{Uniform}\{0..C-1\}`; regions :math:`r_i` split the
  nodes by ``region_sizes``;
* features :math:`x_i = s_{r_i} \mu_{y_i} + \varepsilon_i`, :math:`\varepsilon_i \sim
  \mathcal{N}(0, I_F)`, class means :math:`\mu_c` random unit directions, :math:`s_r` the
  ``signal`` of region :math:`r` (one value for all regions, or one per region);
* inside region :math:`r`, each of :math:`|V_r| \cdot d / 2` edges picks a source
  :math:`u` and, with probability :math:`h_r`, a target of class :math:`y_u` in the
  region, else of class :math:`(y_u + 1) \bmod C` (``pattern="cyclic"``, an informative
  heterophily that GraphSAGE's separate root weight can exploit and GCN's
  self/neighbour averaging blurs) or of a uniformly chosen other class
  (``pattern="uniform"``); a ``cross_fraction`` of extra edges joins random nodes.
  Edges are then symmetrised, de-duplicated and self-loops dropped, so the edge
  homophily inside region :math:`r` is :math:`h_r` up to sampling noise.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from .splits import ratio_split, split_generator

__all__ = ["csbm", "region_homophily"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _region_sizes(num_nodes: int, sizes: Sequence[float] | None, num_regions: int) -> list[int]:
    fractions = [1.0 / num_regions] * num_regions if sizes is None else list(sizes)
    if len(fractions) != num_regions or min(fractions) <= 0:
        raise ValueError(f"region_sizes must hold {num_regions} positive fractions, "
                         f"got {sizes!r}")
    total = sum(fractions)
    counts = [int(round(num_nodes * f / total)) for f in fractions[:-1]]
    return counts + [num_nodes - sum(counts)]


def _sample_targets(groups: list[Tensor], group: Tensor, gen: torch.Generator) -> Tensor:
    """Uniform node from ``groups[group[k]]`` for every k (empty groups give -1)."""
    sizes = torch.tensor([len(g) for g in groups])
    flat = torch.cat(groups) if groups else torch.empty(0, dtype=torch.long)
    offsets = torch.cumsum(sizes, 0) - sizes
    pick = (torch.rand(group.numel(), generator=gen) * sizes[group]).long()
    out = torch.full_like(group, -1)
    ok = sizes[group] > 0
    out[ok] = flat[offsets[group[ok]] + pick[ok]]
    return out


def _region_edges(nodes: Tensor, y: Tensor, h: float, num_classes: int, avg_degree: float,
                  pattern: str, gen: torch.Generator) -> Tensor:
    num_edges = int(round(nodes.numel() * avg_degree / 2))
    src = nodes[torch.randint(nodes.numel(), (num_edges,), generator=gen)]
    same = torch.rand(num_edges, generator=gen) < h
    if pattern == "cyclic":
        shift = torch.ones_like(src)
    else:  # any other class, uniformly
        shift = torch.randint(1, num_classes, (num_edges,), generator=gen)
    target_class = torch.where(same, y[src], (y[src] + shift) % num_classes)
    groups = [nodes[y[nodes] == c] for c in range(num_classes)]
    dst = _sample_targets(groups, target_class, gen)
    keep = dst >= 0
    return torch.stack([src[keep], dst[keep]])


def csbm(num_nodes: int = 3000, num_classes: int = 5, num_features: int = 32,
         avg_degree: float = 10.0, homophily: Sequence[float] = (0.8, 0.2),
         region_sizes: Sequence[float] | None = None, signal: float | Sequence[float] = 1.0,
         cross_fraction: float = 0.02, pattern: str = "cyclic", train_ratio: float = 0.5, val_ratio: float = 0.25,
         seed: int = 0, split: int = 0) -> Data:
    r"""Sample a two-region (in general: ``len(homophily)``-region) CSBM graph.

    Args:
        num_nodes (int): Number of nodes. (default: :obj:`3000`)
        num_classes (int): Number of classes :math:`C`. (default: :obj:`5`)
        num_features (int): Feature dimension :math:`F`. (default: :obj:`32`)
        avg_degree (float): Expected average degree. (default: :obj:`10.0`)
        homophily (Sequence[float]): Edge homophily :math:`h_r` of each region.
            (default: :obj:`(0.8, 0.2)`)
        region_sizes (Sequence[float], optional): Relative region sizes.
            (default: equal)
        signal (float or Sequence[float]): Norm of the class means; the noise has unit
            variance, so larger means easier features. One value per region makes the
            features informative in some regions and not in others (the setting Mowst's
            weak expert is for). (default: :obj:`1.0`)
        cross_fraction (float): Extra random edges between any nodes, as a fraction
            of the intra-region edges. (default: :obj:`0.02`)
        pattern (str): Class of the other end of a heterophilous edge:
            ``"cyclic"`` (:math:`y_u + 1 \bmod C`, informative for GNNs that keep a
            node apart from its neighbours) or ``"uniform"`` (any other class).
            (default: :obj:`"cyclic"`)
        train_ratio (float): Fraction of nodes in ``train_mask``. (default: :obj:`0.5`)
        val_ratio (float): Fraction in ``val_mask``; the rest is ``test_mask``.
            (default: :obj:`0.25`)
        seed (int): Seed of the graph. (default: :obj:`0`)
        split (int): Index of the random split drawn for ``seed``. (default: :obj:`0`)

    Returns:
        ``Data`` with ``x`` [N, F], ``y`` [N], ``edge_index``, ``region`` [N] and the
        three masks.
    """
    if num_nodes < num_classes or num_classes < 2:
        raise ValueError(f"need num_classes >= 2 and num_nodes >= num_classes, got "
                         f"num_nodes={num_nodes}, num_classes={num_classes}")
    if pattern not in ("cyclic", "uniform"):
        raise ValueError(f"pattern must be 'cyclic' or 'uniform', got {pattern!r}")
    if not homophily or not all(0.0 <= h <= 1.0 for h in homophily):
        raise ValueError(f"homophily must be a non-empty list of values in [0, 1], "
                         f"got {homophily!r}")
    gen = _generator(seed)
    y = torch.randint(num_classes, (num_nodes,), generator=gen)
    sizes = _region_sizes(num_nodes, region_sizes, len(homophily))
    region = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    region = region[torch.randperm(num_nodes, generator=gen)]

    means = torch.randn(num_classes, num_features, generator=gen)
    if isinstance(signal, (int, float)):
        x = (signal * means / means.norm(dim=1, keepdim=True))[y]
    else:
        if len(signal) != len(homophily) or not all(v >= 0 for v in signal):
            raise ValueError(f"signal must be a number or one non-negative value per region "
                             f"({len(homophily)}), got {signal!r}")
        scale = torch.tensor([float(v) for v in signal])[region].unsqueeze(-1)
        x = scale * (means / means.norm(dim=1, keepdim=True))[y]
    x = x + torch.randn(num_nodes, num_features, generator=gen)

    edges = [_region_edges((region == r).nonzero().view(-1), y, h, num_classes, avg_degree,
                           pattern, gen) for r, h in enumerate(homophily)]
    num_cross = int(round(cross_fraction * sum(e.size(1) for e in edges)))
    edges.append(torch.randint(num_nodes, (2, num_cross), generator=gen))
    edge_index, _ = remove_self_loops(torch.cat(edges, dim=1))
    edge_index = coalesce(to_undirected(edge_index, num_nodes=num_nodes), num_nodes=num_nodes)

    train, val, test = ratio_split(y, train_ratio, val_ratio, split_generator(seed, split))
    return Data(x=x, y=y, edge_index=edge_index, region=region, train_mask=train, val_mask=val,
                test_mask=test)


def region_homophily(edge_index: Tensor, y: Tensor, region: Tensor) -> list[float]:
    """Edge homophily among the edges with both endpoints in region ``r``, for each ``r``."""
    src, dst = edge_index
    inside = region[src] == region[dst]
    out = []
    for r in range(int(region.max()) + 1):
        sel = inside & (region[src] == r)
        out.append(float((y[src[sel]] == y[dst[sel]]).float().mean()) if sel.any() else float("nan"))
    return out
