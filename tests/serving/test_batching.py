"""Dynamic batching with real ONNX Runtime sessions."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import BackendError, InvalidInput, ModelportError
from modelport.monitoring.metrics import Metrics
from modelport.runtimes.onnx import OnnxRuntime
from modelport.serving.batching import Batcher, check_batchable
from modelport.serving.config import BatchConfig
from modelport.signature import Signature, TensorSpec
from tests.conftest import make_mlp_onnx
from tests.serving.conftest import save_graph
from tests.serving.test_models import Recording, add_version, expected, running


def gather_onnx(path: Path) -> Path:
    """indices int64[batch] -> table rows float32[batch, 3]; an index past 9 fails at run time."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(30, dtype=np.float32).reshape(10, 3)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "indices"], ["rows"], axis=0)], "lookup",
        [helper.make_tensor_value_info("indices", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(table, "table")],
    )  # fmt: skip
    return save_graph(graph, path)


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(2)
    yield executor
    executor.shutdown()


def batcher_for(path: Path, pool, max_batch_size: int, delay_us: int) -> Batcher:
    runtime = Recording(OnnxRuntime.load(path))
    series = Metrics().model_series("m", 1)
    return Batcher(runtime, BatchConfig(max_batch_size, delay_us), pool, series)


def test_concurrent_requests_are_merged_and_split_back(tmp_path, pool):
    path = make_mlp_onnx(tmp_path / "mlp.onnx", seed=5)
    batcher = batcher_for(path, pool, max_batch_size=16, delay_us=50_000)
    rng = np.random.default_rng(0)
    requests = [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32)
                for _ in range(40)]  # fmt: skip
    direct = OnnxRuntime.load(path)

    async def main():
        return await asyncio.gather(*(batcher.predict({"input": x}) for x in requests))

    results = asyncio.run(main())
    calls = batcher.runtime.calls
    assert len(calls) < len(requests) / 3, f"expected merged calls, got {calls}"
    assert max(calls) <= 16 and max(calls) > 3
    assert sum(calls) == sum(len(x) for x in requests)
    for x, out in zip(requests, results, strict=True):
        assert out["probabilities"].shape == (len(x), 3)
        np.testing.assert_allclose(
            out["probabilities"], direct.predict({"input": x})["probabilities"], rtol=1e-5
        )
    assert threading.get_ident() not in batcher.runtime.threads  # never on the event loop
    series = batcher._series
    assert series.batch_size.count == len(calls) and series.batch_size.sum == sum(calls)
    assert series.queue.count == len(requests)


def test_batches_run_when_full_or_when_the_runtime_is_idle_without_waiting(tmp_path, pool):
    path = make_mlp_onnx(tmp_path / "mlp.onnx")
    batcher = batcher_for(path, pool, max_batch_size=4, delay_us=60_000_000)  # a minute
    x = np.ones((1, 4), np.float32)

    async def main():
        async with asyncio.timeout(20):  # nothing may wait for the minute
            await batcher.predict({"input": x})  # alone, nothing running: at once
            # seven at once: four fill a batch that goes at once; while it runs, three gather
            # and go as soon as the runtime is idle again
            await asyncio.gather(*(batcher.predict({"input": x}) for _ in range(7)))

    asyncio.run(main())
    assert batcher.runtime.calls == [1, 4, 3]


def test_a_failing_batch_fails_only_the_bad_request(tmp_path, pool):
    batcher = batcher_for(gather_onnx(tmp_path / "lookup.onnx"), pool, 8, delay_us=50_000)
    indices = [[0], [1, 2], [99], [3]]

    async def main():
        return await asyncio.gather(
            *(batcher.predict({"indices": np.array(i, np.int64)}) for i in indices),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    # one merged call of five rows fails; then each request runs alone
    assert batcher.runtime.calls == [5, 1, 2, 1, 1]
    assert isinstance(results[2], ModelportError) and results[2].status in (400, 500)
    for i, result in zip(indices, results, strict=True):
        if i != [99]:
            np.testing.assert_array_equal(
                result["rows"], np.arange(30, dtype=np.float32).reshape(10, 3)[i]
            )


def test_bad_input_never_reaches_a_batch(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, seed=4, alias="production")
    rng = np.random.default_rng(1)
    good = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(24)]
    bad = [np.zeros((1, 5), np.float32), np.zeros((4,), np.float32), np.array([["x"] * 4])]

    async def main():
        batching = {"digits": BatchConfig(max_batch_size=8, max_queue_delay_us=20_000)}
        async with running(reg, batching=batching) as models:
            model = models.get("digits")
            calls = [model.infer({"input": x}, "rest") for x in good + bad]
            results = await asyncio.gather(*calls, return_exceptions=True)
            return results, models.metrics.model_series("digits", 1)

    results, series = asyncio.run(main())
    for x, out in zip(good, results[: len(good)], strict=True):
        np.testing.assert_allclose(out["probabilities"], expected(reg, "digits:1", x), rtol=1e-5)
    assert all(isinstance(r, InvalidInput) for r in results[len(good) :])
    assert series.batch_size.sum == len(good)  # only valid rows were batched
    assert series.batch_size.count < len(good)


def test_slow_inference_leaves_the_event_loop_free(sqlite_registry):
    reg = sqlite_registry
    add_version(reg, alias="production", n_in=1024, n_hidden=4096)
    x = np.ones((512, 1024), np.float32)

    async def ticks_during(model) -> int:
        count = 0
        task = asyncio.ensure_future(model.infer({"input": x}, "rest"))
        while not task.done():  # a health check would be answered on each of these turns
            count += 1
            await asyncio.sleep(0)
        await task
        return count

    async def main():
        for batching in ({}, {"*": BatchConfig(max_batch_size=1024, max_queue_delay_us=100)}):
            async with running(reg, batching=batching) as models:
                assert await ticks_during(models.get("digits")) > 10

    asyncio.run(main())


def test_models_without_a_free_batch_dimension_cannot_batch():
    fixed = Signature((TensorSpec("input", "float32", (1, 4)),),
                      (TensorSpec("out", "float32", (-1, 3)),))  # fmt: skip
    scalar_out = Signature((TensorSpec("input", "float32", (-1, 4)),),
                           (TensorSpec("total", "float32", ()),))  # fmt: skip
    fine = Signature((TensorSpec("input", "float32", (-1, 4)),),
                     (TensorSpec("out", "float32", (-1, 3)),))  # fmt: skip
    with pytest.raises(InvalidInput, match="input input: float32\\[1,4\\] has none"):
        check_batchable(fixed)
    with pytest.raises(InvalidInput, match="output total"):
        check_batchable(scalar_out)
    check_batchable(fine)


def test_closing_fails_requests_still_queued(tmp_path):
    gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(gate.wait)  # the only worker is busy: the first batch waits in the pool
        batcher = batcher_for(make_mlp_onnx(tmp_path / "mlp.onnx"), pool, 64, 60_000_000)
        x = {"input": np.ones((1, 4), np.float32)}

        async def main():
            running = asyncio.ensure_future(batcher.predict(x))
            await asyncio.sleep(0.01)
            queued = asyncio.ensure_future(batcher.predict(x))  # a batch runs: this one waits
            await asyncio.sleep(0.01)
            batcher.close()
            gate.set()
            with pytest.raises(BackendError, match="unloaded"):
                await queued
            assert (await running)["probabilities"].shape == (1, 3)

        asyncio.run(main())
    assert batcher.runtime.calls == [1]


def test_a_caller_giving_up_does_not_disturb_its_batch(tmp_path, pool):
    path = make_mlp_onnx(tmp_path / "mlp.onnx")
    batcher = batcher_for(path, pool, max_batch_size=64, delay_us=50_000)
    xs = [np.full((1, 4), i, np.float32) for i in range(4)]

    async def main():
        tasks = [asyncio.ensure_future(batcher.predict({"input": x})) for x in xs]
        await asyncio.sleep(0)  # all four have joined one batch, which goes after this turn
        tasks[1].cancel()  # e.g. the request's timeout fired
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[1], asyncio.CancelledError)
        direct = OnnxRuntime.load(path)
        for i in (0, 2, 3):
            want = direct.predict({"input": xs[i]})["probabilities"]
            np.testing.assert_allclose(results[i]["probabilities"], want, rtol=1e-5)

    asyncio.run(main())
    assert batcher.runtime.calls == [4]  # the abandoned row was computed, and dropped
