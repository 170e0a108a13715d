"""Every metric of the server, rendered in the Prometheus text exposition format (0.0.4).

    metrics = Metrics()
    with metrics.request("digits", 3, "rest") as req:    # in flight, total latency, outcome
        ...                                              # an exception sets the outcome
    metrics.render()                                     # bytes for GET /metrics

Recording happens on the event loop thread only (worker threads hand their timings back), so
counters are plain attributes: no locks on the request path, one small object per request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
OUTCOMES = ("success", "client_error", "server_error")


class Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> Iterable[str]:
        sep = "," if labels else ""
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            yield f'{name}_bucket{{{labels}{sep}le="{_number(bound)}"}} {running}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        yield f"{name}_sum{{{labels}}} {_number(self.sum)}"
        yield f"{name}_count{{{labels}}} {self.count}"


class RequestSeries:
    """Counters of one (model, version, protocol)."""

    __slots__ = ("labels", "success", "client_error", "server_error", "in_flight", "latency",
                 "failed_seconds", "last")  # fmt: skip

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.success = self.client_error = self.server_error = 0
        self.in_flight = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.failed_seconds = 0.0  # the part of latency.sum spent on failed requests
        self.last = 0.0  # perf_counter() when the last request ended


class ModelSeries:
    """Histograms of one loaded (model, version): queue wait, compute time, batch size."""

    __slots__ = ("labels", "queue", "compute", "batch_size")

    def __init__(self, labels: str) -> None:
        self.labels = labels
        self.queue = Histogram(LATENCY_BUCKETS)
        self.compute = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)


class Request:
    """One request in flight; ``fail(status)`` records an error answered without raising."""

    __slots__ = ("series", "start", "status")

    def __init__(self, series: RequestSeries) -> None:
        self.series = series
        self.status = 200

    def fail(self, status: int) -> None:
        self.status = status

    def __enter__(self) -> Request:
        self.series.in_flight += 1
        self.start = perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        series = self.series
        series.last = ended = perf_counter()
        series.latency.observe(ended - self.start)
        series.in_flight -= 1
        status = self.status if exc is None else getattr(exc, "status", 500)
        if status < 400:
            series.success += 1
            return
        series.failed_seconds += ended - self.start
        if status < 500:
            series.client_error += 1
        else:
            series.server_error += 1


class Metrics:
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int, str], RequestSeries] = {}
        self._models: dict[tuple[str, int], ModelSeries] = {}
        self._load_seconds: dict[str, Histogram] = {}
        self._loads: dict[tuple[str, str], int] = {}
        self._swaps: dict[str, int] = {}
        self._loaded: dict[str, int] = {}
        self.collectors: list[Callable[[], Iterable[str]]] = []  # more families, e.g. rollouts
        self._nonfinite: dict[tuple[str, int, str], int] = {}

    # -- request path --------------------------------------------------------------------------

    def request(self, model: str, version: int, protocol: str) -> Request:
        series = self._requests.get((model, version, protocol))
        if series is None:
            series = self.request_series(model, version, protocol)
        return Request(series)

    def request_series(self, model: str, version: int, protocol: str) -> RequestSeries:
        key = (model, version, protocol)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = RequestSeries(
                _labels(model=model, version=str(version), protocol=protocol)
            )
        return series

    def model_series(self, model: str, version: int) -> ModelSeries:
        key = (model, version)
        series = self._models.get(key)
        if series is None:
            series = self._models[key] = ModelSeries(_labels(model=model, version=str(version)))
        return series

    def totals(self, model: str, version: int) -> dict[str, float]:
        """Cumulative counts and seconds of one version, every protocol together (Triton's
        statistics extension): requests that succeeded or failed, queue waits, model calls and
        the rows they ran, and the perf_counter() time of the last request (0: none yet)."""
        found = [s for (m, v, _), s in self._requests.items() if m == model and v == version]
        latency = sum(s.latency.sum for s in found)
        failed = sum(s.failed_seconds for s in found)
        series = self._models.get((model, version))
        empty = Histogram(())
        queue, compute, rows = (series.queue, series.compute, series.batch_size) if series else (
            empty, empty, empty)  # fmt: skip
        return {
            "success": sum(s.success for s in found), "success_seconds": latency - failed,
            "fail": sum(s.client_error + s.server_error for s in found), "fail_seconds": failed,
            "queue": queue.count, "queue_seconds": queue.sum,
            "compute": compute.count, "compute_seconds": compute.sum, "rows": rows.sum,
            "last": max((s.last for s in found), default=0.0),
        }  # fmt: skip

    def snapshot(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Cumulative figures per (model, version), every protocol together, for a reader that
        samples them (the dashboard; read off the event loop, so a request may be half counted):
        requests, errors (4xx and 5xx), in flight, latency bucket counts (LATENCY_BUCKETS, then
        +Inf), queue waits and their seconds, runtime calls and the rows they ran."""
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for (model, version, _), s in list(self._requests.items()):
            row = out.setdefault((model, version), _empty_snapshot())
            row["requests"] += s.success + s.client_error + s.server_error
            row["errors"] += s.client_error + s.server_error
            row["in_flight"] += s.in_flight
            row["latency"] = [a + b for a, b in zip(row["latency"], s.latency.counts, strict=True)]
        for key, m in list(self._models.items()):
            row = out.setdefault(key, _empty_snapshot())
            row.update(queue=m.queue.count, queue_seconds=m.queue.sum, calls=m.batch_size.count,
                       rows=m.batch_size.sum)  # fmt: skip
        return out

    def nonfinite_outputs(self, model: str, version: int, protocol: str, values: int) -> None:
        """``values`` NaN or infinite numbers left the model in one reply."""
        key = (model, version, protocol)
        self._nonfinite[key] = self._nonfinite.get(key, 0) + values

    # -- lifecycle -----------------------------------------------------------------------------

    def model_loaded(self, model: str, seconds: float) -> None:
        hist = self._load_seconds.get(model)
        if hist is None:
            hist = self._load_seconds[model] = Histogram(LOAD_BUCKETS)
        hist.observe(seconds)
        self._count_load(model, "success")

    def model_load_failed(self, model: str) -> None:
        self._count_load(model, "failure")

    def model_swapped(self, model: str) -> None:
        self._swaps[model] = self._swaps.get(model, 0) + 1

    def set_loaded(self, model: str, versions: int) -> None:
        """How many versions of ``model`` are loaded now (0 after an unload)."""
        self._loaded[model] = versions

    def _count_load(self, model: str, outcome: str) -> None:
        self._loads[model, outcome] = self._loads.get((model, outcome), 0) + 1

    # -- exposition ----------------------------------------------------------------------------

    def render(self) -> bytes:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        requests = list(self._requests.values())
        models = list(self._models.values())
        family("modelport_requests_total", "counter", "Inference requests by outcome.")
        for s in requests:
            for outcome in OUTCOMES:
                out.append(
                    f'modelport_requests_total{{{s.labels},outcome="{outcome}"}} '
                    f"{getattr(s, outcome)}"
                )
        family("modelport_nonfinite_outputs_total", "counter",
               "NaN or infinite numbers in model outputs sent to clients.")  # fmt: skip
        for (model, version, protocol), n in sorted(self._nonfinite.items()):
            labels = _labels(model=model, version=str(version), protocol=protocol)
            out.append(f"modelport_nonfinite_outputs_total{{{labels}}} {n}")
        family("modelport_requests_in_flight", "gauge", "Inference requests being served now.")
        for s in requests:
            out.append(f"modelport_requests_in_flight{{{s.labels}}} {s.in_flight}")
        family("modelport_request_duration_seconds", "histogram",
               "Total time of an inference request inside the model server.")  # fmt: skip
        for s in requests:
            out.extend(s.latency.lines("modelport_request_duration_seconds", s.labels))
        family("modelport_queue_duration_seconds", "histogram",
               "Time a request waited for a worker or a batch before compute started.")  # fmt: skip
        for m in models:
            out.extend(m.queue.lines("modelport_queue_duration_seconds", m.labels))
        family("modelport_compute_duration_seconds", "histogram",
               "Time of one runtime call (one batch when batching).")  # fmt: skip
        for m in models:
            out.extend(m.compute.lines("modelport_compute_duration_seconds", m.labels))
        family("modelport_batch_size", "histogram", "Rows (samples) per runtime call.")
        for m in models:
            out.extend(m.batch_size.lines("modelport_batch_size", m.labels))
        family("modelport_model_load_duration_seconds", "histogram",
               "Time to load and warm one model version.")  # fmt: skip
        for model, hist in sorted(self._load_seconds.items()):
            out.extend(hist.lines("modelport_model_load_duration_seconds", _labels(model=model)))
        family("modelport_model_loads_total", "counter", "Model version loads by outcome.")
        for (model, outcome), n in sorted(self._loads.items()):
            labels = _labels(model=model, outcome=outcome)
            out.append(f"modelport_model_loads_total{{{labels}}} {n}")
        family("modelport_model_swaps_total", "counter", "Traffic switches to a new version.")
        for model, n in sorted(self._swaps.items()):
            out.append(f"modelport_model_swaps_total{{{_labels(model=model)}}} {n}")
        family("modelport_models_loaded", "gauge", "Versions of each model loaded now.")
        for model, n in sorted(self._loaded.items()):
            out.append(f"modelport_models_loaded{{{_labels(model=model)}}} {n}")
        for collect in self.collectors:
            out.extend(collect())
        out.append("")
        return "\n".join(out).encode()


def _empty_snapshot() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "in_flight": 0, "latency": [0] * (len(LATENCY_BUCKETS) + 1),
            "queue": 0, "queue_seconds": 0.0, "calls": 0, "rows": 0.0}  # fmt: skip


def _labels(**pairs: str) -> str:
    return ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else f"{value:.1f}"
