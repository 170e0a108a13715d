"""Payload logging: every sampled request and reply, written off the request path.

    logger = PayloadLogger(ParquetSink("/var/log/modelport"), sample=0.1, capacity=10_000)
    logger.start()                         # the writer thread
    logger.offer(time, id, traceparent, model, version, inputs, outputs, latency)  # request path
    logger.stop()                          # writes what is queued, closes the sink

``offer`` never blocks and never raises: a full queue (``capacity`` events or ``max_bytes`` of
tensors) drops the event and counts it. The request path appends one tuple per event to a
deque (references to the decoded input arrays and the outputs, immutable once the reply is
built, and the scalars: no copy, no column building); the writer takes what is queued (a full
``batch`` of events, or what came in ``interval`` seconds), turns it into columns
(``columns.batched``: a ``zip`` per batch of up to 512 events, the GIL handed back between
batches) and hands them to the sink; a sink that raises fails its whole batch (counted), and
the writer waits a little longer after each failure in a row (at most ``MAX_BACKOFF`` s) so a
dead sink costs no CPU while the queue fills and drops. Every offered event ends up counted
once: sent, dropped or failed.

Events carry the request id (the client's, else one the writer makes), the trace id of a W3C
``traceparent`` (else ""), model, version, input and output tensors and the latency. Inputs or
outputs named in ``redact`` are left out; those in ``hash`` are replaced by a SHA-256 per row
(both on the request path, so nothing redacted is ever queued).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from time import sleep
from typing import Any, Protocol

import numpy as np

from modelport.monitoring.columns import EVENTS, Batch, batched
from modelport.monitoring.metrics import _labels

log = logging.getLogger("modelport.monitoring")
MAX_BACKOFF = 5.0
OUTCOMES = ("sent", "dropped", "failed")


class Sink(Protocol):
    def write(self, batches: list[Batch]) -> None: ...  # raises when the events are lost
    def tick(self) -> None: ...  # roll files by age; called when idle too
    def close(self) -> None: ...


def trace_id(traceparent: str | None) -> str:
    """The trace id of a valid W3C ``traceparent`` (version 00), else ""."""
    if not traceparent or len(traceparent) < 55:
        return ""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or len(parts[1]) != 32:
        return ""
    tid = parts[1].lower()
    if tid == "0" * 32 or len(parts[2]) != 16 or any(c not in "0123456789abcdef" for c in tid):
        return ""
    return tid


@dataclass
class Counts:
    """Per model; ``offered``/``dropped`` move on the event loop, the rest in the writer, so no
    counter is written by two threads."""

    offered: int = 0
    dropped: int = 0
    taken: int = 0
    sent: int = 0
    failed: int = 0

    @property
    def depth(self) -> int:
        return self.offered - self.dropped - self.taken


@dataclass(frozen=True)
class PayloadOptions:
    sample: float = 1.0
    capacity: int = 10_000
    max_bytes: int = 64 << 20
    batch: int = 4096
    interval: float = 1.0  # seconds the writer waits for a batch to fill before writing
    redact: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()
    models: tuple[str, ...] = field(default=())  # empty: every model


class PayloadLogger:
    def __init__(self, sink: Sink, options: PayloadOptions | None = None) -> None:
        self.sink = sink
        self.options = options = options or PayloadOptions()
        self._ring: deque[tuple] = deque()  # queued events, oldest first (columns.Queued)
        self._queued = self._taken = 0  # events: queued by the loop, taken by the writer
        self._added = 0  # bytes queued, by the loop
        self._removed = 0  # bytes taken, by the writer
        self.counts: dict[str, Counts] = {}
        self._models = frozenset(options.models)
        self._masking = bool(options.redact or options.hash)
        self._stop = threading.Event()
        self._full = threading.Event()  # set by the loop once a full batch is queued
        self._signalled = False  # whether the loop has set _full since the writer cleared it
        self._thread: threading.Thread | None = None

    def wants(self, model: str) -> bool:
        return not self._models or model in self._models

    def offer(self, time: float, request_id: str | None, traceparent: str | None, model: str,
              version: int, inputs: dict, outputs: dict, latency: float) -> None:  # fmt: skip
        """Queue one event, or count it dropped; ``request_id`` None: the writer makes one."""
        counts = self.counts.get(model)
        if counts is None:
            counts = self.counts[model] = Counts()
        options = self.options
        if options.sample < 1.0 and random.random() >= options.sample:
            return
        counts.offered += 1
        if self._masking:
            try:
                inputs, outputs = redacted(inputs, options), redacted(outputs, options)
            except Exception as exc:  # never a failed request: the event is dropped, counted
                counts.dropped += 1
                log.warning("payload log: cannot mask a request to %s: %s", model, exc)
                return
        nbytes = 0
        for array in inputs.values():
            nbytes += array.nbytes
        for array in outputs.values():
            nbytes += array.nbytes
        if (self._queued - self._taken >= options.capacity
                or self._added - self._removed + nbytes > options.max_bytes):  # fmt: skip
            counts.dropped += 1
            return
        self._added += nbytes  # counted before the append: the writer never takes more
        self._queued += 1
        self._ring.append((time, request_id, traceparent, model, version, inputs, outputs,
                           latency, nbytes))  # fmt: skip
        if not self._signalled and self._queued - self._taken >= options.batch:
            self._signalled = True  # one wake-up of the writer a full batch, not a poll
            self._full.set()

    # -- the writer ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelport-payload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within ``timeout``), then close the sink."""
        self._stop.set()
        self._full.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._fail(self._take(None))  # whatever the writer could not finish
        try:
            self.sink.close()
        except Exception as exc:
            log.warning("payload sink failed to close: %s", exc)

    def _run(self) -> None:
        failures = 0
        while True:
            self._wait()
            batches = self._take(self.options.batch)
            if not batches:
                if self._stop.is_set():
                    return
                self._tick()
                continue
            try:
                self.sink.write(batches)
            except Exception as exc:
                self._fail(batches)
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    log.warning("payload sink failed (%d in a row): %s", failures, exc)
                if not self._stop.is_set():
                    self._stop.wait(min(MAX_BACKOFF, 0.05 * 2**failures))
                continue
            failures = 0
            for batch in batches:
                self.counts[batch.model].sent += batch.count
            self._tick()  # under steady load the queue is never empty: roll by age here too

    def _wait(self) -> None:
        """Until a full batch is queued, ``interval`` has passed, or the logger stops: a sink
        call has a fixed cost (a Parquet row group, a file write), so fewer larger calls. The
        loop wakes the writer when a batch is full: no polling, so the writer never takes the
        GIL from the event loop only to find the queue short."""
        if self._queued - self._taken < self.options.batch and not self._stop.is_set():
            self._full.wait(self.options.interval)
        self._signalled = False
        self._full.clear()

    def _take(self, most: int | None) -> list[Batch]:
        """Queued events, oldest first, at most ``most`` (None: all), as batches; the GIL is
        handed back between every ``EVENTS`` events taken, and again once the queued tuples of
        those (a few thousand objects) are freed."""
        ring, batches = self._ring, []
        count = len(ring) if most is None else min(len(ring), most)
        pop = ring.popleft
        for start in range(0, count, EVENTS):
            events = [pop() for _ in range(min(EVENTS, count - start))]
            batches += batched(events)
            sleep(0)
            del events
            sleep(0)
        for batch in batches:
            self._removed += batch.nbytes
            self.counts[batch.model].taken += batch.count
        self._taken += count
        return batches

    def _fail(self, batches: Iterable[Batch]) -> None:
        for batch in batches:
            self.counts[batch.model].failed += batch.count

    def _tick(self) -> None:
        try:
            self.sink.tick()
        except Exception as exc:
            log.warning("payload sink failed to roll a file: %s", exc)

    # -- metrics -------------------------------------------------------------------------------

    def render(self) -> Iterable[str]:
        yield "# HELP modelport_payload_events_total Payload log events by outcome."
        yield "# TYPE modelport_payload_events_total counter"
        items = sorted(self.counts.items())
        for model, counts in items:
            for outcome in OUTCOMES:
                labels = _labels(model=model, outcome=outcome)
                yield f"modelport_payload_events_total{{{labels}}} {getattr(counts, outcome)}"
        yield "# HELP modelport_payload_queue_depth Payload log events waiting for the writer."
        yield "# TYPE modelport_payload_queue_depth gauge"
        for model, counts in items:
            yield f"modelport_payload_queue_depth{{{_labels(model=model)}}} {counts.depth}"


def redacted(tensors: dict[str, np.ndarray], options: PayloadOptions) -> dict[str, Any]:
    """``tensors`` with the redacted names left out and the hashed ones as one hex SHA-256 (16
    characters) per row."""
    if not options.redact and not options.hash:
        return tensors
    out: dict[str, Any] = {}
    for name, array in tensors.items():
        if name in options.redact:
            continue
        if name in options.hash:
            rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
            out[name] = np.array([hashlib.sha256(_row_bytes(r)).hexdigest()[:16] for r in rows],
                                 dtype=object)  # fmt: skip
        else:
            out[name] = array
    return out


def _row_bytes(row: np.ndarray) -> bytes:
    if row.dtype == object:
        return "\x1f".join(str(v) for v in row).encode()
    return np.ascontiguousarray(row).tobytes()


def now() -> float:
    return time.time()
