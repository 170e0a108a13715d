"""The live pages' ring of metric samples (``ui/live.py``) over a real ``Metrics``: figures from
the difference of two snapshots, quantiles from histogram buckets, bounded memory."""

from __future__ import annotations

import math

import pytest

from modelport.monitoring.metrics import LATENCY_BUCKETS, Metrics
from modelport.ui.live import Ring, quantile, ring_of


class Server:
    """What the ring reads of a ServingApp: its metrics (and no monitor)."""

    monitor = None

    def __init__(self) -> None:
        self.metrics = Metrics()


def test_quantile_interpolates_inside_a_bucket() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, [0, 10, 0, 0], bounds) == pytest.approx(1.5)  # all in (1, 2]
    assert quantile(0.25, [10, 10, 0, 0], bounds) == pytest.approx(0.5)
    assert quantile(0.99, [0, 0, 0, 3], bounds) == 4.0  # past the top bound: the top bound
    assert math.isnan(quantile(0.5, [0, 0, 0, 0], bounds))


def test_ring_rates_errors_and_quantiles_between_samples() -> None:
    server = Server()
    ring = Ring(server, every=0.0)
    ring.sample()
    for i in range(10):
        with server.metrics.request("digits", 2, "rest") as request:
            if i < 2:
                request.fail(400)
    ring.sample()
    (t0, _), (t1, _) = ring.samples
    series = ring.series()
    digits = series["versions"]["digits:2"]
    assert digits["rps"][0][0] == t1
    assert digits["rps"][0][1] * (t1 - t0) == pytest.approx(10)
    assert digits["error_rate"] == [[t1, 0.2]]
    p50, p99 = digits["p50_ms"][0][1], digits["p99_ms"][0][1]
    assert 0 < p50 <= p99 <= LATENCY_BUCKETS[-1] * 1000
    assert series["all"]["rps"][0][1] == pytest.approx(digits["rps"][0][1])
    assert ring.series(since=t1)["versions"] == {}  # nothing after the last point
    assert ring.series(since=t0)["versions"]["digits:2"]["rps"] == digits["rps"]
    ring.sample()  # no request since: a zero rate, no error rate or quantile for the interval
    again = ring.series()["versions"]["digits:2"]
    assert again["rps"][-1][1] == 0 and len(again["error_rate"]) == 1


def test_ring_is_bounded_and_one_per_server() -> None:
    server = Server()
    ring = Ring(server, keep=3, every=0.0)
    for _ in range(5):
        ring.sample()
    assert len(ring.samples) == 3
    assert ring_of(server) is ring_of(server)
    assert ring_of(server) is not ring_of(Server())
    slow = Ring(server, every=60.0)
    slow.sample()
    slow.sample()  # within ``every``: the first sample stands
    assert len(slow.samples) == 1
