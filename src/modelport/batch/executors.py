"""Where chunks run: in this process, or on a Dask cluster with the same calls.

    executor.map(plan_file, files, chunk_rows)       # small results: file plans
    executor.run_chunks(spec, chunks, on_result)     # each worker reads and commits its own chunks
    executor.call(assemble, ...)                     # one task; on Dask it runs on a worker

Workers load the model once (a per-process cache keyed by the model's sha256 and options) and
keep one chunk reader, so consecutive chunks of a Parquet file are read in one pass. The driver
sends chunk descriptions and receives row counts: it never holds the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
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
    return os.getpid(), LOADS["count"]


class LocalExecutor:
    """Chunks run one after another in this process; the model is loaded once."""

    workers = 1
    local = True  # runs on this machine

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> list[Any]:
        return [fn(item, *args) for item in items]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def run_chunks(self, spec: JobSpec, chunks: list[Chunk],
                   on_result: Callable[[ChunkResult], None]) -> None:  # fmt: skip
        if not chunks:
            return
        runtime = load_runtime(spec)
        reader = ChunkReader(spec.fmap.columns)
        batch_size = spec.options.batch_size
        # three stages overlap: the next chunk is read while this one is scored and the last
        # one is written; at most three chunks are in memory at once
        with ThreadPoolExecutor(1) as reading, ThreadPoolExecutor(1) as writing:
            try:
                next_read = reading.submit(convert_chunk, spec, chunks[0], reader)
                last_write = None
                for i, chunk in enumerate(chunks):
                    converted, errors = next_read.result()
                    if i + 1 < len(chunks):
                        next_read = reading.submit(convert_chunk, spec, chunks[i + 1], reader)
                    outputs = predict_in_batches(runtime, spec.signature, converted.inputs,
                                                 batch_size)  # fmt: skip
                    if last_write is not None:
                        on_result(last_write.result())
                    last_write = writing.submit(write_chunk, spec, chunk, outputs, converted,
                                                errors)  # fmt: skip
                    del converted, outputs
                if last_write is not None:
                    on_result(last_write.result())
            finally:
                runtime.close()

    def close(self) -> None:
        pass


class DaskExecutor:
    """A local ``dask.distributed`` cluster of ``workers`` processes, or an existing one at
    ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``). Input and output paths must be visible to every
    worker (a shared filesystem) and so must the registry (shared catalogue and blob folder)."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 threads_per_worker: int = 1) -> None:  # fmt: skip
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
                    n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
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

    def loads(self) -> dict[str, tuple[int, int]]:
        """Per worker: (pid, models loaded), to check that each loaded the model once."""
        return self.client.run(worker_loads)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
