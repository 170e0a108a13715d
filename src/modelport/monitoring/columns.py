"""Payload events turned into columns by the writer: a few vectorized calls per batch.

    batches = batched(events)      # events as the request path queued them, grouped
    batch.table()                  # a pyarrow Table, one row per event (the Parquet sink)
    batch.events()                 # the events one at a time (the CloudEvents sink)

The request path queues each event as one tuple (``Queued``: references to the request's
decoded inputs and its outputs, which nothing writes to once the reply is built, and a few
scalars). ``batched`` groups what the writer took by model and tensor names (their ``kind``),
in order, and a ``Batch`` transposes its events in C (``zip``) into one list per column and one
list of arrays per tensor name; ``table`` joins each tensor's arrays' bytes in one
``bytes.join`` (one ``np.concatenate`` when their dtypes differ), takes the offsets from their
sizes in C, and hands the GIL back between columns, so the event loop never waits for more than
one column's conversion. A batch holds at most ``EVENTS`` events and, past its first, ``BYTES``
of tensors.
"""

from __future__ import annotations

import itertools
import operator
import os
from time import sleep
from typing import Any, NamedTuple

import numpy as np

EVENTS = 512
BYTES = 4 << 20  # of tensors: a batch past it ends early, so no one conversion holds the GIL long
_SIZE = operator.attrgetter("size")
_DTYPE = operator.attrgetter("dtype")
_MODEL, _INPUTS, _OUTPUTS = operator.itemgetter(3), operator.itemgetter(5), operator.itemgetter(6)
_NBYTES = operator.itemgetter(8)
# ids of events that came without one: unique per process start, made by the writer
_PREFIX = os.urandom(6).hex()
_SERIAL = itertools.count(1)


class Event(NamedTuple):
    time: float  # seconds since the epoch
    request_id: str
    traceparent: str | None
    model: str
    version: int
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    latency: float  # seconds


# what the request path queues: an Event's fields (request_id may be None), then the bytes of
# its tensors
Queued = tuple


def kind(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> tuple:
    """What the events of one batch share: their input and output names."""
    return tuple(inputs), tuple(outputs)


def batched(events: list[Queued]) -> list[Batch]:
    """``events`` grouped by model and kind, each group in order, in batches of ``EVENTS``.
    The usual case, one model and kind, costs C loops (``map``) only: one model, as many
    inputs and outputs in every event, and each of the first event's names found in all."""
    first = events[0]
    n_in, n_out = len(first[5]), len(first[6])
    if (all(map(first[3].__eq__, map(_MODEL, events)))
            and all(map(n_in.__eq__, map(len, map(_INPUTS, events))))
            and all(map(n_out.__eq__, map(len, map(_OUTPUTS, events))))):  # fmt: skip
        try:
            kind = tuple(first[5]), tuple(first[6])
            return [Batch(first[3], kind, chunk) for chunk in _chunks(events)]
        except KeyError:  # other names in some events
            pass
    groups: dict[tuple, list[Queued]] = {}
    for event in events:
        groups.setdefault((event[3], tuple(event[5]), tuple(event[6])), []).append(event)
    return [Batch(key[0], key[1:], chunk) for key, group in groups.items()
            for chunk in _chunks(group)]  # fmt: skip


def _chunks(group: list[Queued]) -> list[list[Queued]]:
    """``group`` in runs of at most ``EVENTS`` events and, past one event, ``BYTES``."""
    if len(group) <= EVENTS and sum(map(_NBYTES, group)) <= BYTES:
        return [group]
    chunks, start, size = [], 0, 0
    for i, nbytes in enumerate(map(_NBYTES, group)):
        if i > start and (i - start >= EVENTS or size + nbytes > BYTES):
            chunks.append(group[start:i])
            start, size = i, 0
        size += nbytes
    chunks.append(group[start:])
    return chunks


class Batch:
    __slots__ = ("model", "kind", "count", "nbytes", "times", "ids", "traceparents",
                 "versions", "latencies", "tensors", "serial")  # fmt: skip

    def __init__(self, model: str, kind: tuple, events: list[Queued]) -> None:
        """A batch of ``events`` of one model and kind (queued tuples)."""
        self.model, self.kind, self.count = model, kind, len(events)
        times, ids, traceparents, _, versions, inputs, outputs, latencies, sizes = zip(
            *events, strict=True
        )
        self.times, self.traceparents, self.versions, self.latencies = (
            times, traceparents, versions, latencies)  # fmt: skip
        self.serial = 0
        if not any(ids):  # none came with an id: "<process>-<batch>-<n>", made in C by table()
            ids, self.serial = None, next(_SERIAL)
        elif not all(ids):
            ids = [i or f"{_PREFIX}-{next(_SERIAL)}" for i in ids]
        self.ids = ids
        self.nbytes = sum(sizes)
        self.tensors = [list(map(operator.itemgetter(n), inputs)) for n in kind[0]] + [
            list(map(operator.itemgetter(n), outputs)) for n in kind[1]]  # fmt: skip

    def rows(self) -> np.ndarray:
        """The first input's rows per event (1 for a scalar or no input)."""
        if not self.kind[0]:
            return np.ones(self.count, np.int32)
        first = self.tensors[0]
        try:
            return np.fromiter(map(len, first), np.int32, len(first))
        except TypeError:  # a scalar
            return np.array([a.shape[0] if a.ndim else 1 for a in first], np.int32)

    def table(self) -> Any:
        """One row per event: ``time``, ``request_id``, ``trace_id``, ``model``, ``version``,
        ``latency_ms``, ``rows``, then ``input.<name>``/``output.<name>`` as list columns of
        each tensor's values flattened."""
        import pyarrow as pa

        from modelport.monitoring.payload import trace_id

        columns: dict[str, Any] = {
            "time": pa.array((np.asarray(self.times) * 1e6).astype(np.int64),
                             pa.timestamp("us", tz="UTC")),
            "request_id": self._id_column(),
        }  # fmt: skip
        sleep(0)  # hand the GIL back to the event loop between steps of a few hundred us
        columns |= {
            "trace_id": pa.array([trace_id(t) if t else "" for t in self.traceparents]
                                 if any(self.traceparents) else [""] * self.count, pa.string()),
            "model": pa.repeat(self.model, self.count),
            "version": pa.array(np.asarray(self.versions, np.int32)),
            "latency_ms": pa.array(np.asarray(self.latencies) * 1e3),
            "rows": pa.array(self.rows()),
        }  # fmt: skip
        names = [f"input.{n}" for n in self.kind[0]] + [f"output.{n}" for n in self.kind[1]]
        for name, arrays in zip(names, self.tensors, strict=True):
            sleep(0)  # hand the GIL back to the event loop between columns
            columns[name] = _list_column(arrays)
        return pa.table(columns)

    def _id_column(self) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.ids is not None:
            return pa.array(self.ids, pa.string())
        numbers = pc.cast(pa.array(np.arange(self.count)), pa.string())
        return pc.binary_join_element_wise(f"{_PREFIX}-{self.serial}-", numbers, "")

    def events(self) -> list[Event]:
        """The events again, each with its own arrays."""
        n_in = len(self.kind[0])
        ids = self.ids or [f"{_PREFIX}-{self.serial}-{e}" for e in range(self.count)]
        out = []
        for e in range(self.count):
            arrays = [t[e] for t in self.tensors]
            out.append(Event(self.times[e], ids[e], self.traceparents[e], self.model,
                             self.versions[e], dict(zip(self.kind[0], arrays[:n_in], strict=True)),
                             dict(zip(self.kind[1], arrays[n_in:], strict=True)),
                             self.latencies[e]))  # fmt: skip
        return out


def _list_column(arrays: list[np.ndarray]) -> Any:
    """One list per event of a tensor's flattened values: when the arrays share a numeric dtype
    and are C-contiguous (the usual case), their bytes joined in one call."""
    import pyarrow as pa

    offsets = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum(np.fromiter(map(_SIZE, arrays), np.int64, len(arrays)), out=offsets[1:])
    flat = None
    dtypes = set(map(_DTYPE, arrays))
    dtype = dtypes.pop() if len(dtypes) == 1 else None
    if dtype is not None and dtype.kind in "biufc":
        try:
            flat = np.frombuffer(b"".join(arrays), dtype)
        except TypeError:  # an array that is not C-contiguous
            pass
    if flat is None:
        flat = np.concatenate([a.reshape(-1) for a in arrays])
    if flat.dtype.kind in "OUS":  # text: one Python string per value
        values = pa.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                           for v in flat], pa.string())  # fmt: skip
    else:
        values = pa.array(flat)
    return pa.ListArray.from_arrays(pa.array(offsets), values)
