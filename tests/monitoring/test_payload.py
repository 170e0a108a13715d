"""Payload logging in the real app: Parquet files, CloudEvents to a real HTTP collector, and
sinks that are dead, slow or unwritable (requests unaffected, every event counted)."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from modelport.monitoring.monitor import MonitorOptions
from modelport.monitoring.payload import PayloadOptions, trace_id
from tests.monitoring.conftest import TRACEPARENT, infer_body, metric, monitored_app

pytestmark = pytest.mark.anyio
X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8


async def counts(client, model: str = "mlp") -> dict[str, float]:
    text = (await client.get("/metrics")).text
    found = {o: metric(text, "modelport_payload_events_total", model=model, outcome=o)
             for o in ("sent", "dropped", "failed")}  # fmt: skip
    found["depth"] = metric(text, "modelport_payload_queue_depth", model=model)
    return found


async def settled(client, total: int, seconds: float = 30.0) -> dict[str, float]:
    """The payload counters once every event is accounted for (bounded wait)."""
    deadline = time.monotonic() + seconds
    while True:
        found = await counts(client)
        done = sum(found[o] or 0 for o in ("sent", "dropped", "failed"))
        if (done == total and found["depth"] == 0) or time.monotonic() > deadline:
            return found
        await anyio.sleep(0.05)


def read_log(folder: Path):
    import pyarrow.parquet as pq

    files = sorted(folder.glob("mlp/[!.]*.parquet"))
    assert files and not list(folder.glob("mlp/.*")), "only whole files stay after a stop"
    return pq.ParquetDataset(files).read(), files


async def test_parquet_log_holds_every_request(monitored_registry, tmp_path: Path) -> None:
    options = MonitorOptions(payload_log=str(tmp_path / "log"))
    async with monitored_app(monitored_registry, options) as (client, _monitor):
        for i in range(30):
            headers = {"traceparent": TRACEPARENT if i % 2 else "00-garbage-01"}
            reply = await client.post("/v2/models/mlp/infer", json=infer_body(X * i, f"r{i}"),
                                      headers=headers)  # fmt: skip
            assert reply.status_code == 200
        await client.post("/v2/models/mlp/infer", json=infer_body(X))  # no id: one is made
        found = await settled(client, 31)
        assert found == {"sent": 31, "dropped": 0, "failed": 0, "depth": 0}
    table, _ = read_log(tmp_path / "log")
    rows = table.sort_by("time").to_pylist()
    assert len(rows) == 31
    first, second = rows[0], rows[1]
    assert first["request_id"] == "r0" and first["trace_id"] == ""  # malformed: ignored
    assert second["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert (first["model"], first["version"], first["rows"]) == ("mlp", 1, 2)
    assert second["latency_ms"] > 0
    np.testing.assert_allclose(second["input.input"], (X * 1).ravel())
    probabilities = np.asarray(second["output.probabilities"]).reshape(2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9]+", rows[-1]["request_id"])  # made for it


async def test_redaction_hashing_and_rolling(monitored_registry, tmp_path: Path) -> None:
    payload = PayloadOptions(redact=("probabilities",), hash=("input",))
    options = MonitorOptions(payload_log=str(tmp_path / "log"), payload=payload,
                             roll_bytes=1, roll_seconds=3600)  # fmt: skip
    async with monitored_app(monitored_registry, options) as (client, _monitor):
        for i in range(3):
            await client.post("/v2/models/mlp/infer", json=infer_body(X, f"r{i}"))
            await settled(client, i + 1)  # one write each: each file rolls past 1 byte
    table, files = read_log(tmp_path / "log")
    assert len(files) == 3
    assert "output.probabilities" not in table.column_names
    hashed = table.column("input.input").to_pylist()
    assert hashed[0] == hashed[1] and len(hashed[0]) == 2 and len(hashed[0][0]) == 16
    assert hashed[0][0] != hashed[0][1]  # one digest per row
    assert "0.125" not in json.dumps(table.to_pylist(), default=str)


async def test_files_roll_by_age(monitored_registry, tmp_path: Path) -> None:
    options = MonitorOptions(payload_log=str(tmp_path / "log"), roll_seconds=0.3)
    async with monitored_app(monitored_registry, options) as (client, _monitor):
        await client.post("/v2/models/mlp/infer", json=infer_body(X, "a"))
        await settled(client, 1)
        deadline = time.monotonic() + 10
        while not list((tmp_path / "log" / "mlp").glob("[!.]*.parquet")):
            assert time.monotonic() < deadline, "the first file was never rolled"
            await anyio.sleep(0.05)
        await client.post("/v2/models/mlp/infer", json=infer_body(X, "b"))
        await settled(client, 2)
    table, files = read_log(tmp_path / "log")
    assert len(files) == 2 and table.num_rows == 2


class Collector(http.server.ThreadingHTTPServer):
    """A CloudEvents receiver on loopback: keeps each POST's headers and body."""

    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.delay = delay
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(outer.delay)
                outer.received.append((dict(self.headers.items()), body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/events"


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_cloudevents_in_binary_mode(monitored_registry, collector: Collector) -> None:
    options = MonitorOptions(payload_log=collector.url)
    async with monitored_app(monitored_registry, options) as (client, _monitor):
        for i in range(3):
            await client.post("/v2/models/mlp/infer", json=infer_body(X, f"ev{i}"),
                              headers={"traceparent": TRACEPARENT})  # fmt: skip
        found = await settled(client, 3)
    assert found["sent"] == 3 and len(collector.received) == 6
    headers = [{k.lower(): v for k, v in h.items()} for h, _ in collector.received]
    types = [h["ce-type"] for h in headers]
    assert types.count("org.kubeflow.serving.inference.request") == 3
    assert types.count("org.kubeflow.serving.inference.response") == 3
    for h in headers:
        assert h["ce-specversion"] == "1.0" and h["ce-id"].startswith("ev")
        assert h["ce-source"].endswith("/v2/models/mlp") and h["ce-inferenceservicename"] == "mlp"
        assert h["ce-modelversion"] == "1" and h["ce-time"].endswith("Z")
        assert trace_id(h["ce-traceparent"]) == "0af7651916cd43dd8448eb211c80319c"
        assert float(h["ce-latencyms"]) > 0 and h["content-type"] == "application/json"
    request = json.loads(collector.received[0][1])
    assert request["id"] == "ev0" and request["inputs"][0]["shape"] == [2, 4]
    reply = json.loads(collector.received[1][1])
    assert reply["model_name"] == "mlp" and reply["outputs"][0]["name"] == "probabilities"


@pytest.mark.parametrize("sink", ["dead", "slow", "unwritable"])
async def test_a_failing_sink_never_fails_a_request(monitored_registry, tmp_path: Path,
                                                    sink: str) -> None:  # fmt: skip
    slow = None
    bound = socket.socket()  # bound and not listening: refused, and no other process takes it
    bound.bind(("127.0.0.1", 0))
    if sink == "dead":
        dest = f"http://127.0.0.1:{bound.getsockname()[1]}/events"
    elif sink == "slow":
        slow = Collector(delay=0.05)
        threading.Thread(target=slow.serve_forever, daemon=True).start()
        dest = slow.url
    else:
        (tmp_path / "a-file").write_text("not a folder")
        dest = str(tmp_path / "a-file")
    options = MonitorOptions(payload_log=dest, payload=PayloadOptions(capacity=20))
    total = 150
    try:
        async with monitored_app(monitored_registry, options) as (client, _monitor):
            async with anyio.create_task_group() as group:
                for i in range(total):
                    group.start_soon(_infer_ok, client, f"{sink}{i}")
            found = await settled(client, total)
    finally:
        bound.close()
        if slow is not None:
            slow.shutdown()
            slow.server_close()
    assert found["sent"] + found["dropped"] + found["failed"] == total
    assert found["depth"] == 0 and found["dropped"] > 0
    if sink != "slow":
        assert found["sent"] == 0 and found["failed"] > 0


async def _infer_ok(client, request_id: str) -> None:
    reply = await client.post("/v2/models/mlp/infer", json=infer_body(X, request_id))
    assert reply.status_code == 200


async def test_sampling_logs_a_share(monitored_registry, tmp_path: Path) -> None:
    options = MonitorOptions(payload_log=str(tmp_path / "log"),
                             payload=PayloadOptions(sample=0.25))  # fmt: skip
    async with monitored_app(monitored_registry, options) as (client, _monitor):
        for i in range(400):
            await client.post("/v2/models/mlp/infer", json=infer_body(X, f"s{i}"))
        found = await counts(client)
    assert 40 <= found["sent"] + found["depth"] <= 160  # binomial(400, 0.25): 100 +- 6 sd


def test_trace_ids_only_from_valid_traceparents() -> None:
    assert trace_id(TRACEPARENT) == "0af7651916cd43dd8448eb211c80319c"
    for bad in (None, "", "00-garbage-01", "ff" + TRACEPARENT[2:],
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                "00-0AF7651916CD43DD8448EB211C8031ZZ-b7ad6b7169203331-01"):  # fmt: skip
        assert trace_id(bad) == ""


def test_events_whose_tensors_change_are_written_whole(tmp_path: Path) -> None:
    """Events of one model with other tensors (a version with an extra input) and other dtypes,
    interleaved, past a full batch: a file per set of tensor names, every event in one, its
    values and shapes as they came (Parquet, and the events the CloudEvents sink sends)."""
    import pyarrow.parquet as pq

    from modelport.monitoring.columns import EVENTS
    from modelport.monitoring.payload import PayloadLogger
    from modelport.monitoring.sinks import ParquetSink

    rng = np.random.default_rng(0)
    total, first = EVENTS + 6, EVENTS + 3  # integers from the second batch on
    sent = []
    for i in range(total):
        x = rng.random((1 + i % 3, 4), np.float32)
        inputs = {"input": (x * 100).astype(np.int64) if i >= first else x}
        if i % 50 == 7:
            inputs["mask"] = np.ones(len(x), np.int64)
        sent.append((f"e{i}", inputs, {"label": np.array(i)}))
    logger = PayloadLogger(ParquetSink(str(tmp_path), PayloadOptions()), PayloadOptions())
    for request_id, inputs, outputs in sent:
        logger.offer(time.time(), request_id, None, "mlp", 1, inputs, outputs, 0.001)
    assert [e[1] for e in logger._ring] == [s[0] for s in sent]  # in order
    logger.start()
    logger.stop()
    assert logger.counts["mlp"].sent == total and logger.counts["mlp"].failed == 0
    files = sorted((tmp_path / "mlp").glob("[!.]*.parquet"))
    tables = [pq.read_table(f) for f in files]
    assert len(files) > 2 and sum(t.num_rows for t in tables) == total
    assert {"input.mask" in t.column_names for t in tables} == {True, False}
    rows = {r["request_id"]: r for t in tables for r in t.to_pylist()}
    for request_id, inputs, outputs in sent:
        row = rows[request_id]
        assert row["rows"] == len(inputs["input"]) and row["output.label"] == [outputs["label"]]
        np.testing.assert_allclose(row["input.input"], inputs["input"].ravel(), rtol=1e-6)


def test_the_writer_batches_by_events_and_bytes_in_order() -> None:
    """Events as the request path queues them: runs of at most EVENTS events, and of BYTES of
    tensors past the first event; other tensor names in a separate batch; the order kept."""
    from modelport.monitoring.columns import BYTES, EVENTS, batched

    def queued(i: int, array: np.ndarray, name: str = "x") -> tuple:
        return (time.time(), f"r{i}", None, "mlp", 1, {name: array}, {}, 0.001, array.nbytes)

    big = np.zeros((1, BYTES // 3 // 4), np.float32)  # three fit in BYTES
    small = np.zeros((1, 4), np.float32)
    events = [queued(i, big) for i in range(7)] + [queued(7, small, "other")]
    events += [queued(i, small) for i in range(8, 8 + EVENTS + 3)]
    batches = batched(events)
    assert [(b.kind[0], b.count) for b in batches] == [
        (("x",), 3),
        (("x",), 3),
        (("x",), EVENTS),
        (("x",), 4),
        (("other",), 1),
    ]  # the third: the last big one and 511 small
    assert all(b.nbytes <= BYTES or b.count == 1 for b in batches[:2])
    ids = [i for b in batches if b.kind[0] == ("x",) for i in b.ids]
    assert ids == [e[1] for e in events if "x" in e[5]]
