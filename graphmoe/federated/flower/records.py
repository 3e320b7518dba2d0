"""Conversions between graphmoe's federated objects and Flower records.

* shared weights / embeddings <-> :class:`~flwr.app.ArrayRecord`;
* a :class:`~graphmoe.federated.algorithms.ClientUpdate` <-> the ``RecordDict`` of a train
  reply;
* a nested ``ClientState.state_dict()`` (model, optimizer moments, FED-PUB masks, extras) <->
  an ``ArrayRecord`` of its tensors plus a ``ConfigRecord`` holding the JSON skeleton, which is
  how a client keeps its state in ``context.state`` between rounds.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from torch import Tensor

from graphmoe.federated.algorithms import ClientUpdate

__all__ = ["to_arrays", "from_arrays", "update_to_record", "record_to_update",
           "save_state", "load_state", "ARRAYS", "CONFIG", "EMBEDDING", "METRICS",
           "NUM_EXAMPLES"]

ARRAYS = "arrays"
CONFIG = "config"
EMBEDDING = "embedding"
METRICS = "metrics"
NUM_EXAMPLES = "num-examples"
_STATE_ARRAYS = "graphmoe.state.arrays"
_STATE_META = "graphmoe.state.meta"


def to_arrays(tensors: Mapping[str, Tensor]) -> ArrayRecord:
    """An :class:`ArrayRecord` of detached CPU copies of ``tensors``."""
    return ArrayRecord({k: v.detach().cpu() for k, v in tensors.items()})


def from_arrays(record: ArrayRecord) -> dict[str, Tensor]:
    """The tensors of ``record`` (writable, owned copies)."""
    return {k: v.clone() for k, v in record.to_torch_state_dict().items()}


def update_to_record(update: ClientUpdate) -> RecordDict:
    """The content of a train reply: shared weights, embedding (if any) and metrics."""
    content = RecordDict({ARRAYS: to_arrays(update.weights)})
    if update.embedding is not None:
        content[EMBEDDING] = to_arrays({EMBEDDING: update.embedding})
    metrics = {k: float(v) for k, v in update.metrics.items()}
    content[METRICS] = MetricRecord({NUM_EXAMPLES: int(update.num_examples), **metrics})
    return content


def record_to_update(content: RecordDict) -> ClientUpdate:
    """The :class:`ClientUpdate` that :func:`update_to_record` packed."""
    metrics = dict(content[METRICS])
    num_examples = int(metrics.pop(NUM_EXAMPLES))
    embedding = None
    if EMBEDDING in content.array_records:
        embedding = from_arrays(content[EMBEDDING])[EMBEDDING]
    return ClientUpdate(from_arrays(content[ARRAYS]), num_examples, embedding,
                        {k: float(v) for k, v in metrics.items()})


def _pack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """JSON skeleton of ``obj``; tensors go to ``tensors`` and leave ``{"t": key}``."""
    if isinstance(obj, Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"t": key}
    if isinstance(obj, Mapping):  # keys keep their type (the optimizer's are ints)
        return {"d": [[k, _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"l" if isinstance(obj, list) else "u": [_pack(v, tensors) for v in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    raise TypeError(f"cannot keep a {type(obj).__name__} in a Flower context "
                    f"(client state must hold tensors, containers and scalars)")


def _unpack(skeleton: Any, tensors: Mapping[str, Tensor]) -> Any:
    (tag, value), = skeleton.items()
    if tag == "t":
        return tensors[value].clone()
    if tag == "d":
        return {k: _unpack(v, tensors) for k, v in value}
    if tag in ("l", "u"):
        items = [_unpack(v, tensors) for v in value]
        return items if tag == "l" else tuple(items)
    return value


def save_state(state: RecordDict, client_state: Mapping[str, Any], rnd: int) -> None:
    """Store a ``ClientState.state_dict()`` in a Flower ``context.state``."""
    tensors: dict[str, Tensor] = {}
    skeleton = _pack(client_state, tensors)
    state[_STATE_ARRAYS] = to_arrays(tensors)
    state[_STATE_META] = ConfigRecord({"skeleton": json.dumps(skeleton), "round": int(rnd)})


def load_state(state: RecordDict) -> dict[str, Any] | None:
    """The ``ClientState.state_dict()`` that :func:`save_state` stored (``None`` if none)."""
    if _STATE_META not in state.config_records:
        return None
    skeleton = json.loads(str(state[_STATE_META]["skeleton"]))
    return _unpack(skeleton, state[_STATE_ARRAYS].to_torch_state_dict())
