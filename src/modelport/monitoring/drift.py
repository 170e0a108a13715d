"""Drift of one model version against its reference, on a rolling window of rows.

    drift = Drift(reference, DriftOptions(window=10_000))
    drift.add(columns)               # [rows, features]: binned at once, raw rows not kept
    drift.add(sampled, weight=4)     # rows of a 1-in-4 sample: each stands for 4
    scores = drift.refresh()         # {feature: {"psi": .., "ks": .., "js": ..}}
    drift.flagged                    # {feature: True/False}, by the thresholds

The window is a ring of ``slices`` histogram slots, each holding the bin counts of up to
``window / slices`` rows: adding rows fills the current slot, a full slot moves the ring on and
empties the oldest. Memory is ``slices x features x bins`` integers whatever the traffic.
Rows added with a ``weight`` (a stride sample of the traffic: one row in ``weight``) count
``weight`` times, in the bins and towards the window's rows, so the window still spans the last
``window`` rows of traffic, estimated from fewer of them (see ``Monitor`` for the error).

Scores: PSI (population stability index) and Jensen-Shannon distance (base 2) on every feature,
Kolmogorov-Smirnov (the largest gap between the two CDFs at the bin edges) on numeric ones. A
feature is flagged when PSI or KS (numeric) or Jensen-Shannon (categorical) reach their
threshold; nothing is flagged before ``min_rows`` rows are in the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelport.errors import InvalidInput
from modelport.monitoring.reference import Reference

EPSILON = 1e-4  # the share an empty bin counts as in PSI (else log(0))


@dataclass(frozen=True)
class DriftOptions:
    window: int = 10_000
    slices: int = 10
    min_rows: int = 1000
    psi: float = 0.2
    ks: float = 0.1
    js: float = 0.1

    def __post_init__(self) -> None:
        if self.window < self.slices or self.slices < 1:
            raise InvalidInput(f"a drift window of {self.window} rows cannot hold "
                               f"{self.slices} slices")  # fmt: skip
        if not all(t > 0 for t in (self.psi, self.ks, self.js)):
            raise InvalidInput("drift thresholds must be > 0")


class Drift:
    def __init__(self, reference: Reference, options: DriftOptions | None = None) -> None:
        self.reference = reference
        self.options = options = options or DriftOptions()
        width = max(f.bins for f in reference.features)
        self._ring = np.zeros((options.slices, len(reference.features), width), np.int64)
        self._fill = np.zeros(options.slices, np.int64)
        self._slot = 0
        self._per_slot = -(-options.window // options.slices)
        self._expected = np.zeros((len(reference.features), width))
        for j, feature in enumerate(reference.features):
            self._expected[j, : feature.bins] = feature.probs
        self._numeric = np.array([f.kind == "numeric" for f in reference.features])
        self.scores: dict[str, dict[str, float]] = {}
        self.flagged: dict[str, bool] = {}

    @property
    def rows(self) -> int:
        return int(self._fill.sum())

    def add(self, columns: np.ndarray, weight: int = 1) -> None:
        """Bin ``columns`` [rows, features] into the window, each row counting ``weight``."""
        start = 0
        while start < len(columns):
            slot = self._slot
            room = -(-(self._per_slot - int(self._fill[slot])) // weight)
            take = min(len(columns) - start, room)
            counts = self.reference.bin(columns[start : start + take])
            self._ring[slot] += counts if weight == 1 else counts * weight
            self._fill[slot] += take * weight
            start += take
            if self._fill[slot] >= self._per_slot:
                self._slot = slot = (slot + 1) % self.options.slices
                self._ring[slot] = 0
                self._fill[slot] = 0

    def refresh(self) -> dict[str, dict[str, float]]:
        """Score the window now; updates ``scores`` and ``flagged``."""
        counts = self._ring.sum(axis=0).astype(np.float64)
        totals = counts.sum(axis=1, keepdims=True)
        if self.rows < self.options.min_rows:
            self.scores, self.flagged = {}, {}
            return {}
        psi, ks, js = scores(self._expected, counts / np.maximum(totals, 1))
        o = self.options
        names = self.reference.names
        self.scores = {
            name: {"psi": float(psi[j]), "js": float(js[j]), **({"ks": float(ks[j])}
                   if self._numeric[j] else {})}
            for j, name in enumerate(names)
        }  # fmt: skip
        flags = np.where(self._numeric, (psi >= o.psi) | (ks >= o.ks), js >= o.js)
        self.flagged = {name: bool(flags[j]) for j, name in enumerate(names)}
        return self.scores


def scores(expected: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, ...]:
    """PSI, KS and Jensen-Shannon distance per row of two [features, bins] share matrices."""
    p, q = np.maximum(expected, EPSILON), np.maximum(actual, EPSILON)
    psi = ((q - p) * np.log(q / p)).sum(axis=1)
    ks = np.abs(np.cumsum(expected, axis=1) - np.cumsum(actual, axis=1)).max(axis=1)
    mid = (expected + actual) / 2
    js = np.sqrt(np.clip((_kl(expected, mid) + _kl(actual, mid)) / 2, 0.0, 1.0))
    return psi, ks, js


def _kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ratio = np.divide(a, b, out=np.ones_like(a), where=(a > 0) & (b > 0))
    return (a * np.log2(ratio)).sum(axis=1)
