"""``predict_batch``: score files, a NumPy array or a pandas DataFrame with a registered model.

summary = predict_batch("digits@production", "data/*.parquet", "scores.parquet",
                        id_column="id", dask_workers=4, progress=True)
summary = predict_batch("digits", x)          # in memory: summary.outputs["probabilities"]

One pipeline, top to bottom: ``Plan.make`` (sources, chunks, resume state) -> the executor runs
read -> score -> write for every pending chunk -> the output (``Assembly``, or ``Collected`` in
memory) takes them in order -> ``commit``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.batch.config import BatchSettings
from modelport.batch.executors import DaskExecutor, LocalExecutor
from modelport.batch.job import BatchOptions, BatchSummary, JobSpec
from modelport.batch.outputs import output_format
from modelport.batch.plan import Plan, sizes
from modelport.batch.progress import RowProgress
from modelport.batch.sinks import Assembly, Collected, Tally, assemble
from modelport.batch.sources import FileSource
from modelport.errors import InvalidInput
from modelport.registry.reader import CatalogReader, open_reader
from modelport.registry.records import ModelVersion
from modelport.runtimes import RuntimeOptions
from modelport.sizes import parse_size

if TYPE_CHECKING:
    from modelport.registry import Registry


def predict_batch(
    model: str | ModelVersion,
    data: str | Path | np.ndarray | Any,
    output: str | Path | None = None,
    *,
    registry: Registry | CatalogReader | None = None,
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    chunk_rows: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | str | None = None,
    on_error: str = "skip",
    errors_path: str | Path | None = None,
    dask_workers: int | None = None,
    dask_scheduler: str | None = None,
    backend: str | None = None,
    progress: bool = False,
    text_column: str | None = None,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int | None = None,
    chat: bool = False,
) -> BatchSummary:
    """Score ``data`` (a path, folder or glob; or an array or DataFrame) in chunks; write
    ``output`` (Parquet, CSV or NPY) or, for in-memory data without an output, return the
    predictions in ``summary.outputs``. Chunks and model batches are sized from a row's bytes and
    ``memory_budget`` (default ``Settings.batch_memory_budget``, 1 GiB) unless ``chunk_rows`` /
    ``batch_size`` are given. Bad rows go to ``errors_path`` (default ``<output>.errors.csv``)
    and are skipped, or stop the job (``on_error="fail"``).

    A text model (an ONNX encoder or classifier, a GGUF or onnxruntime-genai language model)
    reads ``text_column``; a language model generates up to ``max_tokens`` per row at
    ``temperature`` (0: greedy) with ``seed``, through its chat template with ``chat``."""
    started = time.perf_counter()
    with _catalogue(registry) as (reg, settings):
        version = model if isinstance(model, ModelVersion) else reg.resolve(model)
        source = FileSource(data) if isinstance(data, str | Path) else _in_memory(data)
        output, errors_path = _output_paths(output, errors_path, source)
        executor = _executor(settings, source, dask_workers, dask_scheduler)
        try:
            budget = parse_size(memory_budget) if memory_budget is not None \
                else settings.batch_memory_budget  # fmt: skip
            auto = _text_sizes(version) or \
                sizes(version.signature, source.row_shape(), budget, executor.workers)  # fmt: skip
            options = BatchOptions(tuple(columns or ()), id_column,
                                   auto[0] if chunk_rows is None else chunk_rows,
                                   auto[1] if batch_size is None else batch_size,
                                   on_error, text_column, max_tokens, temperature, seed,
                                   chat)  # fmt: skip
            plan = Plan.make(version, source, options, output, executor.map)
            spec = _spec(settings, version, plan, options, executor, output, backend,
                         source.resumable)  # fmt: skip
            return _run(plan, spec, source, executor, output, errors_path, progress, started)
        finally:
            executor.close()


def _in_memory(data: Any) -> Any:
    from modelport.batch.memory import MemorySource

    return MemorySource(data)


def _text_sizes(version: ModelVersion) -> tuple[int, int] | None:
    """A text model's sizes (``batch.text``, imported for a model with a task tag only)."""
    if not version.tags.get("task"):
        return None
    from modelport.batch.text import text_sizes

    return text_sizes(version)


@contextlib.contextmanager
def _catalogue(registry: Any) -> Iterator[tuple[Any, BatchSettings]]:
    """The caller's registry (or reader), left open, or a read-only view of the catalogue the
    environment names, closed at the end; and the job's settings."""
    if registry is not None:
        yield registry, BatchSettings.of(registry.settings)
        return
    settings = BatchSettings.read()
    with open_reader(settings) as reader:
        yield reader, settings


def _output_paths(output: str | Path | None, errors_path: str | Path | None,
                  source: Any) -> tuple[Path | None, Path | None]:  # fmt: skip
    if output is None:
        if source.resumable:
            raise InvalidInput("give an output path for file inputs")
        return None, None
    output = Path(output).expanduser().absolute()
    output_format(output)
    if not output.parent.is_dir():
        raise InvalidInput(f"output folder {output.parent} does not exist")
    return output, Path(errors_path) if errors_path else output.with_name(
        output.name + ".errors.csv")  # fmt: skip


def _executor(settings: BatchSettings, source: Any, dask_workers: int | None,
              dask_scheduler: str | None) -> Any:  # fmt: skip
    if dask_workers is None and dask_scheduler is None:
        intra = settings.intra_op_threads
        cores = os.cpu_count() or 1
        # as many scoring threads as the cores hold model calls of the configured thread count
        return LocalExecutor(max(1, cores // intra) if intra else cores)
    if not source.resumable:
        raise InvalidInput("Dask workers read files: write the data to Parquet and pass its path")
    return DaskExecutor(dask_workers, dask_scheduler)


def _spec(s: BatchSettings, version: ModelVersion, plan: Plan, options: BatchOptions,
          executor: Any, output: Path | None, backend: str | None,
          resumable: bool) -> JobSpec:  # fmt: skip
    intra = s.intra_op_threads
    if not intra and executor.local:  # auto: share this machine's cores among the workers
        intra = max(1, (os.cpu_count() or 1) // executor.workers)
    parts = output is not None and resumable  # what a resumed job reuses
    return JobSpec(s, version.ref, version.sha256, version.signature, plan.fmap,
                   options, RuntimeOptions.from_settings(s, intra_op_threads=intra),
                   str(plan.workdir or ""), backend, parts)  # fmt: skip


def _run(plan: Plan, spec: JobSpec, source: Any, executor: Any, output: Path | None,
         errors_path: Path | None, progress: bool, started: float) -> BatchSummary:  # fmt: skip
    with plan.resume(), RowProgress(plan.rows, plan.rows_done, progress) as bar:
        # in this process the output is written as chunks finish; a cluster's driver never
        # holds data, so there one task assembles the parts at the end
        if output is None:
            sink: Any = Collected(bar)
        elif isinstance(executor, DaskExecutor):
            sink = Tally(bar)
        else:
            sink = Assembly(plan.workdir, len(plan.chunks), output, errors_path, bar)
        pending = plan.pending
        try:
            executor.run(spec, source, pending, sink.add)
            if isinstance(sink, Assembly | Collected):
                rows, errors = sink.commit()
            else:  # one task on a worker reads the parts
                rows, errors = executor.call(assemble, plan.workdir, len(plan.chunks), output,
                                             errors_path)  # fmt: skip
        except BaseException:
            sink.abort()
            raise
    plan.clear()
    return BatchSummary(rows, errors, len(plan.chunks), len(plan.chunks) - len(pending),
                        time.perf_counter() - started, output, errors_path if errors else None,
                        outputs=sink.outputs if output is None else None,
                        error_rows=sink.error_rows if output is None else [],
                        workers=sink.workers, scored=sink.scored,
                        chunk_rows=spec.options.chunk_rows,
                        batch_size=spec.options.batch_size)  # fmt: skip
