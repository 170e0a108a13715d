from __future__ import annotations

import math
import re

import pytest

from modelport.errors import BackendError, InvalidInput, NotFound
from modelport.monitoring.metrics import LATENCY_BUCKETS, Metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """A strict reader of the Prometheus text format 0.0.4: fails on anything malformed."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helps, f"two HELP lines for {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name not in types, f"two TYPE lines for {name}"
            types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"malformed sample line: {line!r}"
            name, raw_labels, value = match.groups()
            labels = {}
            if raw_labels:
                consumed = 0
                for lm in _LABEL.finditer(raw_labels):
                    assert lm.start() == consumed, f"malformed labels: {raw_labels!r}"
                    labels[lm.group(1)] = lm.group(2)
                    consumed = lm.end()
                assert consumed == len(raw_labels), f"malformed labels: {raw_labels!r}"
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert family in types or name in types, f"sample {name} has no TYPE line"
            samples.append((name, labels, float(value)))
    assert set(types) == helps
    return types, samples


def value(samples, name: str, **labels: str) -> float:
    found = [
        v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def test_requests_are_counted_by_outcome_with_latency_and_in_flight():
    metrics = Metrics()
    for _ in range(3):
        with metrics.request("digits", 2, "rest"):
            pass
    with pytest.raises(InvalidInput):
        with metrics.request("digits", 2, "rest"):
            raise InvalidInput("bad shape")
    with pytest.raises(NotFound):
        with metrics.request("digits", 2, "grpc"):
            raise NotFound("nope")
    with pytest.raises(BackendError):
        with metrics.request("digits", 2, "rest"):
            raise BackendError("runtime broke")
    with pytest.raises(ZeroDivisionError):
        with metrics.request("digits", 2, "rest"):
            1 / 0  # noqa: B018 - any unexpected exception counts as a server error
    with metrics.request("digits", 2, "rest") as req:
        req.fail(413)  # answered with an error without raising
    with metrics.request("digits", 3, "rest"):
        inside = parse(metrics.render().decode())[1]
        assert value(inside, "modelport_requests_in_flight", version="3") == 1
    types, samples = parse(metrics.render().decode())
    assert types["modelport_requests_total"] == "counter"
    assert types["modelport_request_duration_seconds"] == "histogram"
    rest = {"model": "digits", "version": "2", "protocol": "rest"}
    assert value(samples, "modelport_requests_total", **rest, outcome="success") == 3
    assert value(samples, "modelport_requests_total", **rest, outcome="client_error") == 2
    assert value(samples, "modelport_requests_total", **rest, outcome="server_error") == 2
    assert value(samples, "modelport_requests_total", protocol="grpc", outcome="client_error") == 1
    assert value(samples, "modelport_requests_in_flight", version="3") == 0
    assert value(samples, "modelport_request_duration_seconds_count", **rest) == 7
    assert value(samples, "modelport_request_duration_seconds_count", version="3") == 1


def test_histograms_are_cumulative_and_end_at_the_count():
    metrics = Metrics()
    series = metrics.model_series("digits", 1)
    observed = [0.00005, 0.0003, 0.0003, 0.002, 0.7, 42.0]
    for seconds in observed:
        series.compute.observe(seconds)
    for rows in (1, 3, 3, 16, 2000):
        series.batch_size.observe(rows)
    _, samples = parse(metrics.render().decode())
    name = "modelport_compute_duration_seconds_bucket"
    buckets = [(lab["le"], v) for n, lab, v in samples if n == name]
    assert [le for le, _ in buckets] == [repr(b) if not float(b).is_integer() else f"{b:.1f}"
                                         for b in LATENCY_BUCKETS] + ["+Inf"]  # fmt: skip
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert counts[-1] == len(observed)
    by_le = dict(buckets)
    assert by_le["0.0001"] == 1 and by_le["0.0005"] == 3 and by_le["1.0"] == 5
    assert math.isclose(value(samples, "modelport_compute_duration_seconds_sum"), sum(observed))
    assert value(samples, "modelport_batch_size_bucket", le="4.0") == 3
    assert value(samples, "modelport_batch_size_bucket", le="+Inf") == 5
    assert value(samples, "modelport_batch_size_sum") == 2023


def test_lifecycle_metrics():
    metrics = Metrics()
    metrics.model_loaded("digits", 0.3)
    metrics.model_loaded("digits", 1.5)
    metrics.model_load_failed("digits")
    metrics.model_swapped("digits")
    metrics.set_loaded("digits", 2)
    metrics.set_loaded("iris", 0)
    types, samples = parse(metrics.render().decode())
    assert types["modelport_model_load_duration_seconds"] == "histogram"
    assert value(samples, "modelport_model_load_duration_seconds_count", model="digits") == 2
    assert value(samples, "modelport_model_load_duration_seconds_bucket", le="0.5") == 1
    assert value(samples, "modelport_model_loads_total", outcome="success") == 2
    assert value(samples, "modelport_model_loads_total", outcome="failure") == 1
    assert value(samples, "modelport_model_swaps_total", model="digits") == 1
    assert value(samples, "modelport_models_loaded", model="digits") == 2
    assert value(samples, "modelport_models_loaded", model="iris") == 0


def test_names_follow_prometheus_conventions_and_labels_are_escaped():
    metrics = Metrics()
    with metrics.request("digits", 1, 'we"ird\\proto\ncol'):
        pass
    metrics.model_series("digits", 1)
    metrics.model_loaded("digits", 0.1)
    types, samples = parse(metrics.render().decode())
    assert value(samples, "modelport_requests_total", outcome="success",
                 protocol='we\\"ird\\\\proto\\ncol') == 1  # fmt: skip
    for name, kind in types.items():
        assert name.startswith("modelport_")
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram" and name != "modelport_batch_size":
            assert name.endswith("_seconds"), name
    assert Metrics.content_type.startswith("text/plain; version=0.0.4")


def test_an_empty_registry_of_metrics_still_renders_valid_text():
    types, samples = parse(Metrics().render().decode())
    assert "modelport_requests_total" in types and samples == []
