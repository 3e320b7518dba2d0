"""Train/val/test splits: selecting a provided split and drawing seeded random ones.

Random splits are reproducible: split ``k`` of seed ``s`` always draws from a
``torch.Generator`` seeded with a hash of ``(s, k)``, independent of the global
RNG, so ``split=0..9`` give ten different splits and the same ``(seed, split)``
always gives the same one. Nodes with a negative label (unlabelled) are never put
in a split.

Schemes:

* ``"per_class"``: ``train_per_class`` (default 20) training and ``val_per_class``
  (default 30) validation nodes per class, the rest for testing: the protocol of
  Shchur et al. (2018) that PyG's ``RandomNodeSplit`` follows.
* ``"ratio"``: a random permutation of the labelled nodes cut at ``train_ratio``
  (default 0.5) and ``train_ratio + val_ratio`` (default 0.25): LINKX's
  ``rand_train_test_idx``. ``train_ratio=0.6, val_ratio=0.2`` gives 60/20/20.
"""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor

__all__ = ["SPLIT_OPTIONS", "per_class_split", "random_split", "ratio_split", "select_split",
           "split_generator"]

#: Options of :func:`random_split` accepted by ``load_dataset`` (with their defaults).
SPLIT_OPTIONS = {"split_scheme": None, "train_per_class": 20, "val_per_class": 30,
                 "train_ratio": 0.5, "val_ratio": 0.25}

Masks = tuple[Tensor, Tensor, Tensor]


def split_generator(seed: int, split: int) -> torch.Generator:
    """The generator of random split ``split`` for ``seed``."""
    digest = hashlib.sha256(f"graphmoe-split:{int(seed)}:{int(split)}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def _to_masks(num_nodes: int, *parts: Tensor) -> Masks:
    out = []
    for idx in parts:
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[idx] = True
        out.append(mask)
    return tuple(out)  # type: ignore[return-value]


def per_class_split(y: Tensor, train_per_class: int, val_per_class: int,
                    generator: torch.Generator) -> Masks:
    """``train_per_class``/``val_per_class`` random nodes of each class, the rest for test."""
    train, val, test = [], [], []
    for c in torch.unique(y[y >= 0]).tolist():
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        train.append(idx[:train_per_class])
        val.append(idx[train_per_class:train_per_class + val_per_class])
        test.append(idx[train_per_class + val_per_class:])
    return _to_masks(y.numel(), torch.cat(train), torch.cat(val), torch.cat(test))


def ratio_split(y: Tensor, train_ratio: float, val_ratio: float,
                generator: torch.Generator) -> Masks:
    """A random permutation of the labelled nodes cut at the given fractions."""
    if not (0.0 < train_ratio and 0.0 <= val_ratio and train_ratio + val_ratio < 1.0):
        raise ValueError(f"train_ratio and val_ratio must be positive with a sum below 1, "
                         f"got train_ratio={train_ratio}, val_ratio={val_ratio}")
    idx = (y >= 0).nonzero().view(-1)
    idx = idx[torch.randperm(idx.numel(), generator=generator)]
    n_train, n_val = int(train_ratio * idx.numel()), int(val_ratio * idx.numel())
    return _to_masks(y.numel(), idx[:n_train], idx[n_train:n_train + n_val],
                     idx[n_train + n_val:])


def random_split(y: Tensor, scheme: str, *, seed: int = 0, split: int = 0,
                 train_per_class: int = 20, val_per_class: int = 30,
                 train_ratio: float = 0.5, val_ratio: float = 0.25) -> Masks:
    """Seeded random split ``split`` of ``seed`` with ``scheme`` ``"per_class"`` or ``"ratio"``."""
    if split < 0:
        raise ValueError(f"split must be a non-negative integer, got {split}")
    generator = split_generator(seed, split)
    if scheme == "per_class":
        return per_class_split(y, train_per_class, val_per_class, generator)
    if scheme == "ratio":
        return ratio_split(y, train_ratio, val_ratio, generator)
    raise ValueError(f"split_scheme must be 'per_class' or 'ratio', got {scheme!r}")


def select_split(train: Tensor, val: Tensor, test: Tensor, split: int, name: str) -> Masks:
    """Column ``split`` of provided ``[N, S]`` masks (``[N]`` masks are split 0)."""
    num_splits = 1 if train.dim() == 1 else train.size(1)
    if not 0 <= split < num_splits:
        raise ValueError(f"split={split} is out of range: {name!r} provides {num_splits} "
                         f"split(s), numbered 0..{num_splits - 1}")
    if train.dim() == 1:
        return train, val, test
    return train[:, split].clone(), val[:, split].clone(), test[:, split].clone()
