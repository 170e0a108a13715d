"""Drift against a version's reference: in the real server, and over a long stable replay."""

from __future__ import annotations

import time

import anyio
import numpy as np
import pytest

from modelport.monitoring.drift import Drift, DriftOptions
from modelport.monitoring.monitor import _LOCK, MonitorOptions
from modelport.monitoring.reference import Reference, load_reference
from modelport.signature import Signature, TensorSpec
from tests.monitoring.conftest import FEATURES, infer_body, metric, monitored_app

WINDOW = 2000


async def refreshed(monitor, after: int, seconds: float = 20.0) -> None:
    """Wait (bounded) until the monitor has scored drift ``after`` times."""
    deadline = time.monotonic() + seconds
    while monitor.refreshes < after:
        assert time.monotonic() < deadline, "drift was not refreshed in time"
        await anyio.sleep(0.02)


async def send(client, rows: np.ndarray, per_request: int = 100) -> None:
    for start in range(0, len(rows), per_request):
        reply = await client.post("/v2/models/mlp/infer",
                                  json=infer_body(rows[start : start + per_request]))  # fmt: skip
        assert reply.status_code == 200


@pytest.mark.anyio
async def test_half_a_standard_deviation_is_flagged_within_two_refreshes(
    monitored_registry,
) -> None:
    rng = np.random.default_rng(7)
    options = MonitorOptions(drift_options=DriftOptions(window=WINDOW, min_rows=500),
                             refresh=0.5, interval=0.05)  # fmt: skip
    async with monitored_app(monitored_registry, options) as (client, monitor):
        await send(client, rng.standard_normal((WINDOW, FEATURES)).astype(np.float32))
        await refreshed(monitor, monitor.refreshes + 2)
        text = (await client.get("/metrics")).text
        for j in range(FEATURES):
            flag = metric(text, "modelport_drift_flagged", model="mlp", version="1",
                          feature=f"input[{j}]")  # fmt: skip
            assert flag == 0, f"stable feature {j} flagged"
        psi = metric(text, "modelport_drift_score", model="mlp", version="1", feature="input[0]",
                     method="psi")  # fmt: skip
        assert psi is not None and psi < 0.05

        shifted = rng.standard_normal((WINDOW, FEATURES)).astype(np.float32)
        shifted[:, 2] += 0.5  # the reference is N(0, 1): half a standard deviation
        await send(client, shifted)
        await refreshed(monitor, monitor.refreshes + 2)
        text = (await client.get("/metrics")).text
    flags = {j: metric(text, "modelport_drift_flagged", model="mlp", version="1",
                       feature=f"input[{j}]") for j in range(FEATURES)}  # fmt: skip
    assert flags == {0: 0, 1: 0, 2: 1, 3: 0}
    for method in ("psi", "ks", "js"):
        score = metric(text, "modelport_drift_score", model="mlp", version="1",
                       feature="input[2]", method=method)  # fmt: skip
        assert score is not None and score > 0.1, method
    output = {"model": "mlp", "version": "1", "feature": "probabilities.class", "method": "js"}
    assert metric(text, "modelport_drift_score", **output) is not None  # output drift


def test_a_million_stable_rows_raise_no_flag(monitored_registry) -> None:
    reference = load_reference(monitored_registry, monitored_registry.resolve("mlp:1"))
    drift = Drift(reference)  # the server's defaults: 10,000 rows, thresholds
    rng = np.random.default_rng(11)
    classes = rng.choice(reference.features[-1].cuts, p=reference.features[-1].probs[:-1],
                         size=1_000_000)  # fmt: skip
    worst = 0.0
    for start in range(0, 1_000_000, 10_000):
        rows = np.empty((10_000, FEATURES + 1))
        rows[:, :FEATURES] = rng.standard_normal((10_000, FEATURES))
        rows[:, FEATURES] = classes[start : start + 10_000]
        drift.add(rows)
        drift.refresh()
        assert drift.rows <= 10_000 and not any(drift.flagged.values()), drift.scores
        worst = max(worst, max(s["psi"] for s in drift.scores.values()))
    assert 0 < worst < DriftOptions().psi / 4


def test_a_stride_sample_keeps_the_window_and_its_flags(monitored_registry) -> None:
    """Rows of a 1-in-5 sample, each weighing 5: the window spans as many rows of traffic, a
    stable replay raises no flag and a half standard deviation shift in one feature is flagged
    as soon as the sampled rows fill the window."""
    reference = load_reference(monitored_registry, monitored_registry.resolve("mlp:1"))
    drift = Drift(reference)  # 10,000 rows: 2,000 sampled rows at a stride of 5
    rng = np.random.default_rng(13)
    classes = reference.features[-1]

    def rows(n: int, shift: float = 0.0) -> np.ndarray:
        out = np.empty((n, FEATURES + 1))
        out[:, :FEATURES] = rng.standard_normal((n, FEATURES))
        out[:, 1] += shift
        out[:, FEATURES] = rng.choice(classes.cuts, p=classes.probs[:-1], size=n)
        return out

    for _ in range(50):  # 500,000 rows of traffic
        drift.add(rows(2000), weight=5)
        drift.refresh()
        assert 9_000 <= drift.rows <= 10_000 and not any(drift.flagged.values()), drift.scores
    drift.add(rows(2000, shift=0.5), weight=5)
    drift.refresh()
    assert [name for name, flag in drift.flagged.items() if flag] == ["input[1]"]


@pytest.mark.anyio
async def test_past_the_drift_rate_one_request_in_k_is_binned(monitored_registry) -> None:
    options = MonitorOptions(drift_rate=50, interval=0.2, refresh=60)
    one = np.zeros((1, FEATURES), np.float32)
    async with monitored_app(monitored_registry, options) as (client, monitor):
        sent, strides, deadline = 0, set(), time.monotonic() + 30
        # a condition, not a clock: past 50 requests a second a drain (every 0.2 s) sets a
        # stride > 1; send until one has, and at least 300 requests (bounded in count and time)
        while (max(strides, default=1) < 2 or sent < 300) and sent < 5000:
            if time.monotonic() > deadline:
                break
            reply = await client.post("/v2/models/mlp/infer", json=infer_body(one))
            assert reply.status_code == 200
            sent += 1
            strides.add(monitor._stride)
        deadline = time.monotonic() + 10
        while monitor._backlog and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        with _LOCK:  # the drain that emptied the backlog has binned it
            rows = monitor._drift["mlp", 1].rows
    assert max(strides) >= 2, f"no stride sample after {sent} requests"
    assert monitor._seen == sent
    # the window still counts the traffic's rows: each binned one weighs its stride
    assert 0.8 * sent <= rows <= 1.2 * sent


def test_categorical_features_use_their_values() -> None:
    signature = Signature((TensorSpec("x", "float32", (-1, 2)),))
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.standard_normal(4000), rng.integers(0, 4, 4000)])
    reference = Reference.compute(signature, {"x": x}, {})
    assert [f.kind for f in reference.features] == ["numeric", "categorical"]
    assert reference.features[1].cuts.tolist() == [0, 1, 2, 3]
    drift = Drift(reference, DriftOptions(window=2000, min_rows=500))
    moved = np.column_stack(
        [rng.standard_normal(2000), rng.choice(4, 2000, p=[0.7, 0.1, 0.1, 0.1])]
    )
    drift.add(moved)
    drift.refresh()
    assert drift.flagged == {"x[0]": False, "x[1]": True}
    assert "ks" not in drift.scores["x[1]"] and drift.scores["x[1]"]["js"] > 0.1
    drift.add(np.column_stack([rng.standard_normal(2000), np.full(2000, 9.0)]))  # unseen value
    drift.refresh()
    assert drift.scores["x[1]"]["js"] > 0.9


def test_all_features_binned_at_once_as_one_at_a_time() -> None:
    """The window's binning of every feature in one pass gives each feature's own counts: ties
    with a cut, values past either end, unseen categories, NaN and inf skipped, more rows than
    one pass takes."""
    from modelport.monitoring.reference import CHUNK

    signature = Signature((TensorSpec("x", "float32", (-1, 3)), TensorSpec("c", "int64", (-1, 2))))
    rng = np.random.default_rng(5)
    x, c = rng.standard_normal((3000, 3)), rng.integers(0, 6, (3000, 2))
    reference = Reference.compute(signature, {"x": x, "c": c}, {"y": rng.random((3000, 4))})
    assert {f.kind for f in reference.features} == {"numeric", "categorical"}
    rows = CHUNK + 900
    columns = np.column_stack([rng.normal(0.5, 3.0, (rows, 3)), rng.integers(-2, 9, (rows, 2)),
                               rng.integers(0, 5, rows)]).astype(np.float64)  # fmt: skip
    columns[::7, 1], columns[::11, 3], columns[::13, 0] = np.nan, np.inf, -np.inf
    columns[:50, 0] = reference.features[0].cuts[4]  # exactly on a cut
    counts = reference.bin(columns)
    for j, feature in enumerate(reference.features):
        values = columns[:, j][np.isfinite(columns[:, j])]
        expected = np.bincount(feature.bin(values), minlength=feature.bins)
        assert counts[j, : feature.bins].tolist() == expected.tolist(), feature.name
        assert not counts[j, feature.bins :].any()


@pytest.mark.anyio
async def test_the_drift_backlog_is_bounded(monitored_registry, tmp_path) -> None:
    import modelport
    from tests.conftest import make_mlp_onnx

    modelport.register(make_mlp_onnx(tmp_path / "other.onnx", seed=9), "unreferenced",
                       registry=monitored_registry, alias="production")  # fmt: skip
    rows = np.zeros((100, FEATURES), np.float32)  # 1,600 bytes a request
    options = MonitorOptions(backlog=5, backlog_bytes=4000, interval=60)  # no drain meanwhile
    async with monitored_app(monitored_registry, options) as (client, monitor):
        for _ in range(4):
            reply = await client.post("/v2/models/unreferenced/infer", json=infer_body(rows))
            assert reply.status_code == 200
        assert len(monitor._backlog) == 0 and monitor.skipped == 0  # no reference: not queued
        for _ in range(4):
            await client.post("/v2/models/mlp/infer", json=infer_body(rows))
        assert len(monitor._backlog) == 2 and monitor.skipped == 2  # 4,000 bytes hold two
        text = (await client.get("/metrics")).text
    assert 'model="unreferenced"' not in text.split("modelport_drift_score", 1)[-1]
