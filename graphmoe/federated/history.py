"""Per-round results of a federated run, shared by every engine."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RoundRecord", "FederatedHistory"]

METRICS = ("val_acc", "val_loss", "test_acc", "test_loss")


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


@dataclass
class RoundRecord:
    """One round: each client's local metrics after the round's training (``clients[i]`` has
    ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss``), the clients that trained, those
    left out of the aggregation with the reason, and the round's wall time."""

    round: int
    clients: dict[int, dict[str, float]]
    participants: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    wall_time: float = 0.0

    def mean(self, metric: str) -> float:
        """Unweighted mean over clients (clients without such nodes are skipped)."""
        return _mean([m[metric] for m in self.clients.values()])

    def means(self) -> dict[str, float]:
        return {f"mean_{m}": self.mean(m) for m in METRICS}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clients"] = {str(k): v for k, v in self.clients.items()}
        d["failed"] = {str(k): v for k, v in self.failed.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoundRecord:
        return cls(round=int(d["round"]),
                   clients={int(k): dict(v) for k, v in d["clients"].items()},
                   participants=[int(i) for i in d.get("participants", [])],
                   failed={int(k): str(v) for k, v in d.get("failed", {}).items()},
                   wall_time=float(d.get("wall_time", 0.0)))


@dataclass
class FederatedHistory:
    """The rounds of one algorithm's run, and the headline metric: the mean local test
    accuracy over clients at the round with the best mean local validation accuracy (the
    earliest such round on ties)."""

    algorithm: str
    num_clients: int
    rounds: list[RoundRecord] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    wall_time: float = 0.0

    def curve(self, metric: str = "test_acc") -> list[float]:
        return [r.mean(metric) for r in self.rounds]

    def best_round(self) -> RoundRecord:
        if not self.rounds:
            raise ValueError("the history has no rounds")
        best, best_val = self.rounds[0], -math.inf
        for record in self.rounds:
            val = record.mean("val_acc")
            if not math.isnan(val) and val > best_val:
                best, best_val = record, val
        return best

    def result(self) -> dict[str, Any]:
        """The summary of the run (what ``summary.json`` holds per algorithm)."""
        best = self.best_round()
        last = self.rounds[-1]
        return {
            "test_acc": best.mean("test_acc"),
            "val_acc": best.mean("val_acc"),
            "best_round": best.round,
            "final_test_acc": last.mean("test_acc"),
            "rounds": last.round,
            "failed_updates": sum(len(r.failed) for r in self.rounds),
            "wall_time_s": self.wall_time,
        }

    def metrics(self) -> list[dict[int, dict[str, float]]]:
        """Per-round per-client metrics (what must match between two equivalent runs)."""
        return [r.clients for r in self.rounds]

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "num_clients": self.num_clients,
                "options": self.options, "seed": self.seed, "wall_time": self.wall_time,
                "rounds": [r.to_dict() for r in self.rounds]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FederatedHistory:
        return cls(algorithm=d["algorithm"], num_clients=int(d["num_clients"]),
                   rounds=[RoundRecord.from_dict(r) for r in d["rounds"]],
                   options=dict(d.get("options", {})), seed=int(d.get("seed", 0)),
                   wall_time=float(d.get("wall_time", 0.0)))
