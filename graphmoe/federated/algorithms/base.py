r"""The engine-agnostic federated learning API.

A round, whatever the engine (in-process :func:`~graphmoe.federated.run_simulation`, Flower):

1. each participating client ``i`` receives ``incoming_i = server.incoming(i)`` (``None``
   before the first aggregation) and runs ``update_i = algorithm.fit(state_i, client_i,
   incoming_i, rnd)``; ``update_i.weights`` never holds a key of
   ``algorithm.local_keys(model)``;
2. the server combines them: ``server.aggregate({i: update_i, ...}, rnd)`` returns what each
   of those clients receives next round (also available later as ``server.incoming(i)``);
3. every client reports ``algorithm.evaluate(state_i, client_i)`` (local validation and test
   accuracy of its own, possibly personalised, model on its own nodes).

Client and server state round-trip through ``state_dict()``/``load_state_dict()``, so an
engine can checkpoint and resume a run or keep clients in other processes.
"""
from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module
from torch_geometric.data import Data

from graphmoe.federated.models import MaskedGCN

SPARSE_DENSITY = 0.1

__all__ = ["ClientUpdate", "ClientState", "FederatedAlgorithm", "FederatedServer",
           "weighted_average"]


@dataclass
class ClientUpdate:
    """What a client sends to the server after local training.

    Attributes:
        weights: the shared (non-local) entries of the model's state dict, detached copies.
        num_examples: the client's number of training nodes (FedAvg weight).
        embedding: FED-PUB's functional embedding of the model (``None`` for the others).
        metrics: training metrics of the round (``train_loss``, ...).
    """

    weights: dict[str, Tensor]
    num_examples: int
    embedding: Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def is_finite(self) -> bool:
        """``True`` when every weight (and the embedding) is finite."""
        tensors = [*self.weights.values(), *([self.embedding] if self.embedding is not None else [])]
        return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


@dataclass
class ClientState:
    """Everything a client keeps between rounds: its model (with its local parameters, e.g.
    FED-PUB's masks), its optimiser (Adam's moments persist across rounds, as in the reference
    implementation) and algorithm-specific tensors in ``extra``."""

    model: Module
    optimizer: torch.optim.Optimizer
    extra: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """References to the live tensors; ``copy.deepcopy`` it to keep a snapshot."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "extra": dict(self.extra)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.extra = dict(state.get("extra", {}))

    def snapshot(self) -> dict[str, Any]:
        """A copy of :meth:`state_dict` with every tensor cloned (to roll back a failed round)."""
        return _clone(self.state_dict())


def _clone(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return type(obj)((k, _clone(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return copy.copy(obj)


def weighted_average(weights: list[Mapping[str, Tensor]], coef: Tensor) -> dict[str, Tensor]:
    r""":math:`\sum_j c_j \theta_j` per key; ``coef`` of shape ``[n]``, or ``[m, n]`` for ``m``
    different combinations at once (returned with a leading dimension ``m``)."""
    if not weights:
        return {}
    out = {}
    for key in weights[0]:
        stacked = torch.stack([w[key] for w in weights])
        if not stacked.is_floating_point():  # counters and the like: take the first client's
            out[key] = stacked[0] if coef.dim() == 1 else stacked[:1].expand(coef.size(0), *stacked.shape[1:])
            continue
        combined = coef.to(stacked.dtype) @ stacked.reshape(len(weights), -1)
        shape = stacked.shape[1:] if coef.dim() == 1 else (coef.size(0), *stacked.shape[1:])
        out[key] = combined.reshape(shape)
    return out


class FederatedServer:
    """Server side of an algorithm: :meth:`aggregate` turns the round's client updates into
    what each of those clients receives next round; :meth:`incoming` is what a client gets at
    the start of a round (its latest personalised model, else the latest global one, else
    ``None``)."""

    def __init__(self) -> None:
        self.global_weights: dict[str, Tensor] | None = None
        self.personal: dict[int, dict[str, Tensor]] = {}

    def aggregate(self, updates: Mapping[int, ClientUpdate], rnd: int) -> dict[int, dict[str, Tensor]]:
        raise NotImplementedError

    def incoming(self, client_id: int) -> dict[str, Tensor] | None:
        return self.personal.get(client_id, self.global_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"global": self.global_weights, "personal": dict(self.personal)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.global_weights = state.get("global")
        self.personal = {int(k): v for k, v in state.get("personal", {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FederatedAlgorithm:
    r"""Client-side training of a federated algorithm, and the factory of its server.

    Clients train full-batch on their own subgraph with Adam (``lr``, ``weight_decay``) for
    ``local_epochs`` steps per round and minimise the cross-entropy on their training nodes
    plus :meth:`penalty`. Defaults are those of the FED-PUB reference code on Cora
    (2-layer GCN, hidden 128, dropout 0.5, Adam lr 0.01, weight decay 1e-6, 1 local epoch).

    Args:
        hidden_channels (int): Hidden size. (default: ``128``)
        num_layers (int): GCN layers. (default: ``2``)
        dropout (float): Dropout. (default: ``0.5``)
        lr (float): Adam learning rate. (default: ``0.01``)
        weight_decay (float): Adam weight decay. (default: ``1e-6``)
        local_epochs (int): Local steps per round. (default: ``1``)
        backbone (str): ``"gcn"`` (:class:`~graphmoe.federated.models.MaskedGCN` without
            masks) or a :func:`graphmoe.models.build_model` name. (default: ``"gcn"``)
    """

    name: ClassVar[str] = "base"

    def __init__(self, hidden_channels: int = 128, num_layers: int = 2, dropout: float = 0.5,
                 lr: float = 0.01, weight_decay: float = 1e-6, local_epochs: int = 1,
                 backbone: str = "gcn") -> None:
        if lr <= 0:
            raise ValueError(f"'lr' must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"'weight_decay' must be >= 0, got {weight_decay}")
        if int(local_epochs) < 1:
            raise ValueError(f"'local_epochs' must be >= 1, got {local_epochs}")
        self.hidden_channels = int(hidden_channels)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.local_epochs = int(local_epochs)
        self.backbone = backbone

    # -- options ---------------------------------------------------------------------------

    @classmethod
    def option_names(cls) -> list[str]:
        """Keyword options of the constructor (those of the base class included)."""
        names: list[str] = []
        for klass in cls.__mro__:
            if klass is object or "__init__" not in vars(klass):
                continue
            for name, param in inspect.signature(klass.__init__).parameters.items():
                if name != "self" and param.kind is param.POSITIONAL_OR_KEYWORD and name not in names:
                    names.append(name)
        return names

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    # -- model and client state ------------------------------------------------------------

    def build_model(self, num_features: int, num_classes: int) -> Module:
        if self.backbone == "gcn":
            return MaskedGCN(num_features, self.hidden_channels, num_classes,
                             num_layers=self.num_layers, dropout=self.dropout, masked=False)
        from graphmoe.models import build_model

        return build_model(self.backbone, in_channels=num_features,
                           hidden_channels=self.hidden_channels, num_layers=self.num_layers,
                           out_channels=num_classes, dropout=self.dropout)

    def local_keys(self, model: Module) -> set[str]:
        """State-dict keys that never leave the client (none by default)."""
        return set()

    def init_client(self, client: Data, model: Module) -> ClientState:
        model = model.to(client.x.device)
        return ClientState(model, self.make_optimizer(model))

    def make_optimizer(self, model: Module) -> torch.optim.Optimizer:
        """Adam; the fused kernel where PyTorch has one (several times faster on CPU)."""
        params = list(model.parameters())
        try:
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, fused=True)
        except (RuntimeError, ValueError, TypeError):
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    def shared_weights(self, model: Module) -> dict[str, Tensor]:
        """Detached copies of the state-dict entries that are not local."""
        local = self.local_keys(model)
        return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in local}

    def load_incoming(self, state: ClientState, incoming: Mapping[str, Tensor]) -> None:
        """Copy ``incoming`` into the model in place (the optimiser keeps its parameters)."""
        local = self.local_keys(state.model)
        target = state.model.state_dict()
        for key, value in incoming.items():
            if key in local:
                raise ValueError(f"incoming weights hold the local key {key!r}")
            if key not in target:
                raise ValueError(f"incoming weights hold {key!r}, which the model does not have")
            with torch.no_grad():
                target[key].copy_(value)

    # -- one round -------------------------------------------------------------------------

    def features(self, client: Data) -> Tensor:
        """``client.x``, as a sparse CSR matrix when it is wide and mostly zeros (bag-of-words
        features) and the model is a :class:`~graphmoe.federated.models.MaskedGCN`: the first
        layer's product then costs ``O(nnz)`` instead of ``O(n * F)``. Cached per tensor."""
        x = client.x
        if self.backbone != "gcn" or x.layout != torch.strided or x.dim() != 2 or x.size(1) < 64:
            return x
        cache = self.__dict__.setdefault("_features", {})
        hit = cache.get(id(x))
        if hit is not None and hit[0] is x:
            return hit[1]
        sparse = x
        if float((x != 0).float().mean()) < SPARSE_DENSITY:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                sparse = x.to_sparse_csr()
        if len(cache) >= 4096:
            cache.clear()
        cache[id(x)] = (x, sparse)
        return sparse

    def penalty(self, state: ClientState, incoming: Mapping[str, Tensor] | None) -> Tensor | None:
        """Extra loss term added to the cross-entropy (none by default)."""
        return None

    def fit(self, state: ClientState, client: Data, incoming: Mapping[str, Tensor] | None,
            rnd: int) -> ClientUpdate:
        if incoming is not None:
            self.load_incoming(state, incoming)
            incoming = {k: v.detach() for k, v in incoming.items()}
        model, optimizer = state.model, state.optimizer
        train = client.train_mask
        y = client.y[train]
        x = self.features(client)
        model.train()
        loss = torch.zeros(())
        for _ in range(self.local_epochs if bool(train.any()) else 0):  # no labels: no step
            optimizer.zero_grad(set_to_none=True)
            out = model(x, client.edge_index)
            loss = F.cross_entropy(out[train], y)
            extra = self.penalty(state, incoming)
            total = loss if extra is None else loss + extra
            total.backward()
            optimizer.step()
        return ClientUpdate(self.shared_weights(model), int(train.sum()),
                            self.embedding(state), {"train_loss": float(loss.detach())})

    def embedding(self, state: ClientState) -> Tensor | None:
        return None

    @torch.no_grad()
    def evaluate(self, state: ClientState, client: Data) -> dict[str, float]:
        """Local accuracy and cross-entropy of the client's model on its validation and test
        nodes (``nan`` where the client has none)."""
        state.model.eval()
        out = state.model(self.features(client), client.edge_index)
        metrics = {}
        for split in ("val", "test"):
            mask = client[f"{split}_mask"]
            if not bool(mask.any()):
                metrics[f"{split}_acc"] = metrics[f"{split}_loss"] = float("nan")
                continue
            logits, y = out[mask], client.y[mask]
            metrics[f"{split}_acc"] = float((logits.argmax(-1) == y).float().mean())
            metrics[f"{split}_loss"] = float(F.cross_entropy(logits, y))
        return metrics

    def server(self) -> FederatedServer:
        raise NotImplementedError
