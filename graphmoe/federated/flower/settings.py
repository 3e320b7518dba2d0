"""The run configuration shared by the Flower ``ServerApp`` and ``ClientApp``.

Flower hands both apps a flat ``context.run_config`` (``[tool.flwr.app.config]`` of the Flower
app's ``pyproject.toml``, with ``flwr run --run-config`` overrides). :class:`FlowerSettings`
reads and writes that mapping; nested tables arrive flattened with dots, so the algorithm's
options are the ``options.*`` keys:

.. code-block:: toml

    [tool.flwr.app.config]
    dataset = "cora"
    mode = "disjoint"
    num-clients = 10
    algorithm = "fedpub"
    rounds = 100
    seed = 0
    options.tau = 3.0
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from graphmoe.federated.algorithms import FederatedAlgorithm, build_algorithm
from graphmoe.federated.simulation import FAULTS

__all__ = ["FlowerSettings", "parse_faults"]

_SCALARS = (bool, int, float, str)


def parse_faults(text: str) -> dict[tuple[int, int], str]:
    """``"2:1:raise,3:0:nan"`` -> ``{(2, 1): "raise", (3, 0): "nan"}`` (round, client, kind)."""
    faults = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            rnd, cid, kind = item.split(":")
            faults[(int(rnd), int(cid))] = kind
        except ValueError as err:
            raise ValueError(f"'faults' entries must look like 'round:client:kind', "
                             f"got {item!r}") from err
        if kind not in FAULTS:
            raise ValueError(f"fault kind must be one of {FAULTS}, got {kind!r}")
    return faults


@dataclass
class FlowerSettings:
    """Everything a Flower run of one algorithm needs, as plain values.

    Attributes:
        dataset: A :func:`graphmoe.data.load_dataset` name; each client rebuilds its partition
            with :func:`~graphmoe.federated.load_federated` (``""``: the simulation engine
            ships the client graphs to the ClientApp instead).
        mode, num_clients, partition_seed: The partition (``load_federated`` arguments).
        data_root: Data root of the clients (``""``: a SuperNode's ``--node-config
            data-root=...``, else ``$GRAPHMOE_DATA``, else ``./datasets``).
        algorithm, options: :func:`~graphmoe.federated.algorithms.build_algorithm` arguments.
        rounds, local_epochs, fraction, seed: As in
            :func:`~graphmoe.federated.simulation.run_simulation` (``local_epochs`` ``0``: the
            algorithm's own).
        faults: Injected failures ``{(round, client): "raise" | "nan"}`` (tests).
        out_dir: Where the ``ServerApp`` of a deployment writes ``history.json``,
            ``rounds.csv``, ``summary.json`` and ``accuracy.png`` (``""``: nowhere).
        timeout: Seconds the server waits for the replies of one round.
    """

    dataset: str = ""
    mode: str = "disjoint"
    num_clients: int = 10
    partition_seed: int = 1234
    data_root: str = ""
    algorithm: str = "fedpub"
    options: dict[str, Any] = field(default_factory=dict)
    rounds: int = 100
    local_epochs: int = 0
    fraction: float = 1.0
    seed: int = 0
    faults: dict[tuple[int, int], str] = field(default_factory=dict)
    out_dir: str = ""
    timeout: float = 3600.0

    def build_algorithm(self) -> FederatedAlgorithm:
        """A fresh instance of the algorithm with its options (and ``local_epochs``)."""
        algorithm = build_algorithm(self.algorithm, **self.options)
        if self.local_epochs:
            algorithm.local_epochs = int(self.local_epochs)
        return algorithm

    def key(self) -> str:
        """A stable string naming these settings (the key of per-process caches)."""
        return json.dumps({**asdict(self), "faults": sorted(map(str, self.faults.items()))},
                          sort_keys=True, default=str)

    def to_run_config(self) -> dict[str, bool | int | float | str]:
        """The flat Flower run config (``num_clients`` -> ``num-clients``, ``options.tau``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "options":
                out.update({f"options.{k}": v for k, v in value.items() if isinstance(v, _SCALARS)})
            elif f.name == "faults":
                out["faults"] = ",".join(f"{r}:{c}:{k}" for (r, c), k in sorted(value.items()))
            else:
                out[f.name.replace("_", "-")] = value
        return out

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any],
                        defaults: FlowerSettings | None = None) -> FlowerSettings:
        """Settings from a flat run config; keys it lacks keep the values of ``defaults``.

        Raises:
            ValueError: for a key that is not a setting (the message lists the valid ones).
        """
        values = asdict(defaults) if defaults is not None else {}
        values["options"] = dict(values.get("options", {}))
        names = {f.name.replace("_", "-"): f for f in fields(cls)}
        for key, value in config.items():
            if key.startswith("options."):
                values["options"][key[len("options."):]] = value
                continue
            if key not in names:
                raise ValueError(f"unknown run-config key {key!r}; valid keys: "
                                 f"{', '.join(names)}, options.<name>")
            name = names[key].name
            values[name] = parse_faults(value) if name == "faults" and isinstance(value, str) \
                else value
        settings = cls(**values)
        settings._coerce()
        return settings

    def _coerce(self) -> None:
        for name, kind in (("num_clients", int), ("partition_seed", int), ("rounds", int),
                           ("local_epochs", int), ("seed", int), ("fraction", float),
                           ("timeout", float)):
            setattr(self, name, kind(getattr(self, name)))
        if self.num_clients < 1 or self.rounds < 1 or self.local_epochs < 0:
            raise ValueError(f"'num-clients' and 'rounds' must be >= 1 and 'local-epochs' >= 0, "
                             f"got {self.num_clients}, {self.rounds} and {self.local_epochs}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"'fraction' must be in (0, 1], got {self.fraction}")
