"""Where payload events go: Parquet files rolled by size and age, or HTTP CloudEvents.

    sink = open_sink("/var/log/modelport")           # a folder, or any fsspec URL (s3://...)
    sink = open_sink("http://collector:8000/events")  # CloudEvents, binary mode, as KServe sends
    sink.write(events); sink.tick(); sink.close()

Parquet: one folder per model, ``<dest>/<model>/<UTC time>-<pid>-<n>.parquet``; one row per
event: ``time``, ``request_id``, ``trace_id``, ``model``, ``version``, ``latency_ms``, ``rows``,
then ``input.<name>`` and ``output.<name>`` holding each tensor's values flattened (a list per
event). A file is closed and a new one started past ``roll_bytes`` or ``roll_seconds``, or when
the tensors change; local files are written under a dot-name and renamed when closed, so readers
only see whole files.

CloudEvents: two POSTs per event, the request (``org.kubeflow.serving.inference.request``, a V2
request body) and the reply (``...response``, a V2 response body), with ``ce-specversion``,
``ce-id`` (the request id), ``ce-type``, ``ce-source``, ``ce-time``, ``ce-inferenceservicename``,
``ce-modelversion``, ``ce-latencyms`` and, when the request had one, ``ce-traceparent``.
"""

from __future__ import annotations

import http.client
import operator
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from modelport.errors import InvalidInput, MissingDependency
from modelport.monitoring.payload import Event, PayloadOptions, redacted, trace_id

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
SLICE = 256  # events turned into columns between two hand-backs of the GIL
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


def open_sink(dest: str, options: PayloadOptions | None = None, **kwargs: Any) -> Any:
    options = options or PayloadOptions()
    if dest.startswith(("http://", "https://")):
        return CloudEventsSink(dest, options, **kwargs)
    return ParquetSink(dest, options, **kwargs)


class ParquetSink:
    def __init__(self, dest: str, options: PayloadOptions, roll_bytes: int = 64 << 20,
                 roll_seconds: float = 300.0) -> None:  # fmt: skip
        try:
            import fsspec
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise MissingDependency(exc.name or "pyarrow", "monitoring") from None
        self.fs, self.root = fsspec.core.url_to_fs(dest)
        self.local = "file" in self.fs.protocol if isinstance(self.fs.protocol, tuple) else (
            self.fs.protocol == "file")  # fmt: skip
        self.options = options
        self.roll_bytes, self.roll_seconds = roll_bytes, roll_seconds
        self._open: dict[str, _File] = {}
        self._seq = 0

    def write(self, events: list[Event]) -> None:
        """Columns built ``SLICE`` events at a time, handing the GIL back between slices (the
        event loop never waits long for this thread, even when the OS preempts it); one row
        group per model and kind of tensors."""
        import pyarrow as pa

        groups: dict[str, list[Event]] = {}
        for event in events:
            groups.setdefault(event.model, []).append(event)
        for model, group in groups.items():
            pending: list[Any] = []
            for start in range(0, len(group), SLICE):
                table = self._table(group[start : start + SLICE])
                if pending and not pending[0].schema.equals(table.schema):
                    self._append(model, pa.concat_tables(pending))
                    pending = []
                pending.append(table)
                time.sleep(0)
            self._append(model, pa.concat_tables(pending))

    def _append(self, model: str, table: Any) -> None:
        current = self._open.get(model)
        if current is not None and not current.schema.equals(table.schema):
            self._close(model)
            current = None
        if current is None:
            current = self._open[model] = self._start(model, table.schema)
        current.writer.write_table(table)
        if current.size() >= self.roll_bytes:
            self._close(model)

    def tick(self) -> None:
        for model in [m for m, f in self._open.items()
                      if time.monotonic() - f.started >= self.roll_seconds]:  # fmt: skip
            self._close(model)

    def close(self) -> None:
        for model in list(self._open):
            self._close(model)

    def _table(self, events: list[Event]) -> Any:
        """One row per event; the tensors' values as list columns, built a column at a time."""
        import pyarrow as pa

        times, ids, traces, _, versions, inputs, outputs, latencies, _ = zip(*events, strict=True)
        columns: dict[str, Any] = {
            "time": pa.array((np.array(times) * 1e6).astype(np.int64),
                             pa.timestamp("us", tz="UTC")),
            "request_id": pa.array(ids, pa.string()),
            "trace_id": pa.array([trace_id(t) if t else "" for t in traces], pa.string()),
            "model": pa.array([events[0].model] * len(events), pa.string()),
            "version": pa.array(versions, pa.int32()),
            "latency_ms": pa.array(np.array(latencies) * 1e3, pa.float64()),
            "rows": None,
        }  # fmt: skip
        masking = self.options.redact or self.options.hash
        first = _pick(inputs, next(iter(inputs[0]), None))
        try:
            columns["rows"] = pa.array(list(map(len, first)), pa.int32())
        except TypeError:  # a scalar input: one row
            columns["rows"] = pa.array([a.shape[0] if a.ndim else 1 for a in first], pa.int32())
        for prefix, tensors in (("input", inputs), ("output", outputs)):
            if masking:
                tensors = [redacted(t, self.options) for t in tensors]
            for name in tensors[0]:
                columns[f"{prefix}.{name}"] = _list_column(_pick(tensors, name))
        return pa.table(columns)

    def _start(self, model: str, schema: Any) -> _File:
        import pyarrow.parquet as pq

        folder = f"{self.root.rstrip('/')}/{model}"
        self.fs.makedirs(folder, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{os.getpid()}-{self._seq}.parquet"
        final = f"{folder}/{name}"
        path = f"{folder}/.{name}" if self.local else final
        # a local file is written by Arrow itself, without the GIL; others through fsspec
        handle = None if self.local else self.fs.open(path, "wb")
        writer = pq.ParquetWriter(  # no dictionaries nor statistics for tensor values: costly
            path if handle is None else handle, schema, compression="zstd",
            use_dictionary=["model", "trace_id"],
            write_statistics=["time", "version", "latency_ms", "rows"],
        )  # fmt: skip
        return _File(handle, writer, schema, path, final, time.monotonic())

    def _close(self, model: str) -> None:
        current = self._open.pop(model)
        current.writer.close()
        if current.handle is not None:
            current.handle.close()
        if current.path != current.final:
            self.fs.mv(current.path, current.final)


class _File:
    __slots__ = ("handle", "writer", "schema", "path", "final", "started")

    def __init__(self, handle: Any, writer: Any, schema: Any, path: str, final: str,
                 started: float) -> None:  # fmt: skip
        self.handle, self.writer, self.schema = handle, writer, schema
        self.path, self.final, self.started = path, final, started

    def size(self) -> int:
        """Bytes written so far (the row groups; the footer comes at close)."""
        return os.path.getsize(self.path) if self.handle is None else self.handle.tell()


def _pick(tensors: tuple[dict, ...] | list[dict], name: Any) -> list:
    """``name``'s array of each event (None where an event lacks it)."""
    try:
        return list(map(operator.itemgetter(name), tensors))
    except KeyError:
        return [t.get(name) for t in tensors]


def _list_column(arrays: list[np.ndarray | None]) -> Any:
    """One list per event of a tensor's flattened values (null where an event lacks it)."""
    import pyarrow as pa

    present = [a for a in arrays if a is not None]
    dtype = np.result_type(*{a.dtype for a in present}) if present else np.dtype("float32")
    offsets = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum(np.array([0 if a is None else a.size for a in arrays], np.int64), out=offsets[1:])
    if dtype.kind in "OUS":
        values = pa.array([str(v) if not isinstance(v, bytes) else v.decode("utf-8", "replace")
                           for a in present for v in a.ravel()], pa.string())  # fmt: skip
    elif not present:
        values = pa.array(np.zeros(0, dtype))
    else:
        try:  # one copy when the events share their trailing dimensions (the usual case)
            flat = np.concatenate(present).reshape(-1)
        except ValueError:
            flat = np.concatenate([a.reshape(-1) for a in present])
        values = pa.array(flat.astype(dtype, copy=False))
    mask = pa.array([a is None for a in arrays]) if len(present) < len(arrays) else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


class CloudEventsSink:
    def __init__(self, url: str, options: PayloadOptions, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise InvalidInput(f"payload log URL {url!r} has no host")
        self.url, self.options, self.timeout = url, options, timeout
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._conn: http.client.HTTPConnection | None = None
        self._source = f"http://{socket.gethostname()}/v2/models/"

    def write(self, events: list[Event]) -> None:
        import orjson

        for event in events:
            inputs = redacted(event.inputs, self.options)
            outputs = redacted(event.outputs, self.options)
            request = {"id": event.request_id, "inputs": _v2_tensors(inputs)}
            reply = {"model_name": event.model, "model_version": str(event.version),
                     "id": event.request_id, "outputs": _v2_tensors(outputs)}  # fmt: skip
            headers = self._headers(event)
            self._post(orjson.dumps(request), {**headers, "ce-type": REQUEST_TYPE})
            self._post(orjson.dumps(reply), {**headers, "ce-type": RESPONSE_TYPE})

    def _headers(self, event: Event) -> dict[str, str]:
        stamp = datetime.fromtimestamp(event.time, UTC).isoformat().replace("+00:00", "Z")
        headers = {
            "content-type": "application/json", "ce-specversion": "1.0",
            "ce-id": event.request_id, "ce-source": self._source + event.model,
            "ce-time": stamp, "ce-inferenceservicename": event.model,
            "ce-modelversion": str(event.version), "ce-latencyms": f"{event.latency * 1e3:.3f}",
        }  # fmt: skip
        if event.trace_id:
            headers["ce-traceparent"] = event.traceparent.strip()
        return headers

    def _post(self, body: bytes, headers: dict[str, str]) -> None:
        """One POST on the kept-alive connection; a broken connection is reopened once."""
        for attempt in (0, 1):
            conn = self._conn
            if conn is None:
                kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                conn = self._conn = kind(self._host, self._port, timeout=self.timeout)
            try:
                conn.request("POST", self._path, body, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            if response.status >= 300:
                raise OSError(f"the payload collector answered {response.status}")
            return

    def tick(self) -> None:
        pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _v2_tensors(tensors: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    from modelport.serving.codecs import datatype_of

    out = []
    for name, array in tensors.items():
        datatype = "BYTES" if array.dtype == object else datatype_of(array)
        data = array.ravel().tolist()
        out.append({"name": name, "datatype": datatype, "shape": list(array.shape), "data": data})
    return out
