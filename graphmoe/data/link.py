r"""Link-prediction data: graphs, seeded edge splits with negatives, OGB ``ogbl-*``.

Three entry points:

* :func:`load_link_graph` — the whole undirected graph ``Data(x, edge_index)`` of a link dataset
  (the SEAL networks ``usair``, ``ns``, ``pb``, ``yeast``, ``celegans``, ``power``, ``router``,
  ``ecoli``) or of any node dataset (``cora``, ``citeseer``, ...: labels and masks dropped).
* :func:`random_link_split` — a seeded split of such a graph, following PyG's
  :class:`~torch_geometric.transforms.RandomLinkSplit` conventions (``is_undirected=True``):
  every undirected edge is listed once, a random ``val_ratio`` / ``test_ratio`` of them
  (``int(ratio * num_edges)``, default 5% / 10%) are held out, the rest train; ``neg_ratio``
  negatives per held-out positive are drawn from the node pairs that are *not* edges of the whole
  graph (no self-loops; validation and test negatives are disjoint).
* :func:`load_link_dataset` — both at once, cached; ``ogbl-*`` datasets keep OGB's official
  split. ``load_dataset(name)`` of a ``task="link"`` dataset returns the same.

A link split is a :class:`~torch_geometric.data.Data` with ``x``, ``num_nodes``, ``edge_index``
(the *training* graph, both directions: the only edges message passing may use),
``train_pos_edge_index``, ``val_pos_edge_index``, ``val_neg_edge_index``,
``test_pos_edge_index``, ``test_neg_edge_index`` (``[2, *]``, one direction per pair: the names
of PyG's ``train_test_split_edges``), and ``name``, ``metric``, ``task="link"``. Unlike
``RandomLinkSplit``, the test stage does not add validation edges to the message-passing graph:
topological concentration is defined on the training graph, and so is every stage here.
Training negatives are drawn afresh each epoch by the task module (:func:`negative_edges`).

Splits are reproducible: split ``k`` of seed ``s`` draws from a generator seeded with a hash of
``(s, k)`` (as node splits do, :func:`graphmoe.data.splits.split_generator`), independent of the
global RNG, and is cached in ``$GRAPHMOE_CACHE`` keyed by the graph's edges and the options.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, is_undirected, remove_self_loops, to_undirected

from .cache import load_cached, resolve_root, save_cached
from .formats import FORMATS
from .formats.ogb_link import ogb_link_evaluator, write_ogb_link_dataset
from .registry import get_dataset_info
from .splits import split_generator

__all__ = [
    "LINK_SPLIT_KEYS",
    "as_pyg_splits",
    "check_link_split",
    "load_link_dataset",
    "load_link_graph",
    "negative_edges",
    "ogb_link_evaluator",
    "random_link_split",
    "write_ogb_link_dataset",
]

#: Edge-index attributes of a link split, ``[2, *]`` with one direction per node pair.
LINK_SPLIT_KEYS = ("train_pos_edge_index", "val_pos_edge_index", "val_neg_edge_index",
                   "test_pos_edge_index", "test_neg_edge_index")
#: Bump to invalidate cached link splits after a change in the splitting code.
SPLIT_VERSION = 1

PathLike = str | os.PathLike[str]


# -- graphs ------------------------------------------------------------------------------------


def _graph_name(data: Data) -> str:
    name = data.get("name")
    return f"graph {name!r}" if isinstance(name, str) else "graph"


def _check_graph(data: Data) -> None:
    what = _graph_name(data)
    x = data.get("x")
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        shape = None if x is None else tuple(x.shape)
        raise ValueError(f"{what}: data.x must be a 2-D floating point feature tensor "
                         f"[num_nodes, num_features], got {shape}")
    if x.size(0) < 2:
        raise ValueError(f"{what}: link prediction needs at least 2 nodes, got {x.size(0)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what}: data.x contains NaN or infinite values")
    ei = data.get("edge_index")
    if not isinstance(ei, Tensor) or ei.dim() != 2 or ei.size(0) != 2:
        raise ValueError(f"{what}: data.edge_index must have shape [2, num_edges], "
                         f"got {None if ei is None else tuple(ei.shape)}")
    if ei.dtype != torch.long:
        raise ValueError(f"{what}: data.edge_index must be torch.long, got {ei.dtype}")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= x.size(0)):
        raise ValueError(f"{what}: data.edge_index holds node indices in [{int(ei.min())}, "
                         f"{int(ei.max())}] but the graph has {x.size(0)} nodes")


def _finish_graph(data: Data, name: str, metric: str) -> Data:
    num_nodes = int(data.x.size(0)) if data.get("x") is not None else int(data.num_nodes)
    out = Data(x=data.x.to(torch.float32).contiguous(),
               edge_index=data.edge_index.to(torch.long), num_nodes=num_nodes)
    for key in LINK_SPLIT_KEYS:  # an official split (ogbl-*)
        if data.get(key) is not None:
            out[key] = data[key].to(torch.long)
    out.name, out.metric, out.task = name, metric, "link"
    _check_graph(out)
    return out


def load_link_graph(name: str, root: PathLike | None = None, *, force_reload: bool = False,
                    **options: Any) -> Data:
    """The whole graph of ``name`` for link prediction: ``Data(x, edge_index, num_nodes)``.

    ``name`` is a ``task="link"`` dataset (SEAL networks, ``ogbl-*``) or a node dataset, whose
    labels and masks are dropped. ``options`` are the dataset's format options: for the
    featureless SEAL sets ``features`` (``"onehot"``, ``"random"``, ``"constant"``),
    ``feature_dim`` and ``feature_seed``; ``meta_dict`` for ``ogbl-*`` datasets unknown to ogb.
    ``ogbl-*`` graphs also carry OGB's official split (the link-split attributes) and their
    ``edge_index`` is OGB's training graph.
    """
    info = get_dataset_info(name)
    if info.task == "node":
        from .datasets import load_dataset

        data = load_dataset(name, root, force_reload=force_reload, **options)
        return _finish_graph(data, info.name, "rocauc")
    if info.task != "link":
        raise ValueError(f"{info.name!r} is a {info.task!r} dataset, not a graph for link "
                         f"prediction")
    from .datasets import _process  # the shared raw-file/caching path

    fmt = FORMATS[info.format]
    unknown = [k for k in options if k not in fmt.options]
    if unknown:
        raise TypeError(f"unexpected option(s) {', '.join(map(repr, unknown))} for link dataset "
                        f"{info.name!r}; valid options: {', '.join(sorted(fmt.options)) or 'none'}")
    data = _process(info, fmt, resolve_root(root), dict(options), seed=0, split=0,
                    force_reload=force_reload)
    return _finish_graph(data, info.name, str(data.get("metric") or info.metric))


# -- negatives ---------------------------------------------------------------------------------


def _pair_keys(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Sorted unique keys ``min(u, v) * N + max(u, v)`` of the node pairs in ``edge_index``."""
    u, v = edge_index[0].long().cpu(), edge_index[1].long().cpu()
    keep = u != v
    u, v = u[keep], v[keep]
    return torch.unique(torch.minimum(u, v) * num_nodes + torch.maximum(u, v))


def _first_occurrences(keys: Tensor) -> Tensor:
    """``keys`` without repeats, in the order of their first occurrence."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(keys.numel()), "amin")
    return keys[torch.sort(first).values]


def negative_edges(num_nodes: int, num: int, exclude_edge_index: Tensor | None = None, *,
                   generator: torch.Generator | None = None, unique: bool = True,
                   device: torch.device | str | None = None) -> Tensor:
    r"""``num`` random node pairs ``[2, num]`` (``u < v``) that are not in ``exclude_edge_index``.

    Pairs are uniform over the non-edges without self-loops, drawn by rejection with
    ``generator`` (default: torch's global RNG, so ``seed_everything`` fixes them). With
    ``unique=True`` no pair repeats (validation/test negatives); ``unique=False`` is faster and is
    what training needs.
    """
    if num_nodes < 2:
        raise ValueError(f"negative sampling needs num_nodes >= 2, got {num_nodes}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    exclude = (_pair_keys(exclude_edge_index, num_nodes) if exclude_edge_index is not None
               else torch.empty(0, dtype=torch.long))
    available = num_nodes * (num_nodes - 1) // 2 - exclude.numel()
    if num > 0 and available <= 0:
        raise ValueError(f"cannot sample negatives: every pair of the {num_nodes} nodes is an edge")
    if unique and num > available:
        raise ValueError(f"cannot sample {num} distinct negative pairs: only {available} node "
                         f"pairs are not edges; lower neg_ratio")
    out = torch.empty(0, dtype=torch.long)
    density = exclude.numel() / max(1, num_nodes * (num_nodes - 1) // 2)
    for _ in range(10_000):
        need = num - out.numel()
        if need <= 0:
            break
        draw = int(need / max(1e-3, 1.0 - density) * 1.2) + 64
        u = torch.randint(num_nodes, (draw,), generator=generator)
        v = torch.randint(num_nodes, (draw,), generator=generator)
        keep = u != v
        u, v = u[keep], v[keep]
        keys = torch.minimum(u, v) * num_nodes + torch.maximum(u, v)
        if exclude.numel():
            pos = torch.searchsorted(exclude, keys).clamp(max=exclude.numel() - 1)
            keys = keys[exclude[pos] != keys]
        keys = torch.cat([out, keys])
        out = (_first_occurrences(keys) if unique else keys)[:num]
    else:  # pragma: no cover - needs an almost complete graph
        raise RuntimeError(f"negative sampling did not find {num} pairs")
    pairs = torch.stack([out // num_nodes, out % num_nodes])
    return pairs.to(device) if device is not None else pairs


# -- splits ------------------------------------------------------------------------------------


def _check_ratio(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    return float(value)


def _undirected_edges(data: Data, symmetrize: bool) -> Tensor:
    """Each undirected edge once (``u < v``), self-loops dropped; raises if ``data`` is directed."""
    num_nodes = int(data.num_nodes)
    edge_index, _ = remove_self_loops(data.edge_index)
    if not is_undirected(edge_index, num_nodes=num_nodes):
        if not symmetrize:
            raise ValueError(
                f"{_graph_name(data)} is directed (some edge (u, v) has no reverse (v, u)), but "
                f"link prediction here expects an undirected graph: pass symmetrize=True to add "
                f"the missing reverse edges, or apply torch_geometric.utils.to_undirected")
        edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    edge_index = coalesce(edge_index, num_nodes=num_nodes)
    return edge_index[:, edge_index[0] < edge_index[1]]


def random_link_split(data: Data, *, val_ratio: float = 0.05, test_ratio: float = 0.1,
                      neg_ratio: float = 1.0, seed: int = 0, split: int = 0,
                      symmetrize: bool = False) -> Data:
    r"""A seeded train/validation/test split of the undirected edges of ``data``.

    See the module docstring for the layout and the ``RandomLinkSplit`` conventions it follows.

    Args:
        data: a graph with ``x`` and ``edge_index`` listing both directions of every edge.
        val_ratio: fraction of the undirected edges held out for validation.
        test_ratio: fraction held out for testing.
        neg_ratio: negatives per validation / test positive.
        seed, split: which random split (same ``(seed, split)``, same split).
        symmetrize: add missing reverse edges of a directed ``data`` instead of raising.

    Raises:
        ValueError: a directed graph (without ``symmetrize``), a ratio outside ``(0, 1)``, or a
            split that would get no edges (too few edges for the ratios).
    """
    val_ratio, test_ratio = _check_ratio("val_ratio", val_ratio), _check_ratio("test_ratio", test_ratio)
    if val_ratio + test_ratio >= 1.0:
        raise ValueError(f"val_ratio + test_ratio must be < 1 to leave training edges, got "
                         f"{val_ratio} + {test_ratio}")
    if isinstance(neg_ratio, bool) or not isinstance(neg_ratio, (int, float)) or neg_ratio <= 0:
        raise ValueError(f"neg_ratio must be a positive number, got {neg_ratio!r}")
    _check_graph(data)
    num_nodes = int(data.x.size(0))
    edges = _undirected_edges(data, symmetrize)
    num_edges = edges.size(1)
    num_val, num_test = int(val_ratio * num_edges), int(test_ratio * num_edges)
    for stage, count, ratio in (("validation", num_val, val_ratio), ("test", num_test, test_ratio)):
        if count == 0:
            raise ValueError(
                f"the {stage} split has no edges: {_graph_name(data)} has {num_edges} undirected "
                f"edge(s) and int({ratio} * {num_edges}) = 0; use a larger ratio or a larger graph")
    if num_val + num_test >= num_edges:
        raise ValueError(f"the training split has no edges ({num_edges} undirected edges, "
                         f"{num_val} validation + {num_test} test)")
    gen = split_generator(seed, split)
    perm = torch.randperm(num_edges, generator=gen)
    val = edges[:, perm[:num_val]]
    test = edges[:, perm[num_val:num_val + num_test]]
    train = edges[:, perm[num_val + num_test:]]
    num_val_neg, num_test_neg = max(1, round(neg_ratio * num_val)), max(1, round(neg_ratio * num_test))
    neg = negative_edges(num_nodes, num_val_neg + num_test_neg, edges, generator=gen)
    out = Data(x=data.x, num_nodes=num_nodes, edge_index=to_undirected(train, num_nodes=num_nodes),
               train_pos_edge_index=train, val_pos_edge_index=val,
               val_neg_edge_index=neg[:, :num_val_neg], test_pos_edge_index=test,
               test_neg_edge_index=neg[:, num_val_neg:])
    out.name = data.get("name") or "graph"
    out.metric = data.get("metric") or "rocauc"
    out.task = "link"
    return out


def check_link_split(data: Data) -> Data:
    """Check a link split (see the module docstring) and return it unchanged.

    Raises a one-sentence :class:`ValueError` for a missing or empty split, indices out of range,
    or a directed message-passing graph.
    """
    _check_graph(data)
    what, num_nodes = _graph_name(data), int(data.x.size(0))
    for key in LINK_SPLIT_KEYS:
        ei = data.get(key)
        if ei is None:
            raise ValueError(f"{what} is not a link split: data.{key} is missing (build one with "
                             f"graphmoe.data.link.random_link_split)")
        if not isinstance(ei, Tensor) or ei.dim() != 2 or ei.size(0) != 2:
            raise ValueError(f"{what}: data.{key} must have shape [2, num_edges], "
                             f"got {None if not isinstance(ei, Tensor) else tuple(ei.shape)}")
        if ei.size(1) == 0:
            raise ValueError(f"{what}: the split data.{key} has no edges")
        if int(ei.min()) < 0 or int(ei.max()) >= num_nodes:
            raise ValueError(f"{what}: data.{key} holds node indices outside [0, {num_nodes})")
    if data.edge_index.size(1) == 0:
        raise ValueError(f"{what}: the training graph (data.edge_index) has no edges")
    if not is_undirected(data.edge_index, num_nodes=num_nodes):
        raise ValueError(f"{what}: the training graph data.edge_index must be undirected (both "
                         f"directions of every edge); apply torch_geometric.utils.to_undirected")
    return data


def _split_cache_key(graph: Data, options: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(graph.edge_index.cpu().numpy().tobytes())
    h.update(f"{int(graph.num_nodes)}|{sorted(options.items())}|v{SPLIT_VERSION}".encode())
    return "linksplit-" + h.hexdigest()


def load_link_dataset(name: str, root: PathLike | None = None, *, seed: int = 0, split: int = 0,
                      val_ratio: float = 0.05, test_ratio: float = 0.1, neg_ratio: float = 1.0,
                      force_reload: bool = False, **options: Any) -> Data:
    """A link split of dataset ``name`` (:func:`load_link_graph` + :func:`random_link_split`).

    ``ogbl-*`` datasets keep OGB's official split (``seed``, ``split`` and the ratios do not
    apply). Other splits are cached in ``$GRAPHMOE_CACHE``; the node features are not part of
    the cached split, so a ``transform`` applied later never goes stale.
    """
    if not isinstance(split, int) or not isinstance(seed, int):
        raise TypeError(f"split and seed must be integers, got split={split!r}, seed={seed!r}")
    if split < 0:
        raise ValueError(f"split must be a non-negative index, got {split}")
    graph = load_link_graph(name, root, force_reload=force_reload, **options)
    if all(graph.get(key) is not None for key in LINK_SPLIT_KEYS):  # official split
        if split != 0:
            raise ValueError(f"{graph.name!r} has one official split; got split={split}")
        return check_link_split(graph)
    opts = {"val_ratio": val_ratio, "test_ratio": test_ratio, "neg_ratio": neg_ratio,
            "seed": seed, "split": split}
    key = _split_cache_key(graph, opts)
    cached = None if force_reload else load_cached(graph.name, key)
    if cached is not None and all(k in cached for k in (*LINK_SPLIT_KEYS, "edge_index")):
        out = Data(x=graph.x, num_nodes=int(graph.num_nodes),
                   **{k: cached[k] for k in (*LINK_SPLIT_KEYS, "edge_index")})
        out.name, out.metric, out.task = graph.name, graph.metric, "link"
        return check_link_split(out)
    out = random_link_split(graph, **opts)
    save_cached(graph.name, key, {k: out[k] for k in (*LINK_SPLIT_KEYS, "edge_index")})
    return check_link_split(out)


def as_pyg_splits(data: Data) -> tuple[Data, Data, Data]:
    """The split in :class:`~torch_geometric.transforms.RandomLinkSplit`'s layout.

    Returns ``(train_data, val_data, test_data)``, each with ``x``, ``edge_index`` (the training
    graph), ``edge_label_index`` (positives then negatives) and ``edge_label`` (1 / 0). The
    training stage has positives only (draw its negatives per epoch).
    """
    check_link_split(data)

    def stage(pos: Tensor, neg: Tensor | None) -> Data:
        index = pos if neg is None else torch.cat([pos, neg], dim=1)
        label = torch.cat([torch.ones(pos.size(1)), torch.zeros(0 if neg is None else neg.size(1))])
        return Data(x=data.x, edge_index=data.edge_index, num_nodes=int(data.num_nodes),
                    edge_label_index=index, edge_label=label)

    return (stage(data.train_pos_edge_index, None),
            stage(data.val_pos_edge_index, data.val_neg_edge_index),
            stage(data.test_pos_edge_index, data.test_neg_edge_index))
