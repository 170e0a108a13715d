"""The server's model monitor: payload log, drift and accuracy, fed from one data plane hook.

    monitor = Monitor(registry, MonitorOptions(payload_log="/var/log/modelport"), metrics)
    plane.observers.append(monitor.observe)    # called after each reply, on the event loop
    monitor.start(); ...; monitor.stop()
    monitor.feedback("digits", {"request_ids": [...], "ground_truth": [...]})

``observe`` does three cheap things: offer the event to the payload logger (sampling, a bounded
append), remember the prediction under the client's request id for feedback, and append the
request to the drift backlog (bounded: past ``backlog`` requests or ``backlog_bytes`` of tensors
they are skipped and counted; a version whose registry record has no reference tag is never
queued). A background thread bins the backlog into each version's drift window every
``interval`` s and scores drift every ``refresh`` s; ``render`` writes the gauges from what it
scored last.

Past ``drift_rate`` requests a second (the rate of the last ``interval``), drift takes a stride
sample: one request in ``k`` (k = rate / drift_rate, rounded up), each of its rows weighing k in
the window. The window then still spans the last ``window`` rows of traffic, estimated from
``window / k`` of them: every share in it has a standard error of sqrt(p (1 - p) k / window),
and under no drift the expected PSI over B bins grows to about (B - 1) k / window (0.0095 for
20 bins, a 10,000-row window and k = 5, against the 0.2 threshold) and KS's 95% point to
1.36 sqrt(k / window) (0.030 against 0.1). Binning costs a few microseconds a request, so at
full load the sample bounds it (the request path only counts the skipped requests).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from time import monotonic, perf_counter, sleep
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.monitoring.drift import Drift, DriftOptions
from modelport.monitoring.feedback import Feedback
from modelport.monitoring.metrics import _labels, _number
from modelport.monitoring.payload import PayloadLogger, PayloadOptions, now
from modelport.monitoring.reference import (
    TAG,
    input_columns,
    load_reference,
    output_columns,
    probabilities,
)

if TYPE_CHECKING:
    from modelport.registry import Registry

log = logging.getLogger("modelport.monitoring")


@dataclass(frozen=True)
class MonitorOptions:
    """``payload_log``: a folder, an fsspec URL or an http(s) CloudEvents URL (None: off)."""

    payload_log: str | None = None
    payload: PayloadOptions = PayloadOptions()
    roll_bytes: int = 64 << 20
    roll_seconds: float = 300.0
    drift: bool = True
    drift_options: DriftOptions = DriftOptions()
    refresh: float = 5.0
    interval: float = 1.0  # seconds between drains of the drift backlog
    backlog: int = 20_000
    backlog_bytes: int = 64 << 20
    drift_rate: int = 500  # requests a second binned, at most; past it, a stride sample
    feedback_capacity: int = 100_000
    accuracy_window: int = 1000


class Monitor:
    def __init__(self, registry: Registry, options: MonitorOptions | None = None) -> None:
        from modelport.monitoring.sinks import open_sink

        self.registry = registry
        self.options = options = options or MonitorOptions()
        self.logger: PayloadLogger | None = None
        if options.payload_log:
            sink = open_sink(options.payload_log, options.payload,
                             **_sink_args(options))  # fmt: skip
            self.logger = PayloadLogger(sink, options.payload)
        self.feedbacks = Feedback(options.feedback_capacity, options.accuracy_window)
        self._backlog: deque = deque()
        self.skipped = 0  # requests the drift backlog had no room for
        self._queued = self._drained = 0  # bytes of inputs into and out of the backlog
        self._seen = 0  # requests to tracked versions, by the loop
        self._stride = 1  # drift bins one of ``_stride`` of them (set by the thread)
        self._rate_mark = (0, monotonic())  # _seen and the time at the last drain
        self._drift: dict[tuple[str, int], Drift | None] = {}  # None: the version has no reference
        self._signatures: dict[tuple[str, int], Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scored = 0.0
        self.refreshes = 0  # drift scorings so far

    # -- the request path (event loop) ---------------------------------------------------------

    def observe(self, request: Any, model: Any, feed: dict, response: Any, started: float) -> None:
        latency = perf_counter() - started
        name, version, outputs = response.model, response.version, response.outputs
        request_id = request.id or None  # gRPC sends "" for no id
        if request_id is not None:
            self.feedbacks.remember(name, request_id, version, outputs)
        logger = self.logger
        if logger is not None and logger.wants(name):
            logger.offer(now(), request_id, request.traceparent, name, version, feed, outputs,
                         latency)  # fmt: skip
        if self.options.drift and self._tracked(model, name, version):
            self._seen = seen = self._seen + 1
            stride = self._stride
            if stride > 1 and seen % stride:
                return
            nbytes = 0
            for array in feed.values():
                nbytes += array.nbytes
            room = self.options.backlog_bytes - (self._queued - self._drained)
            if len(self._backlog) < self.options.backlog and nbytes <= room:
                self._queued += nbytes
                self._backlog.append((name, version, stride, feed, outputs, nbytes))
            else:
                self.skipped += 1

    def _tracked(self, model: Any, name: str, version: int) -> bool:
        """Whether the version may have a drift window: False once it is known to have none
        (its record carries no reference tag, or the thread found none), without any I/O."""
        state = self._drift.get((name, version), _UNKNOWN)
        if state is _UNKNOWN:
            record = getattr(model, "record", None)
            if record is not None and record.version == version and TAG not in record.tags:
                self._drift[name, version] = state = None
        return state is not None

    def feedback(self, model: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidInput("the feedback body must be a JSON object")
        return self.feedbacks.join(model, body.get("request_ids"), body.get("ground_truth"))

    # -- the background thread -----------------------------------------------------------------

    def start(self) -> None:
        if self.logger is not None:
            self.logger.start()
        self._thread = threading.Thread(target=self._run, name="modelport-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        if self.logger is not None:
            self.logger.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.options.interval):
            try:
                with _LOCK:
                    self._drain()
                    if monotonic() - self._scored >= self.options.refresh:
                        self.refresh()
            except Exception:  # a monitoring bug must not stop the monitoring thread
                log.exception("model monitoring failed; trying again")

    def refresh(self) -> None:
        """Score every drift window now."""
        self._scored = monotonic()
        for drift in list(self._drift.values()):
            if drift is not None:
                drift.refresh()
        self.refreshes += 1

    def _drain(self) -> None:
        """Bin the backlog, grouped by version and stride, into the drift windows; set the
        stride for the next ``interval`` from the rate since the last drain."""
        seen, at = self._seen, monotonic()
        rate = (seen - self._rate_mark[0]) / max(at - self._rate_mark[1], 1e-3)
        self._stride = max(1, -int(-rate // self.options.drift_rate))
        self._rate_mark = seen, at
        backlog, groups = self._backlog, {}
        while backlog:
            name, version, stride, feed, outputs, nbytes = backlog.popleft()
            self._drained += nbytes
            groups.setdefault((name, version, stride), []).append((feed, outputs))
        for (name, version, stride), everything in groups.items():
            drift = self._tracker((name, version))
            if drift is None:
                continue
            for start in range(0, len(everything), SLICE):
                self._bin((name, version), drift, everything[start : start + SLICE], stride)
                sleep(0)  # hand the GIL back to the event loop between slices

    def _bin(self, key: tuple[str, int], drift: Drift, items: list, stride: int) -> None:
        feed = {k: np.concatenate([f[k] for f, _ in items]) for k in items[0][0]}
        outputs = {k: np.concatenate([o[k] for _, o in items]) for k in items[0][1]}
        _, ins = input_columns(self._signatures[key], feed)
        names, outs = output_columns(outputs)
        expected = drift.reference.names[len(drift.reference.names) - drift.reference.outputs :]
        if names != expected:  # the client asked for some outputs only: no output drift
            outs = np.full((len(ins), len(expected)), np.nan)
        drift.add(np.hstack([ins, outs]), stride)
        probs = probabilities(outputs)
        if probs is not None:
            self.feedbacks.estimate(key[0], key[1], probs)

    def _tracker(self, key: tuple[str, int]) -> Drift | None:
        if key in self._drift:
            return self._drift[key]
        drift = None
        try:
            record = self.registry.resolve(f"{key[0]}:{key[1]}")
            reference = load_reference(self.registry, record)
            if reference is not None:
                drift = Drift(reference, self.options.drift_options)
                self._signatures[key] = record.signature
        except Exception as exc:
            log.warning("%s:%d: no drift tracking: %s", key[0], key[1], exc)
        self._drift[key] = drift
        return drift

    def drift_state(self) -> list[dict[str, Any]]:
        """Every tracked version's drift window as last scored, for readers such as the
        dashboard: rows in the window, scores and flags per feature, the thresholds."""
        out = []
        for (name, version), drift in sorted(list(self._drift.items())):
            if drift is None:
                continue
            o = drift.options
            out.append({
                "model": name, "version": version, "rows": drift.rows, "window": o.window,
                "min_rows": o.min_rows, "thresholds": {"psi": o.psi, "ks": o.ks, "js": o.js},
                "kinds": {f.name: f.kind for f in drift.reference.features},
                "scores": dict(drift.scores), "flagged": dict(drift.flagged),
            })  # fmt: skip
        return out

    # -- metrics -------------------------------------------------------------------------------

    def render(self) -> list[str]:
        out = list(self.logger.render()) if self.logger is not None else []
        score_lines, flag_lines = [], []
        for (name, version), drift in sorted(self._drift.items()):
            if drift is None:
                continue
            flagged = drift.flagged
            for feature, by_method in drift.scores.items():
                for method, value in by_method.items():
                    labels = _labels(model=name, version=str(version), feature=feature,
                                     method=method)  # fmt: skip
                    score_lines.append(f"modelport_drift_score{{{labels}}} {_number(value)}")
                labels = _labels(model=name, version=str(version), feature=feature)
                flag = int(flagged.get(feature, False))  # scored by another thread meanwhile
                flag_lines.append(f"modelport_drift_flagged{{{labels}}} {flag}")
        out += ["# HELP modelport_drift_score Drift of a feature against the version's reference.",
                "# TYPE modelport_drift_score gauge", *score_lines,
                "# HELP modelport_drift_flagged 1 when a feature's drift is past its threshold.",
                "# TYPE modelport_drift_flagged gauge", *flag_lines]  # fmt: skip
        out += ["# HELP modelport_accuracy Realized (labelled) and estimated accuracy.",
                "# TYPE modelport_accuracy gauge"]  # fmt: skip
        errors = []
        for name, version, kind, value in self.feedbacks.series():
            if kind == "mae":
                labels = _labels(model=name, version=str(version), metric="mae")
                errors.append(f"modelport_prediction_error{{{labels}}} {_number(value)}")
                continue
            kind = "realized" if kind == "accuracy" else kind
            labels = _labels(model=name, version=str(version), kind=kind)
            out.append(f"modelport_accuracy{{{labels}}} {_number(value)}")
        out += ["# HELP modelport_prediction_error Realized mean absolute error of a regressor.",
                "# TYPE modelport_prediction_error gauge", *errors]  # fmt: skip
        return out


_LOCK = threading.Lock()  # the backlog drains in one thread at a time
_UNKNOWN = object()
SLICE = 256  # requests binned between two hand-backs of the GIL


def _sink_args(options: MonitorOptions) -> dict[str, Any]:
    dest = options.payload_log or ""
    if dest.startswith(("http://", "https://")):
        return {}
    return {"roll_bytes": options.roll_bytes, "roll_seconds": options.roll_seconds}
