"""One loaded model version: validate, run off the event loop, drain, close.

model = LoadedModel(record, runtime, metrics, executor, BatchConfig(max_batch_size=16))
outputs = await model.run({"input": batch})    # what the data plane calls
outputs = await model.infer({"input": batch}, protocol="rest")   # the same, counted in metrics
await model.drain(timeout=30)                  # wait for requests in flight
close_runtime(model.detach(successor))         # later calls follow the successor
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Mapping
from concurrent.futures import Executor
from time import perf_counter

import numpy as np

from modelport.errors import NotReady
from modelport.monitoring.metrics import Metrics
from modelport.monitoring.tracing import TRACE
from modelport.registry import ModelVersion
from modelport.runtimes import Runtime
from modelport.serving.batching import Batcher
from modelport.serving.config import BatchConfig
from modelport.serving.cost import CallCost, rows_of
from modelport.signature import Signature


class LoadedModel:
    """One loaded version. ``run`` calls the runtime (off the event loop unless the call is
    cheaper than the thread hop, see cost.py, or through the batcher); ``infer`` is ``run`` with
    the request recorded in the metrics (the data plane records its own)."""

    def __init__(
        self,
        record: ModelVersion,
        runtime: Runtime,
        metrics: Metrics,
        executor: Executor,
        batch: BatchConfig | None = None,
        cost: CallCost | None = None,
    ) -> None:
        self.name = record.name
        self.version = record.version
        self.record = record
        self.signature: Signature = runtime.signature
        self.platform: str = getattr(runtime, "name", type(runtime).__name__)
        self.labels: tuple[str, ...] = ()
        self._runtime: Runtime | None = runtime
        self._metrics = metrics
        self._executor = executor
        self._series = series = metrics.model_series(self.name, self.version)
        self._cost = cost = cost or CallCost(0.0)
        self._batcher: Batcher | None = None
        self.batch = batch if batch is not None and batch.enabled else None  # dynamic batching
        if self.batch is not None:
            self._batcher = Batcher(runtime, batch, executor, series, cost)
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._successor: LoadedModel | None = None

    @property
    def loaded(self) -> bool:
        return self._runtime is not None

    @property
    def runtime(self) -> Runtime:
        """The runtime itself, for callers that run it their own way (explanations)."""
        if self._runtime is None:
            raise NotReady(f"model {self.name!r} version {self.version} is unloaded")
        return self._runtime

    async def infer(self, inputs: Mapping[str, np.ndarray], protocol: str) -> dict[str, np.ndarray]:
        with self._metrics.request(self.name, self.version, protocol):
            return await self.run(inputs)

    async def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of one request; the runtime validates against the signature."""
        runtime = self._runtime
        if runtime is None:  # unloaded after the caller picked this version: follow the swap
            if self._successor is not None:
                return await self._successor.run(feed)
            raise NotReady(f"model {self.name!r} version {self.version} is unloaded")
        self._in_flight += 1
        try:
            if self._batcher is not None:
                return await self._batcher.predict(feed)
            if not isinstance(feed, dict) or not all(isinstance(v, np.ndarray)
                                                     for v in feed.values()):  # fmt: skip
                feed = self.signature.coerce_inputs(feed)  # lists: convert before sizing the call
            rows = rows_of(feed)
            cost, series = self._cost, self._series
            inline = cost.inline(rows)
            if inline:  # one turn of the loop first: a caller in a tight loop cannot starve it
                await _yield()
                started = submitted = perf_counter()
                outputs = runtime.predict(feed)
                ended = perf_counter()
                series.queue.observe(0.0)
            else:
                submitted = perf_counter()
                outputs, started, ended = await asyncio.get_running_loop().run_in_executor(
                    self._executor, _timed_predict, runtime, feed
                )
                series.queue.observe(started - submitted)
            cost.update(ended - started, rows, inline)
            series.compute.observe(ended - started)
            series.batch_size.observe(rows)
            trace = TRACE.get()
            if trace is not None:
                trace.computed(submitted, started, ended, rows)
            return outputs
        finally:
            self._in_flight -= 1
            if self._idle is not None and not self._in_flight:
                self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request runs on this version; False if ``timeout`` passed first."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._in_flight:
            self._idle = asyncio.Event()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._idle.wait(), max(remaining, 0))
            except TimeoutError:
                return False
        return True

    def share_cost(self, other: LoadedModel) -> None:
        """Run inline or in a thread by ``other``'s estimate, so two versions compared side by
        side (a rollout) take the same path and their latencies compare fairly."""
        self._cost = other._cost
        if self._batcher is not None:
            self._batcher._cost = other._cost

    def detach(self, successor: LoadedModel | None) -> Runtime | None:
        """Stop serving: later calls go to ``successor``; returns the runtime to close."""
        runtime, self._runtime = self._runtime, None
        self._successor = successor
        if self._batcher is not None:
            self._batcher.close()
        return runtime


@types.coroutine
def _yield():
    """``asyncio.sleep(0)`` without its overhead: give the event loop one turn."""
    yield


def _timed_predict(runtime: Runtime, feed: dict[str, np.ndarray]):
    """In a worker thread; backend errors are already translated by the runtime."""
    started = perf_counter()
    outputs = runtime.predict(feed)
    return outputs, started, perf_counter()


def close_runtime(runtime: Runtime) -> None:
    runtime.close()
    del runtime
    import gc

    gc.collect()
    _trim_heap()


def _trim_heap() -> None:
    """Hand freed memory back to the OS (glibc keeps it otherwise, and RSS never drops)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def warm_up(runtime: Runtime, calls: int = 5) -> float:
    """Run a few calls on a one-row batch of zeros; return the median time of one call."""
    batch = warmup_batch(runtime.signature)
    times = []
    for _ in range(calls):
        started = perf_counter()
        runtime.predict(batch)
        times.append(perf_counter() - started)
    return sorted(times)[len(times) // 2]


def warmup_batch(signature: Signature) -> dict[str, np.ndarray]:
    """Zeros (empty strings) shaped like the inputs, free dimensions set to 1."""
    from modelport.samples import synthetic_inputs

    return synthetic_inputs(signature, 1, fill="zeros", free=1)
