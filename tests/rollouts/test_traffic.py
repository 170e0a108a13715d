"""The split in the serving data plane, through the real app: sticky keys, overrides, stable
answering for a failing candidate, shadows compared online, bounded shadow queue, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from modelport import rollouts
from modelport.registry import Registry
from modelport.rollouts.compare import Comparison
from modelport.rollouts.gates import Gates
from modelport.rollouts.split import BUCKETS, Split, bucket
from tests.rollouts.conftest import fill, inputs

pytestmark = pytest.mark.anyio
LENIENT = Gates(max_error_rate=0.99, max_p99_ratio=1000, min_agreement=0.01, max_shift=1.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def versions(sqlite_registry: Registry, tmp_path) -> dict[str, int]:
    return fill(sqlite_registry, tmp_path / "models")


@contextlib.asynccontextmanager
async def served(registry: Registry, **config) -> AsyncIterator[tuple]:
    from modelport.serving.app import ServerOptions, build
    from modelport.serving.config import ServeConfig

    models, metrics, _plane, app = build(registry, ServeConfig(rollout_tick=0.05, **config),
                                         ServerOptions())  # fmt: skip
    await models.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://modelport") as client:
            yield models, client
    finally:
        await models.stop()


async def split_of(models) -> Split:
    for _ in range(400):
        model = models.get("digits")
        if isinstance(model, Split):
            return model
        await asyncio.sleep(0.025)
    raise AssertionError("the rollout never reached the model set")


def body(row: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                        "data": row.tolist()}]}  # fmt: skip


async def infer(client, row, path="/v2/models/digits/infer", **headers) -> np.ndarray:
    reply = await client.post(path, json=body(row), headers=headers)
    assert reply.status_code == 200, reply.text
    return np.array(reply.json()["outputs"][0]["data"], np.float32)


def offline(registry: Registry, version: int, x: np.ndarray) -> np.ndarray:
    runtime = rollouts_load(registry, version)
    try:
        return runtime.predict({"input": x})["probabilities"]
    finally:
        runtime.close()


def rollouts_load(registry: Registry, version: int):
    import modelport

    return modelport.load(f"digits:{version}", registry=registry)


def test_10000_keys_at_10_percent_and_raising_to_25_moves_only_stable_keys():
    salt = b"rollout-1"
    buckets = [bucket(f"user-{i}".encode(), salt) for i in range(10_000)]
    at10 = {i for i, b in enumerate(buckets) if b < 10 * BUCKETS // 100}
    at25 = {i for i, b in enumerate(buckets) if b < 25 * BUCKETS // 100}
    assert abs(len(at10) / 10_000 - 0.10) <= 0.01 and abs(len(at25) / 10_000 - 0.25) <= 0.01
    assert at10 <= at25  # every key on the candidate at 10% is still there at 25%
    code = (
        "from modelport.rollouts.split import bucket; "
        "print(','.join(str(bucket(f'user-{i}'.encode(), b'rollout-1')) for i in range(500)))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )  # fmt: skip  (another process: a replica, or a restart)
    assert fresh.stdout.strip() == ",".join(map(str, buckets[:500]))


async def test_keyed_requests_stick_and_weights_only_move_stable_keys(sqlite_registry, versions):
    reg = sqlite_registry
    x = inputs(1)[0]
    stable_out = offline(reg, 1, x[None])[0]
    r = rollouts.start(reg, "digits", f"digits:{versions['disagreeing']}",
                       plan="canary 10,25 600s", gates=LENIENT)  # fmt: skip
    async with served(reg) as (models, client):
        await split_of(models)

        async def on_candidate(key: str) -> bool:
            out = await infer(client, x, **{"X-Modelport-Key": key})
            return not np.allclose(out, stable_out, atol=1e-6)

        keys = [f"user-{i}" for i in range(400)]
        first = {k for k in keys if await on_candidate(k)}
        again = {k for k in keys if await on_candidate(k)}
        assert first == again and 0.04 < len(first) / len(keys) < 0.17
        expected = {k for k in keys if bucket(k.encode(), b"rollout-%d" % r.id) < 1000}
        assert first == expected
        reg.rollouts.update(rollouts.get(reg, "digits"), step=1)  # the controller's advance
        split = await split_of(models)
        for _ in range(100):
            if split.board.traffic.weight == 25:
                break
            await asyncio.sleep(0.02)
        raised = {k for k in keys if await on_candidate(k)}
        assert first < raised and 0.17 < len(raised) / len(keys) < 0.33


async def test_an_explicit_version_wins_over_the_split(sqlite_registry, versions):
    reg = sqlite_registry
    x = inputs(1)[0]
    stable_out, candidate_out = (offline(reg, v, x[None])[0] for v in (1, versions["disagreeing"]))
    rollouts.start(reg, "digits", f"digits:{versions['disagreeing']}", plan="canary 50 600s",
                   gates=LENIENT)  # fmt: skip
    async with served(reg) as (models, client):
        await split_of(models)
        for _ in range(20):
            out = await infer(client, x, **{"X-Modelport-Version": "candidate"})
            np.testing.assert_allclose(out, candidate_out, atol=1e-6)
            out = await infer(client, x, **{"X-Modelport-Version": "stable"})
            np.testing.assert_allclose(out, stable_out, atol=1e-6)
            out = await infer(client, x, "/v2/models/digits/versions/1/infer")
            np.testing.assert_allclose(out, stable_out, atol=1e-6)
        reply = await client.post("/v1/models/digits:predict",
                                  json={"instances": [x.tolist()]},
                                  headers={"X-Modelport-Version": "candidate"})  # fmt: skip
        np.testing.assert_allclose(reply.json()["predictions"][0], candidate_out, atol=1e-6)


async def test_a_failing_canary_is_answered_by_stable_and_counted(sqlite_registry, versions):
    reg = sqlite_registry
    x = inputs(200, seed=3)
    expected = offline(reg, 1, x)
    rollouts.start(reg, "digits", f"digits:{versions['failing']}", plan="canary 100 600s",
                   gates=LENIENT)  # fmt: skip
    async with served(reg) as (models, client):
        split = await split_of(models)
        for row, want in zip(x, expected, strict=True):
            np.testing.assert_allclose(await infer(client, row), want, atol=1e-6)
        candidate = split.board.totals.role("candidate")
        failing = int((x[:, 0] >= 0.8).sum())
        assert candidate.n == 200 and candidate.errors == failing > 0
        text = (await client.get("/metrics")).text
        assert ('modelport_rollout_requests_total{model="digits",rollout="1",role="candidate",'
                f'outcome="error"}} {failing}') in text  # fmt: skip


@pytest.mark.parametrize("runner", ["process", "thread"])
async def test_shadow_agreement_online_equals_offline_and_faults_reach_no_client(
    sqlite_registry, versions, runner
):
    reg = sqlite_registry
    x = inputs(300, seed=4)
    stable_out = offline(reg, 1, x)
    candidate_out = offline(reg, versions["disagreeing"], x)
    comparison = Comparison.for_signature(reg.resolve("digits:1").signature)
    agreed_offline = sum(
        comparison.compare({"probabilities": a[None]}, {"probabilities": b[None]})[0]
        for a, b in zip(stable_out, candidate_out, strict=True)
    )
    assert 0 < agreed_offline < 300
    rollouts.start(reg, "digits", f"digits:{versions['disagreeing']}", plan="shadow 100% 600s",
                   gates=LENIENT)  # fmt: skip
    async with served(reg, shadow_runner=runner) as (models, client):
        split = await split_of(models)
        await split.board.ready()  # a shadow process has opened the candidate
        for i, (row, want) in enumerate(zip(x, stable_out, strict=True)):
            np.testing.assert_allclose(await infer(client, row), want, atol=1e-6)
            if i % 50 == 49:  # agreement, not the queue bound (test_a_full_shadow_queue_...)
                await split.board.drained()
        await split.board.drained()
        totals = split.board.totals
        assert (totals.compared, totals.agreed, totals.dropped) == (300, agreed_offline, 0)
        assert totals.role("shadow").n == 300 and totals.role("candidate").n == 0
        text = (await client.get("/metrics")).text
        assert f'modelport_rollout_shadow_agreed_rows_total{{model="digits",rollout="1"}} ' \
               f"{agreed_offline}" in text  # fmt: skip
    rollouts.abort(reg, "digits")
    rollouts.start(reg, "digits", f"digits:{versions['failing']}", plan="shadow 100% 600s",
                   gates=LENIENT)  # fmt: skip
    async with served(reg, shadow_runner=runner) as (models, client):
        split = await split_of(models)
        await split.board.ready()
        replies = []
        for chunk in range(0, 300, 50):  # concurrent, in bursts the shadow queue can take
            replies += await asyncio.gather(*(client.post("/v2/models/digits/infer",
                                                          json=body(row))
                                              for row in x[chunk : chunk + 50]))  # fmt: skip
            await split.board.drained()
        assert [r.status_code for r in replies] == [200] * 300
        candidate = split.board.totals.role("shadow")
        assert split.board.totals.dropped == 0 and candidate.n == 300
        assert candidate.errors == int((x[:, 0] >= 0.8).sum()) > 0


async def test_shadow_copies_on_the_loop_wait_until_no_request_is_being_answered(
    sqlite_registry, versions
):
    reg = sqlite_registry
    rollouts.start(reg, "digits", f"digits:{versions['disagreeing']}", plan="shadow 100% 600s",
                   gates=LENIENT)  # fmt: skip
    async with served(reg, shadow_runner="loop") as (models, client):
        split = await split_of(models)
        board = split.board
        board.serving()  # a request of the model is being answered (held open by the test)
        x = inputs(5, seed=6)
        for row in x:
            assert (await client.post("/v2/models/digits/infer", json=body(row))).status_code == 200
        await asyncio.sleep(0.2)  # many loop turns: the copies are queued, none has run
        assert board.totals.role("shadow").n == 0 and board.totals.compared == 0
        board.served()
        await board.drained()
        assert board.totals.role("shadow").n == 5 and board.totals.compared == 5


@pytest.mark.parametrize("runner", ["process", "loop"])
async def test_a_full_shadow_queue_drops_and_counts(sqlite_registry, versions, runner):
    reg = sqlite_registry
    rollouts.start(reg, "digits", f"digits:{versions['slow']}", plan="shadow 100% 600s",
                   gates=LENIENT)  # fmt: skip
    async with served(reg, shadow_runner=runner) as (models, client):
        split = await split_of(models)
        await split.board.ready()
        if runner == "loop":
            split.board._queue = asyncio.Queue(4)
        else:
            split.board._runner.limit = 4  # copies out in the process at most
        x = inputs(200, seed=5)
        replies = await asyncio.gather(*(client.post("/v2/models/digits/infer", json=body(row))
                                         for row in x))  # fmt: skip
        assert all(r.status_code == 200 for r in replies)
        await split.board.drained()
        totals = split.board.totals
        assert totals.dropped > 0 and totals.role("shadow").n + totals.dropped == 200
        assert "modelport_rollout_shadow_dropped_total" in (await client.get("/metrics")).text


async def test_a_dead_shadow_process_fails_no_reply_and_copies_move_onto_the_loop(
    sqlite_registry, versions
):
    reg = sqlite_registry
    rollouts.start(reg, "digits", f"digits:{versions['disagreeing']}", plan="shadow 100% 600s",
                   gates=LENIENT)  # fmt: skip
    x = inputs(60, seed=11)
    async with served(reg, shadow_runner="process") as (models, client):
        board = (await split_of(models)).board
        await board.ready()
        runner = board._runner
        for row in x[:20]:
            assert (await client.post("/v2/models/digits/infer", json=body(row))).status_code == 200
        await board.drained()
        assert board.totals.compared == 20 and runner.failed is None
        # copies run in the idle scheduling class: preempted whenever the server wants a core
        assert os.sched_getscheduler(runner._proc.pid) == os.SCHED_IDLE
        runner._proc.kill()  # the candidate's process crashes while copies keep coming
        for row in x[20:30]:
            assert (await client.post("/v2/models/digits/infer", json=body(row))).status_code == 200
        for _ in range(200):
            if runner.failed is not None:
                break
            await asyncio.sleep(0.025)
        assert runner.failed is not None and "ended" in runner.failed
        for row in x[30:]:
            assert (await client.post("/v2/models/digits/infer", json=body(row))).status_code == 200
        await board.drained()
        shadow, compared = board.totals.role("shadow"), board.totals.compared
        assert shadow.n == 60 and shadow.errors == 60 - compared  # lost copies: the candidate's
        assert compared >= 50  # the copies after the crash was noticed ran on the loop
        text = (await client.get("/metrics")).text
        assert ('modelport_rollout_requests_total{model="digits",rollout="1",role="shadow",'
                f'outcome="error"}} {shadow.errors}') in text  # fmt: skip


async def test_grpc_metadata_keys_stick_like_headers(sqlite_registry, versions):
    import tritonclient.grpc as grpcclient

    from modelport.serving.grpc_v2 import start_grpc

    reg = sqlite_registry
    x = inputs(1)
    stable_out = offline(reg, 1, x)[0]
    r = rollouts.start(reg, "digits", f"digits:{versions['disagreeing']}",
                       plan="canary 30 600s", gates=LENIENT)  # fmt: skip
    async with served(reg) as (models, client):
        await split_of(models)
        server, port = await start_grpc(_plane(models), "127.0.0.1", 0)  # the kernel's pick
        try:
            keys = [f"k{i}" for i in range(60)]

            def call_all() -> set[str]:
                grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
                tensor = grpcclient.InferInput("input", [1, 4], "FP32")
                tensor.set_data_from_numpy(x)
                hits = set()
                for key in keys:
                    out = grpc.infer("digits", [tensor], headers={"x-modelport-key": key})
                    if not np.allclose(out.as_numpy("probabilities")[0], stable_out, atol=1e-6):
                        hits.add(key)
                grpc.close()
                return hits

            hits = await asyncio.get_running_loop().run_in_executor(None, call_all)
            for key in keys[:10]:  # the same key over REST lands on the same version
                out = await infer(client, x[0], **{"X-Modelport-Key": key})
                assert (key in hits) == (not np.allclose(out, stable_out, atol=1e-6))
        finally:
            await server.stop(grace=0.5)
    assert hits == {k for k in keys if bucket(k.encode(), b"rollout-%d" % r.id) < 3000}


def _plane(models):
    from modelport.serving.dataplane import DataPlane

    return DataPlane(models)


async def test_a_configured_input_keys_the_split_when_no_header_does(sqlite_registry, versions):
    reg = sqlite_registry
    r = rollouts.start(reg, "digits", f"digits:{versions['disagreeing']}",
                       plan="canary 50 600s", gates=LENIENT)  # fmt: skip
    x = inputs(60, seed=8)
    stable_out = offline(reg, 1, x)
    async with served(reg, rollout_key="input") as (models, client):
        await split_of(models)
        for _ in range(2):  # twice: a row's first value keys it, so each row sticks
            hits = [
                not np.allclose(await infer(client, row), want, atol=1e-6)
                for row, want in zip(x, stable_out, strict=True)
            ]
            salt = b"rollout-%d" % r.id
            assert hits == [bucket(str(row[0]).encode(), salt) < 5000 for row in x]
    assert 0 < sum(hits) < 60


def test_a_copy_frame_carries_numbers_and_strings_exactly():
    from modelport.rollouts.worker import _Frames, copy_frame, decode, frame

    inputs = {"input": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2],  # not contiguous
              "text": np.array([["héllo"], ["wörld"]], dtype=object), "ids": [[1, 2]]}  # fmt: skip
    body = copy_frame(inputs, {"probabilities": np.ones((3, 5), np.float16)})
    kind, got, primary = decode(memoryview(body)[4:])
    assert kind == "copy" and got.keys() == inputs.keys()
    np.testing.assert_array_equal(got["input"], inputs["input"])
    assert got["text"].tolist() == [["héllo"], ["wörld"]] and got["ids"].tolist() == [[1, 2]]
    assert primary["probabilities"].dtype == np.float16 and primary["probabilities"].shape == (3, 5)
    import os

    read, write = os.pipe()  # the process's side: frames read back one at a time from a pipe
    os.write(write, frame(("ready",)) + body)
    os.close(write)
    frames = _Frames(read)
    assert frames.next() == ("ready",) and frames.next()[0] == "copy" and frames.next() is None
    os.close(read)
