"""Dynamic batching: concurrent requests merged into one runtime call, results split back.

    batcher = Batcher(runtime, BatchConfig(max_batch_size=32, max_queue_delay_us=500), pool, series)
    outputs = await batcher.predict(feed)       # validated first: a bad request never joins

A request joins the open batch of its shape. The batch runs when it holds ``max_batch_size`` rows,
when its first request has waited ``max_queue_delay_us``, or as soon as the runtime is idle: when
no batch runs, the batch goes at the end of the current event loop turn, with every request that
arrived in that turn (no added latency at low load); requests arriving while a batch runs gather
and go together when it ends. The runtime call happens in a
worker thread, so the event loop keeps answering health checks (unless it is cheaper than the
thread hop: see cost.py). When a merged call fails, each of its requests is retried alone, so one
bad request fails only itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from time import perf_counter
from typing import Any

import numpy as np

from modelport.errors import BackendError, InvalidInput
from modelport.monitoring.metrics import ModelSeries
from modelport.monitoring.tracing import TRACE
from modelport.runtimes import Runtime
from modelport.serving.config import BatchConfig
from modelport.serving.cost import CallCost
from modelport.signature import Signature

Feed = dict[str, np.ndarray]


def check_batchable(signature: Signature) -> None:
    """Raise InvalidInput unless every input and output has a free first (batch) dimension."""
    for kind, specs in (("input", signature.inputs), ("output", signature.outputs)):
        for spec in specs:
            if not spec.shape or spec.shape[0] != -1:
                raise InvalidInput(
                    f"dynamic batching needs a free batch dimension; {kind} {spec.describe()} "
                    "has none"
                )


class _Item:
    __slots__ = ("feed", "rows", "future", "submitted", "trace")

    def __init__(self, feed: Feed, rows: int, future: asyncio.Future, submitted: float) -> None:
        self.feed = feed
        self.rows = rows
        self.future = future
        self.submitted = submitted
        self.trace = TRACE.get()  # the request's trace when it is sampled


class _Open:
    """The batch being filled for one shape."""

    __slots__ = ("items", "rows", "timer", "soon")

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None
        self.soon: asyncio.Handle | None = None


class Batcher:
    def __init__(
        self,
        runtime: Runtime,
        config: BatchConfig,
        executor: Executor,
        series: ModelSeries,
        cost: CallCost | None = None,
    ) -> None:
        check_batchable(runtime.signature)
        self.runtime = runtime
        self.signature = runtime.signature
        self.config = config
        self._executor = executor
        self._series = series
        self._cost = cost or CallCost(0.0)
        self._delay = config.max_queue_delay_us / 1e6
        self._open: dict[tuple, _Open] = {}
        self._running: set[asyncio.Task] = set()  # the loop keeps only weak references

    async def predict(self, inputs: Mapping[str, Any]) -> Feed:
        feed = self.signature.coerce_inputs(inputs)  # a bad request never joins a batch
        loop = asyncio.get_running_loop()
        first = next(iter(feed.values()))
        rows = first.shape[0]
        key = tuple((a.shape[1:], a.dtype.str) for a in feed.values())
        future = loop.create_future()
        batch = self._open.get(key)
        if batch is not None and batch.rows + rows > self.config.max_batch_size:
            self._flush(key)
            batch = None
        if batch is None:
            batch = self._open[key] = _Open()
            batch.timer = loop.call_later(self._delay, self._flush, key)
            if not self._running:  # idle: go once the requests of this loop turn have joined
                batch.soon = loop.call_soon(self._flush, key)
        batch.items.append(_Item(feed, rows, future, perf_counter()))
        batch.rows += rows
        if batch.rows >= self.config.max_batch_size:
            self._flush(key)
        return await future

    def _flush(self, key: tuple) -> None:
        batch = self._open.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        if batch.soon is not None:
            batch.soon.cancel()
        task = asyncio.get_running_loop().create_task(
            self._run(batch.items, batch.rows, perf_counter())
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, items: list[_Item], rows: int, flushed: float) -> None:
        loop = asyncio.get_running_loop()
        inline = self._cost.inline(rows)
        try:
            if inline:
                results, started, ended = _run_batch(self.runtime, items)
            else:
                results, started, ended = await loop.run_in_executor(
                    self._executor, _run_batch, self.runtime, items
                )
        except BaseException as exc:  # the executor itself failed (shut down): fail the batch
            results = [exc] * len(items)
            started = ended = perf_counter()
        self._running.discard(asyncio.current_task())
        for key in list(self._open):  # what gathered while this batch ran goes next
            self._flush(key)
        self._cost.update(ended - started, rows, inline)
        series = self._series
        for item, result in zip(items, results, strict=True):
            series.queue.observe(started - item.submitted)
            if item.trace is not None:
                item.trace.batched(item.submitted, flushed, started, ended, rows, len(items))
            if item.future.done():  # the caller gave up (timeout, disconnect)
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        series.compute.observe(ended - started)
        series.batch_size.observe(rows)

    def close(self) -> None:
        for key in list(self._open):
            batch = self._open.pop(key)
            if batch.timer is not None:
                batch.timer.cancel()
            for item in batch.items:
                if not item.future.done():
                    item.future.set_exception(BackendError("the model was unloaded"))


def _run_batch(runtime: Runtime, items: list[_Item]) -> tuple[list, float, float]:
    """In a worker thread: one merged call, split; on failure, each request alone."""
    started = perf_counter()
    if len(items) == 1:
        return [_call(runtime, items[0].feed)], started, perf_counter()
    names = list(items[0].feed)
    merged = {name: np.concatenate([item.feed[name] for item in items]) for name in names}
    outputs = _call(runtime, merged)
    if isinstance(outputs, BaseException):
        return [_call(runtime, item.feed) for item in items], started, perf_counter()
    total = sum(item.rows for item in items)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            error = BackendError(
                f"output {name!r} has shape {list(array.shape)}; batching needs {total} rows"
            )
            return [error] * len(items), started, perf_counter()
    results, offset = [], 0
    for item in items:
        end = offset + item.rows
        results.append({name: array[offset:end] for name, array in outputs.items()})
        offset = end
    return results, started, perf_counter()


def _call(runtime: Runtime, feed: Feed) -> Feed | Exception:
    """The runtime's outputs, or its error as a value (runtimes translate their backend's
    errors; anything else is a bug the transport answers as a 500)."""
    try:
        return runtime.predict(feed)
    except Exception as exc:
        return exc
