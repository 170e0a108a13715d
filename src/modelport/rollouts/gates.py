"""Gates: the thresholds a candidate must hold on every rolling window, and their evaluation.

    gates = Gates(max_error_rate=0.01, max_p99_ratio=1.5, min_agreement=0.98)
    results = evaluate(gates, tally)         # one GateResult per gate, ok True/False/None
    [r for r in results if r.ok is False]    # the breaches

A gate with too few samples in the window says ``ok=None`` (unknown): it neither breaches nor
passes. Errors and output classes count every candidate run, shadow runs included; latency
compares only requests the candidate answered (a canary) with stable's, since a shadow waits its
turn behind the requests it copies and its time says little about the request path. Latencies
under ``latency_floor_ms`` count as the floor, so microsecond noise on a fast model is not a p99
breach.

``max_p99_ratio`` bounds the candidate's median against stable's as well as its p99: on a busy
host the p99 of a short window is set by the moments the server was not scheduled (10-40 ms,
for both versions alike), which hides a candidate several times slower on every request; the
median is not moved by those moments, and a median over the ratio is a slower candidate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from modelport.errors import InvalidInput
from modelport.rollouts.tally import RoleTally, Tally


@dataclass(frozen=True)
class Gates:
    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    min_agreement: float = 0.98
    max_shift: float = 0.3  # total variation distance between the versions' output classes
    window: float = 1.0  # seconds per window
    span: int = 5  # windows per rolling evaluation
    consecutive: int = 3  # breached evaluations in a row that roll back
    min_window_samples: int = 20  # per version, for a gate to count in a rolling window
    latency_floor_ms: float = 1.0

    def __post_init__(self) -> None:
        _check(0 <= self.max_error_rate < 1, "max error rate", self.max_error_rate,
               "in [0, 1): 1 or more could never roll back")  # fmt: skip
        _check(self.max_p99_ratio >= 1, "max p99 ratio", self.max_p99_ratio,
               ">= 1: under 1 a candidate as fast as stable would be rolled back")  # fmt: skip
        _check(0 < self.min_agreement <= 1, "min agreement", self.min_agreement,
               "in (0, 1]: agreement is a fraction of rows")  # fmt: skip
        _check(0 < self.max_shift <= 1, "max shift", self.max_shift, "in (0, 1]")
        _check(self.window > 0, "window", self.window, "more than zero seconds")
        _check(self.latency_floor_ms >= 0, "latency floor", self.latency_floor_ms, ">= 0 ms")
        for name in ("span", "consecutive", "min_window_samples"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and value >= 1,
                name.replace("_", " "),
                value,
                "an integer >= 1",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gates:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _check(ok: bool, what: str, value: Any, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        raise InvalidInput(f"{what} must be {rule}; got {value!r}")


@dataclass(frozen=True)
class GateResult:
    gate: str
    value: float | None
    threshold: float
    ok: bool | None  # None: too few samples to tell
    samples: int
    scope: str = "rolling"  # or "step": taken over the step so far (decide.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(gates: Gates, tally: Tally) -> list[GateResult]:
    stable, answered, runs = tally.role("stable"), tally.role("candidate"), tally.candidate()
    need = gates.min_window_samples
    results = [_error_rate(gates, runs, need), *_latency(gates, stable, answered, need)]
    if tally.compared:
        value = tally.agreed / tally.compared
        ok = None if tally.compared < need else value >= gates.min_agreement
        results.append(GateResult("agreement", value, gates.min_agreement, ok, tally.compared))
    results.append(_shift(gates, stable, runs, 5 * need))
    return results


def _error_rate(gates: Gates, candidate: RoleTally, need: int) -> GateResult:
    n = candidate.n
    value = candidate.errors / n if n else None
    ok = None if n < need or value is None else value <= gates.max_error_rate
    return GateResult("error_rate", value, gates.max_error_rate, ok, n)


def _latency(gates: Gates, stable: RoleTally, candidate: RoleTally,
             need: int) -> list[GateResult]:  # fmt: skip
    """The candidate's p99 and median over stable's, each against ``max_p99_ratio``."""
    floor = gates.latency_floor_ms / 1000
    samples = max(0, min(stable.n - stable.errors, candidate.n - candidate.errors))
    results = []
    for gate, q in (("p99_ratio", 0.99), ("p50_ratio", 0.5)):
        s, c = stable.quantile(q), candidate.quantile(q)
        if s is None or c is None or samples < need:
            results.append(GateResult(gate, None, gates.max_p99_ratio, None, samples))
            continue
        value = max(c, floor) / max(s, floor)
        results.append(GateResult(gate, value, gates.max_p99_ratio,
                                  value <= gates.max_p99_ratio, samples))  # fmt: skip
    return results


def _shift(gates: Gates, stable: RoleTally, candidate: RoleTally, need: int) -> GateResult:
    ns, nc = sum(stable.classes.values()), sum(candidate.classes.values())
    if min(ns, nc) < need:
        return GateResult("shift", None, gates.max_shift, None, min(ns, nc))
    labels = set(stable.classes) | set(candidate.classes)
    value = 0.5 * sum(
        abs(stable.classes.get(k, 0) / ns - candidate.classes.get(k, 0) / nc) for k in labels
    )
    return GateResult("shift", value, gates.max_shift, value <= gates.max_shift, min(ns, nc))
