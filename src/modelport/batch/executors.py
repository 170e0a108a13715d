"""Where chunks run: in this process, or on a Dask cluster with the same calls.

    executor.map(plan_file, files, chunk_rows)       # small results: file plans
    executor.run_chunks(spec, chunks, on_result)     # each worker reads and commits its own chunks
    executor.call(assemble, ...)                     # one task; on Dask it runs on a worker

Workers load the model once (a per-process cache keyed by the model's sha256 and options) and
read their own chunks. The driver sends chunk descriptions and receives row counts: it never
holds the data.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from modelport.batch.job import (
    ChunkResult,
    JobSpec,
    commit_chunk,
    convert_chunk,
    load_runtime,
    predict_in_batches,
    write_chunk,
)
from modelport.batch.sources import Chunk, ChunkReader
from modelport.errors import InvalidInput, MissingDependency
from modelport.runtimes import Runtime

_RUNTIMES: dict[tuple[Any, ...], Runtime] = {}
_READERS: dict[tuple[Any, ...], ChunkReader] = {}
LOADS = {"count": 0}  # models loaded by this process (a worker loads each model once)


def worker_runtime(spec: JobSpec) -> Runtime:
    key = (spec.sha256, repr(spec.runtime_options), spec.backend)
    if key not in _RUNTIMES:
        _RUNTIMES.clear()  # one model per worker at a time
        _RUNTIMES[key] = load_runtime(spec)
        LOADS["count"] += 1
    return _RUNTIMES[key]


def chunk_task(chunk: Chunk, spec: JobSpec) -> ChunkResult:
    """The unit of work on any worker: score one chunk and commit its part."""
    columns = spec.fmap.columns
    key = (tuple(columns) if columns else None,)
    if key not in _READERS:
        _READERS.clear()
        _READERS[key] = ChunkReader(columns)
    return commit_chunk(spec, chunk, worker_runtime(spec), _READERS[key])


def _apply(item: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(item, *args)


def worker_loads() -> tuple[int, int]:
    """(pid, models loaded) of this process; `client.run(worker_loads)` asks every worker."""
    return os.getpid(), LOADS["count"]


class LocalExecutor:
    """Chunks run in this process: one thread reads and converts them in order, ``scorers``
    threads score and commit them (each model call on one core: for the small batches of a batch
    job, calls side by side use the cores better than one call split across them)."""

    local = True  # runs on this machine

    def __init__(self, scorers: int | None = None, span: int = 4) -> None:
        self.scorers = max(1, scorers or os.cpu_count() or 1)
        self.span = span  # Parquet chunks decoded at once (see ChunkReader)
        self.workers = self.scorers  # the runtime's threads are shared among them

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> list[Any]:
        return [fn(item, *args) for item in items]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def run_chunks(self, spec: JobSpec, chunks: list[Chunk],
                   on_result: Callable[[ChunkResult], None]) -> None:  # fmt: skip
        """Results arrive in chunk order. At most ``2 * scorers + 1`` converted chunks are in
        memory (the ones being scored, as many read ahead, the one being converted), plus the
        decoded rows of ``span`` Parquet chunks. The model loads while the first chunk is read."""
        if not chunks:
            return
        reader = ChunkReader(spec.fmap.columns, span=self.span)
        ahead = self.scorers
        todo = iter(chunks)
        reads: deque[tuple[Chunk, Future[Any]]] = deque()
        scores: deque[Future[ChunkResult]] = deque()
        # results are handed on by a thread of their own, so writing the output never holds up
        # the dispatch of the next chunk
        with ThreadPoolExecutor(1) as reading, ThreadPoolExecutor(self.scorers) as scoring, \
                ThreadPoolExecutor(1) as handing:  # fmt: skip
            loading = handing.submit(load_runtime, spec)  # while the first chunk is read

            def read_and_convert(chunk: Chunk) -> tuple[Any, list[list[Any]]]:
                data = reader.read(chunk)
                return convert_chunk(spec, chunk, data, loading.result().feature_major,
                                     2 * ahead + 2)  # fmt: skip

            def read_next() -> None:
                chunk = next(todo, None)
                if chunk is not None:
                    reads.append((chunk, reading.submit(read_and_convert, chunk)))

            try:
                for _ in range(ahead + 1):
                    read_next()
                runtime = loading.result()
                handed: deque[Future[None]] = deque()
                while reads or scores:
                    while reads and len(scores) < self.scorers:
                        chunk, converted = reads.popleft()
                        scores.append(scoring.submit(score_chunk, spec, chunk, runtime,
                                                     *converted.result()))  # fmt: skip
                        read_next()
                    handed.append(handing.submit(on_result, scores.popleft().result()))
                    while handed and (handed[0].done() or len(handed) > self.scorers):
                        handed.popleft().result()  # the output may fall behind, not far
                while handed:
                    handed.popleft().result()
            finally:
                for _, future in reads:
                    future.cancel()
                for future in scores:
                    future.cancel()
                scoring.shutdown(wait=True)
                reading.shutdown(wait=True)
                wait([loading])
                if loading.exception() is None:
                    loading.result().close()

    def close(self) -> None:
        pass


def score_chunk(spec: JobSpec, chunk: Chunk, runtime: Runtime, converted: Any,
                errors: list[list[Any]]) -> ChunkResult:  # fmt: skip
    outputs = predict_in_batches(runtime, spec.signature, converted.inputs, spec.options.batch_size)
    return write_chunk(spec, chunk, outputs, converted, errors, keep=True)


class DaskExecutor:
    """A local ``dask.distributed`` cluster of ``workers`` processes, or an existing one at
    ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``). Input and output paths must be visible to every
    worker (a shared filesystem) and so must the registry (shared catalogue and blob folder)."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise MissingDependency("dask[distributed]", "batch") from None
        if (workers is None) == (scheduler is None):
            raise InvalidInput("give either --dask-workers or --dask-scheduler")
        self._cluster = None
        try:
            if scheduler is None:
                if workers < 1:
                    raise InvalidInput("--dask-workers must be at least 1")
                self._cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=40,
                )  # fmt: skip
                self.client = Client(self._cluster)
            else:
                self.client = Client(scheduler, timeout=10)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise InvalidInput(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.local = self._cluster is not None

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> list[Any]:
        futures = self.client.map(_apply, list(items), fn=fn, args=args, pure=False)
        return self.client.gather(futures)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False).result()

    def run_chunks(self, spec: JobSpec, chunks: list[Chunk],
                   on_result: Callable[[ChunkResult], None]) -> None:  # fmt: skip
        from distributed import as_completed

        if not chunks:
            return
        [spec_future] = self.client.scatter([spec], broadcast=True)
        futures = self.client.map(chunk_task, chunks, spec=spec_future, pure=False)
        try:
            for future in as_completed(futures):
                on_result(future.result())
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
