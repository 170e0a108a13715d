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
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from modelport.errors import InvalidInput, MissingDependency
from modelport.monitoring.columns import Batch, Event, kind
from modelport.monitoring.payload import PayloadOptions, trace_id

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
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
        _warm_up()

    def write(self, batches: list[Batch]) -> None:
        """A table per batch (a few vectorized calls each), handing the GIL back between
        them; consecutive tables of one model and schema go in one row group."""
        import pyarrow as pa

        groups: dict[str, list[Batch]] = {}
        for batch in batches:
            groups.setdefault(batch.model, []).append(batch)
        for model, group in groups.items():
            pending: list[Any] = []
            for batch in group:
                table = batch.table()
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


def _warm_up() -> None:
    """Convert and encode one event in memory: Arrow's first table and Parquet write import
    modules and build kernels (hundreds of ms under the GIL), here at start-up, not while
    serving."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tensors = {"x": np.zeros((1, 2), np.float32)}
    event = (time.time(), None, None, "warm-up", 1, tensors, tensors, 0.0, 16)
    batch = Batch("warm-up", kind(tensors, tensors), [event])
    pq.write_table(batch.table(), pa.BufferOutputStream(), compression="zstd")


class _File:
    __slots__ = ("handle", "writer", "schema", "path", "final", "started")

    def __init__(self, handle: Any, writer: Any, schema: Any, path: str, final: str,
                 started: float) -> None:  # fmt: skip
        self.handle, self.writer, self.schema = handle, writer, schema
        self.path, self.final, self.started = path, final, started

    def size(self) -> int:
        """Bytes written so far (the row groups; the footer comes at close)."""
        return os.path.getsize(self.path) if self.handle is None else self.handle.tell()


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

    def write(self, batches: list[Batch]) -> None:
        import orjson

        for event in (e for batch in batches for e in batch.events()):
            request = {"id": event.request_id, "inputs": _v2_tensors(event.inputs)}
            reply = {"model_name": event.model, "model_version": str(event.version),
                     "id": event.request_id, "outputs": _v2_tensors(event.outputs)}  # fmt: skip
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
        if trace_id(event.traceparent):
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
