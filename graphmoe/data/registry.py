"""Name lookup over the dataset table (:data:`graphmoe.data.catalog.CATALOG`).

Names are case-insensitive and ignore punctuation (``"Cora"``, ``"cora"``,
``"chameleon_filtered"`` = ``"chameleon-filtered"``). Any ``ogbn-*`` name that is
not registered is served by the OGB bridge (its meta information comes from ogb
or from a ``meta_dict``).
"""
from __future__ import annotations

import difflib

from .catalog import CATALOG
from .formats import FORMATS
from .info import DatasetInfo, normalize_name

__all__ = ["get_dataset_info", "register_dataset", "registered_datasets"]

_INFOS: dict[str, DatasetInfo] = {}
_KEYS: dict[str, str] = {}


def register_dataset(info: DatasetInfo, *, overwrite: bool = False) -> None:
    """Add ``info`` to the registry (its name and aliases become valid names)."""
    if info.format not in FORMATS:
        raise ValueError(f"DatasetInfo {info.name!r}: unknown format {info.format!r}; "
                         f"known formats: {', '.join(sorted(FORMATS))}")
    clashes = {k for k in info.keys if k in _KEYS and _KEYS[k] != info.name}
    if (clashes or info.name in _INFOS) and not overwrite:
        taken = sorted({_KEYS.get(k, info.name) for k in clashes} | ({info.name} & set(_INFOS)))
        raise ValueError(f"dataset name {info.name!r} (or an alias) is already registered "
                         f"as {taken}; pass overwrite=True to replace it")
    old = _INFOS.pop(info.name, None)
    if old is not None:
        for key in old.keys:
            _KEYS.pop(key, None)
    _INFOS[info.name] = info
    for key in info.keys:
        _KEYS[key] = info.name


def registered_datasets() -> list[DatasetInfo]:
    """All registered datasets, in table order."""
    return list(_INFOS.values())


def _ogb_info(name: str) -> DatasetInfo:
    canonical = name.lower()
    return DatasetInfo(name=canonical, format="ogb_node", folder=canonical.replace("-", "_"),
                       params={"name": canonical}, description="OGB node dataset",
                       source="an OGB-format folder, e.g. written by "
                              "graphmoe.data.write_ogb_node_dataset, or pass meta_dict=...")


def _ogbl_info(name: str) -> DatasetInfo:
    canonical = name.lower()
    return DatasetInfo(name=canonical, format="ogb_link", folder=canonical.replace("-", "_"),
                       task="link", params={"name": canonical}, metric="hits@20",
                       description="OGB link dataset",
                       source="an OGB-format folder, e.g. written by "
                              "graphmoe.data.link.write_ogb_link_dataset, or pass meta_dict=...")


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ``ValueError`` listing close names if unknown."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    key = normalize_name(name)
    if key in _KEYS:
        return _INFOS[_KEYS[key]]
    if name.strip().lower().startswith("ogbn-"):
        return _ogb_info(name.strip())
    if name.strip().lower().startswith("ogbl-"):  # metric: the meta_dict's, at load time
        return _ogbl_info(name.strip())
    close = difflib.get_close_matches(key, list(_KEYS), n=5, cutoff=0.6)
    close += [k for k in _KEYS if len(key) >= 3 and (key in k or k in key) and k not in close]
    names = list(dict.fromkeys(_KEYS[k] for k in close))[:6]
    hint = f"did you mean {', '.join(repr(n) for n in names)}? " if names else ""
    raise ValueError(f"Unknown dataset {name!r}; {hint}Known datasets: "
                     f"{', '.join(sorted(_INFOS))}.")


for _info in CATALOG:
    register_dataset(_info)
