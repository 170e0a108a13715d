"""What a replica saw of a rollout in one window: counts that add up across windows and replicas.

    tally = Tally()
    tally.observe("stable", 0.002, ok=True, classes=["3"])    # or "candidate", "shadow"
    tally.compared_rows(agreed=1, rows=1, score=1.0)      # one shadow comparison
    merged = Tally.merged([tally, Tally.from_dict(row)])  # a rolling window over replicas
    merged.role("candidate").p99()

Everything is a count (requests, errors, latency buckets, output classes), so a rolling window is
the sum of its windows and replicas, and the catalogue stores each as plain JSON.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

ROLES = ("stable", "candidate", "shadow")  # shadow: the candidate's runs off the request path
_FIRST, _GROWTH, _BUCKETS = 25e-6, 1.2, 90  # latency buckets: 25 us ... about 300 s
BOUNDS = tuple(_FIRST * _GROWTH**i for i in range(_BUCKETS))
MAX_CLASSES = 64  # distinct output classes kept per role; the rest count as "other"


def bucket_of(seconds: float) -> int:
    """The index of the smallest bound >= ``seconds`` (one bisection; the last past them all)."""
    return min(_BUCKETS - 1, bisect_left(BOUNDS, seconds))


class RoleTally:
    """Requests one version answered (or ran as a shadow) in a window."""

    __slots__ = ("n", "errors", "latency", "classes")

    def __init__(self) -> None:
        self.n = 0
        self.errors = 0
        self.latency: dict[int, int] = {}
        self.classes: dict[str, int] = {}

    def observe(self, seconds: float, ok: bool, classes: Iterable[str] = ()) -> None:
        self.n += 1
        if not ok:
            self.errors += 1
            return
        index = bucket_of(seconds)
        self.latency[index] = self.latency.get(index, 0) + 1
        for label in classes:
            self.count(label)

    def count(self, label: str, n: int = 1) -> None:
        """``n`` more rows of an output class (past MAX_CLASSES labels, as "other")."""
        if label not in self.classes and len(self.classes) >= MAX_CLASSES:
            label = "other"
        self.classes[label] = self.classes.get(label, 0) + n

    def p99(self) -> float | None:
        """The 99th percentile of the successful requests' latency (a bucket's upper bound)."""
        return self.quantile(0.99)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1) of the successful requests' latency (a bucket's upper
        bound), None when none succeeded."""
        total = sum(self.latency.values())
        if not total:
            return None
        running = 0
        for index in sorted(self.latency):
            running += self.latency[index]
            if running >= q * total:
                return BOUNDS[index]
        return BOUNDS[-1]

    def add(self, other: RoleTally) -> None:
        self.n += other.n
        self.errors += other.errors
        for k, v in other.latency.items():
            self.latency[k] = self.latency.get(k, 0) + v
        for k, v in other.classes.items():
            self.classes[k] = self.classes.get(k, 0) + v

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "errors": self.errors, "classes": self.classes,
                "latency": {str(k): v for k, v in self.latency.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoleTally:
        role = cls()
        role.n, role.errors = int(data["n"]), int(data["errors"])
        role.latency = {int(k): int(v) for k, v in data["latency"].items()}
        role.classes = {str(k): int(v) for k, v in data["classes"].items()}
        return role


class Tally:
    """One window: both versions' requests, and the shadow comparisons."""

    __slots__ = ("roles", "compared", "agreed", "score", "dropped")

    def __init__(self) -> None:
        self.roles = {role: RoleTally() for role in ROLES}
        self.compared = 0  # rows compared between the stable reply and the shadow's
        self.agreed = 0
        self.score = 0.0  # sum of the per-row comparison score (agreement, max-abs or cosine)
        self.dropped = 0  # shadow copies the full queue could not take

    def role(self, name: str) -> RoleTally:
        return self.roles[name]

    def candidate(self) -> RoleTally:
        """The candidate's runs, answered (canary) and shadowed, together."""
        both = RoleTally()
        both.add(self.roles["candidate"])
        both.add(self.roles["shadow"])
        return both

    def observe(self, role: str, seconds: float, ok: bool, classes: Iterable[str] = ()) -> None:
        self.roles[role].observe(seconds, ok, classes)

    def compared_rows(self, agreed: int, rows: int, score: float) -> None:
        self.compared += rows
        self.agreed += agreed
        self.score += score

    @property
    def empty(self) -> bool:
        return not (self.compared or self.dropped or any(r.n for r in self.roles.values()))

    def add(self, other: Tally) -> None:
        for role in ROLES:
            self.roles[role].add(other.roles[role])
        self.compared += other.compared
        self.agreed += other.agreed
        self.score += other.score
        self.dropped += other.dropped

    @classmethod
    def merged(cls, tallies: Iterable[Tally]) -> Tally:
        total = cls()
        for tally in tallies:
            total.add(tally)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            **{role: self.roles[role].to_dict() for role in ROLES},
            "compared": self.compared, "agreed": self.agreed, "score": self.score,
            "dropped": self.dropped,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        tally = cls()
        tally.roles = {role: RoleTally.from_dict(data[role]) if role in data else RoleTally()
                       for role in ROLES}  # fmt: skip
        tally.compared, tally.agreed = int(data["compared"]), int(data["agreed"])
        tally.score, tally.dropped = float(data["score"]), int(data["dropped"])
        return tally
