"""What the live pages remember between two looks: bounded rings of samples, taken when read.

    ring = ring_of(serving)            # one per ServingApp, made on first use
    ring.sample()                      # a metrics snapshot; at most one per EVERY seconds
    ring.series()                      # per version: requests/s, error rate, latency quantiles...
    ring.drift()                       # drift scores per version and feature, over time

Nothing runs in the background and nothing is added to the request path: a page (or its JSON
API) samples when it is read, and the browser reads every couple of seconds while a page is
open. So the history covers the time someone watched, at most ``KEEP`` samples (and ``KEEP``
drift scorings) back; figures between two samples come from the difference of the server's own
cumulative counters (``Metrics.snapshot``), latency quantiles from its histogram buckets as
Prometheus' ``histogram_quantile`` computes them.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from typing import Any

from modelport.monitoring.metrics import LATENCY_BUCKETS

KEEP = 300  # samples kept: ten minutes at one every two seconds
EVERY = 1.0  # seconds: a closer read reuses the last sample
QUANTILES = (0.5, 0.9, 0.99)

_RINGS: weakref.WeakKeyDictionary[Any, Ring] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def ring_of(serving: Any) -> Ring:
    with _LOCK:
        ring = _RINGS.get(serving)
        if ring is None:
            ring = _RINGS[serving] = Ring(serving)
        return ring


def quantile(q: float, counts: list[int], bounds: tuple[float, ...] = LATENCY_BUCKETS) -> float:
    """The ``q`` quantile of bucket ``counts`` (the last one past the top bound), interpolated
    linearly inside its bucket; the top bound when it falls past it; NaN without data."""
    total = sum(counts)
    if total <= 0:
        return float("nan")
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / n
        seen += n
    return bounds[-1]


class Ring:
    def __init__(self, serving: Any, keep: int = KEEP, every: float = EVERY) -> None:
        self._serving = weakref.ref(serving)
        self.every = every
        self.samples: deque[tuple[float, dict]] = deque(maxlen=keep)
        # the figures of each interval between two samples, computed once when it closes
        self.intervals: deque[tuple[float, dict[str, dict[str, float]], dict[str, float]]]
        self.intervals = deque(maxlen=max(keep - 1, 1))
        self.scorings: deque[tuple[float, list[dict]]] = deque(maxlen=keep)
        self._refreshes = -1
        self._lock = threading.Lock()

    def sample(self) -> None:
        serving = self._serving()
        if serving is None:
            return
        with self._lock:
            now = time.time()
            if not self.samples or now - self.samples[-1][0] >= self.every:
                snapshot = serving.metrics.snapshot()
                if self.samples:
                    self.intervals.append(_interval(*self.samples[-1], now, snapshot))
                self.samples.append((now, snapshot))
            monitor = getattr(serving, "monitor", None)
            if monitor is not None and monitor.refreshes != self._refreshes:
                self._refreshes = monitor.refreshes
                state = monitor.drift_state()
                if any(v["scores"] for v in state):
                    self.scorings.append((now, state))

    def series(self, since: float = 0.0) -> dict[str, Any]:
        """``{"versions": {"digits:2": {"rps": [[t, y]...], "error_rate", "p50_ms", ...}},
        "all": {"rps", "p50_ms", "p90_ms", "p99_ms"}, "samples": n}``; t in epoch seconds,
        one point per interval between two samples (none where a figure has no data), only
        those after ``since`` (a page asks for what it has not drawn yet)."""
        with self._lock:
            intervals = [i for i in self.intervals if i[0] > since]
            count = len(self.samples)
        versions: dict[str, dict[str, list]] = {}
        merged: dict[str, list] = {"rps": [], **{_q(q): [] for q in QUANTILES}}
        for t, values, total in intervals:
            for ref, point in values.items():
                row = versions.get(ref) or versions.setdefault(ref, _empty())
                for name, y in point.items():
                    row[name].append([t, y])
            for name, y in total.items():
                merged[name].append([t, y])
        return {"versions": versions, "all": merged, "samples": count}

    def drift(self) -> dict[str, dict[str, list]]:
        """``{"mlp:1": {"x0": [[t, psi, ks, js, flagged], ...]}}`` over the kept scorings."""
        with self._lock:
            scorings = list(self.scorings)
        out: dict[str, dict[str, list]] = {}
        for t, state in scorings:
            for v in state:
                per = out.setdefault(f"{v['model']}:{v['version']}", {})
                for feature, s in v["scores"].items():
                    per.setdefault(feature, []).append(
                        [t, s.get("psi"), s.get("ks"), s.get("js"), v["flagged"].get(feature)]
                    )
        return out


def _q(q: float) -> str:
    return f"p{q * 100:g}_ms"


def _empty() -> dict[str, list]:
    names = ("rps", "error_rate", *(_q(q) for q in QUANTILES), "queue_ms", "batch", "in_flight")
    return {name: [] for name in names}


def _minus(now: Any, before: Any) -> Any:
    if isinstance(now, list):
        return [max(x - y, 0) for x, y in zip(now, before, strict=True)]
    return max(now - before, 0)


def _interval(
    t0: float, a: dict, t1: float, b: dict
) -> tuple[float, dict[str, dict[str, float]], dict[str, float]]:
    """The figures between snapshots ``a`` (at t0) and ``b`` (at t1): per version, and of all
    traffic together."""
    span = max(t1 - t0, 1e-6)
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    total = 0
    values = {}
    for key, now in b.items():
        before = a.get(key)
        if before is None:
            before = {k: [0] * len(v) if isinstance(v, list) else 0 for k, v in now.items()}
        d = {k: _minus(now[k], before[k]) for k in now}
        values[f"{key[0]}:{key[1]}"] = _point(span, d, now["in_flight"])
        total += d["requests"]
        counts = [x + y for x, y in zip(counts, d["latency"], strict=True)]
    merged = {"rps": total / span}
    if total:
        merged.update({_q(q): quantile(q, counts) * 1000 for q in QUANTILES})
    return t1, values, merged


def _point(span: float, d: dict[str, Any], in_flight: int) -> dict[str, float]:
    point = {"rps": d["requests"] / span, "in_flight": in_flight}
    if d["requests"]:
        point["error_rate"] = d["errors"] / d["requests"]
        for q in QUANTILES:
            point[_q(q)] = quantile(q, d["latency"]) * 1000
    if d["queue"]:
        point["queue_ms"] = d["queue_seconds"] / d["queue"] * 1000
    if d["calls"]:
        point["batch"] = d["rows"] / d["calls"]
    return point
