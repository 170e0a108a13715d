"""Who runs the steps of each chunk: threads of this process, or the workers of a Dask cluster.

    executor.map(plan_file, files, chunk_rows)          # small results: file plans
    executor.run(spec, source, chunks, on_result)       # read -> score -> write, every chunk
    executor.call(assemble, ...)                        # one task; on Dask it runs on a worker

Both run the same three objects for a chunk, ``source.reader(...).read(chunk)``,
``Scorer.score(chunk, data)`` and ``Parts.write(scored)``; ``on_result`` gets each written chunk in
this process (in chunk order from the local executor, as they finish from Dask). Dask workers
build their reader, scorer and writer once per process and read their own chunks: the driver
sends chunk descriptions and receives row counts, it never holds the data.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from modelport.batch.buffers import BufferPool
from modelport.batch.job import ChunkResult, JobSpec
from modelport.batch.reader import ChunkReader
from modelport.batch.scorer import Scorer
from modelport.batch.sinks import Parts
from modelport.batch.sources import Chunk
from modelport.errors import InvalidInput, MissingDependency

_STEPS: dict[tuple[Any, ...], tuple[ChunkReader, Scorer, Parts]] = {}
LOADS = {"count": 0}  # models loaded by this process (a worker loads each model once)


def _worker_steps(spec: JobSpec) -> tuple[ChunkReader, Scorer, Parts]:
    key = (spec.sha256, repr(spec.runtime_options), spec.backend, repr(spec.fmap), spec.workdir)
    if key not in _STEPS:
        for _, scorer, _ in _STEPS.values():  # one model per worker at a time
            scorer.close()
        _STEPS.clear()
        _STEPS[key] = (ChunkReader(spec.fmap.columns), Scorer.load(spec), Parts(spec.workdir))
        LOADS["count"] += 1
    return _STEPS[key]


def chunk_task(chunk: Chunk, spec: JobSpec) -> ChunkResult:
    """A Dask task: read, score and write one chunk on the worker that runs it."""
    reader, scorer, parts = _worker_steps(spec)
    return parts.write(scorer.score(chunk, reader.read(chunk)))


def _apply(item: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(item, *args)


def worker_loads() -> tuple[int, int]:
    """(pid, models loaded) of this process; `client.run(worker_loads)` asks every worker."""
    return os.getpid(), LOADS["count"]


class LocalExecutor:
    """Chunks run in this process: one thread reads them in order, ``scorers`` threads score and
    write them (each model call on one core: for the small batches of a batch job, calls side
    by side use the cores better than one call split across them), one thread hands the results
    on in chunk order."""

    local = True  # runs on this machine

    def __init__(self, scorers: int | None = None, span: int = 4) -> None:
        self.scorers = max(1, scorers or os.cpu_count() or 1)
        self.span = span  # Parquet chunks decoded at once (see ChunkReader)
        self.workers = self.scorers  # the runtime's threads are shared among them

    def map(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> list[Any]:
        return [fn(item, *args) for item in items]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def run(self, spec: JobSpec, source: Any, chunks: list[Chunk],
            on_result: Callable[[ChunkResult], None]) -> None:  # fmt: skip
        """At most ``2 * scorers + 1`` chunks are in memory as read (the ones being scored, as
        many read ahead, the one being read), plus the decoded rows of ``span`` Parquet chunks.
        The job's first chunk (one model batch) is read and scored alone while the model loads
        as it is; only then does reading ahead start, and the model load feature-major for the
        other chunks (``Scorer.feature_major``): until its first part, a job does no more than
        that part needs."""
        if not chunks:
            return
        reader = source.reader(spec.fmap.columns, span=self.span)
        parts = Parts(spec.workdir if spec.parts else None, keep=True)
        pool = BufferPool(self.scorers)
        with (
            ThreadPoolExecutor(1) as reading,
            ThreadPoolExecutor(self.scorers) as scoring,
            ThreadPoolExecutor(1) as handing,
        ):
            # loaded[0] scores chunk 0, loaded[-1] every other chunk
            loaded = [handing.submit(Scorer.load, spec, pool, chunks[0].index == 0)]

            def step(chunk: Chunk, data: Any) -> ChunkResult:
                scorer = loaded[0 if chunk.index == 0 else -1].result()
                return parts.write(scorer.score(chunk, data))

            def first_done() -> None:  # the feature-major copy, if any chunk is left for it
                if chunks[0].index == 0 and len(chunks) > 1:
                    loaded.append(handing.submit(lambda: loaded[0].result().feature_major()))

            try:
                self._pipeline(chunks, reading, scoring, handing, reader.read, step, on_result,
                               first_done)  # fmt: skip
            finally:
                wait(loaded)
                done = [f.result() for f in loaded if f.exception() is None]
                for scorer in dict.fromkeys(done):  # each once (feature_major may be itself)
                    scorer.close()

    def _pipeline(self, chunks: list[Chunk], reading: Any, scoring: Any, handing: Any,
                  read: Callable[[Chunk], Any], step: Callable[[Chunk, Any], ChunkResult],
                  on_result: Callable[[ChunkResult], None],
                  first_done: Callable[[], None]) -> None:  # fmt: skip
        """Score the first chunk alone, then read ahead, score side by side, hand results on in
        order (writing the output never holds up the dispatch of the next chunk; it may fall
        behind, not far)."""
        todo = iter(chunks)
        reads: deque[tuple[Chunk, Future[Any]]] = deque()
        scores: deque[Future[ChunkResult]] = deque()
        handed: deque[Future[None]] = deque()

        def read_next() -> None:
            chunk = next(todo, None)
            if chunk is not None:
                reads.append((chunk, reading.submit(read, chunk)))

        try:
            read_next()
            first = True
            while reads or scores:
                while reads and len(scores) < (1 if first else self.scorers):
                    chunk, data = reads.popleft()
                    scores.append(scoring.submit(step, chunk, data.result()))
                    if not first:
                        read_next()
                result = scores.popleft().result()
                if first:
                    first = False
                    first_done()
                    for _ in range(self.scorers + 1):
                        read_next()
                handed.append(handing.submit(on_result, result))
                while handed and (handed[0].done() or len(handed) > self.scorers):
                    handed.popleft().result()
            while handed:
                handed.popleft().result()
        finally:
            for _, future in reads:
                future.cancel()
            for future in scores:
                future.cancel()
            scoring.shutdown(wait=True)
            reading.shutdown(wait=True)

    def close(self) -> None:
        pass


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

    def run(self, spec: JobSpec, source: Any, chunks: list[Chunk],
            on_result: Callable[[ChunkResult], None]) -> None:  # fmt: skip
        """Each worker reads, scores and writes its chunks (``source`` names files it opens)."""
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
