"""``predict_batch``: score files, a NumPy array or a pandas DataFrame with a registered model.

summary = predict_batch("digits@production", "data/*.parquet", "scores.parquet",
                        id_column="id", dask_workers=4, progress=True)
summary = predict_batch("digits", x)          # in memory: summary.outputs["probabilities"]
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.arrow import as_numpy
from modelport.batch.executors import DaskExecutor, LocalExecutor
from modelport.batch.features import FeatureMap
from modelport.batch.job import (
    BatchOptions,
    BatchSummary,
    ChunkResult,
    JobSpec,
    bind_columns,
    chunks_of,
    clear_workdir,
    job_key,
    load_runtime,
    open_workdir,
    process_chunk,
    workdir_for,
)
from modelport.batch.progress import RowProgress
from modelport.batch.sinks import Assembly, assemble, committed, output_format, write_part
from modelport.batch.sources import Chunk, FileInfo, expand, plan_file
from modelport.errors import InvalidInput
from modelport.registry import ModelVersion, Registry
from modelport.runtimes import RuntimeOptions


def predict_batch(
    model: str | ModelVersion,
    data: str | Path | np.ndarray | Any,
    output: str | Path | None = None,
    *,
    registry: Registry | None = None,
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    chunk_rows: int = 65536,
    batch_size: int = 4096,
    on_error: str = "skip",
    errors_path: str | Path | None = None,
    dask_workers: int | None = None,
    dask_scheduler: str | None = None,
    backend: str | None = None,
    progress: bool = False,
) -> BatchSummary:
    """Score ``data`` (a path, folder or glob; or an array or DataFrame) in chunks of
    ``chunk_rows``; write ``output`` (Parquet, CSV or NPY) or, for in-memory data without an
    output, return the predictions in ``summary.outputs``. Bad rows go to ``errors_path``
    (default ``<output>.errors.csv``) and are skipped, or stop the job (``on_error="fail"``)."""
    started = time.perf_counter()
    options = BatchOptions(tuple(columns or ()), id_column, chunk_rows, batch_size, on_error)
    own_registry = registry is None
    registry = registry or Registry()
    try:
        return _predict(model, data, output, registry, options, errors_path, dask_workers,
                        dask_scheduler, backend, progress, started)  # fmt: skip
    finally:
        if own_registry:
            registry.close()


def _predict(model: str | ModelVersion, data: Any, output: str | Path | None, registry: Registry,
             options: BatchOptions, errors_path: str | Path | None, dask_workers: int | None,
             dask_scheduler: str | None, backend: str | None, progress: bool,
             started: float) -> BatchSummary:  # fmt: skip
    version = model if isinstance(model, ModelVersion) else registry.resolve(model)
    in_memory = not isinstance(data, str | Path)
    if output is not None:
        output = Path(output).expanduser().absolute()
        output_format(output)
        if not output.parent.is_dir():
            raise InvalidInput(f"output folder {output.parent} does not exist")
        errors_path = Path(errors_path) if errors_path else output.with_name(
            output.name + ".errors.csv")  # fmt: skip
    elif not in_memory:
        raise InvalidInput("give an output path for file inputs")
    if in_memory and (dask_workers or dask_scheduler):
        raise InvalidInput("Dask workers read files: write the data to Parquet and pass its path")
    cores, intra = os.cpu_count() or 1, registry.settings.intra_op_threads
    # as many scoring threads as the cores hold model calls of the configured thread count
    executor: Any = LocalExecutor(max(1, cores // intra) if intra else cores)
    if dask_workers is not None or dask_scheduler is not None:
        executor = DaskExecutor(dask_workers, dask_scheduler)
    try:
        if in_memory:
            infos, reader = _memory_plan(data, options.chunk_rows)
        else:
            infos = executor.map(plan_file, [str(f) for f in expand(data)], options.chunk_rows)
        fmap = bind_columns(version.signature, infos, options)
        if output is not None and output_format(output) == "npy":
            if len(version.signature.outputs) != 1 or options.id_column:
                raise InvalidInput("an NPY output holds one output and no id column; write "
                                   "Parquet or CSV instead")  # fmt: skip
        chunks = chunks_of(infos)
        spec = _spec(registry, version, fmap, options, executor, output, backend, in_memory)
        if output is None:
            return _in_memory(spec, chunks, reader, progress, started)
        key = secrets.token_hex(8) if in_memory else job_key(
            infos, version.sha256, version.ref, options, output)  # fmt: skip
        workdir = Path(spec.workdir)
        with open_workdir(workdir, key, len(chunks)) as reusable:
            done = committed(workdir) if reusable else set()
            pending = [c for c in chunks if c.index not in done]
            workers: set[str] = set()
            scored = [0]
            # in this process the output is written as chunks finish; a cluster's driver never
            # holds data, so there one task assembles the parts at the end
            assembly = Assembly(workdir, len(chunks), output, errors_path) \
                if executor.local and not isinstance(executor, DaskExecutor) else None  # fmt: skip
            try:
                with RowProgress(sum(c.rows for c in chunks), sum(c.rows for c in chunks
                                 if c.index in done), progress) as bar:  # fmt: skip

                    def on_result(result: ChunkResult) -> None:
                        workers.add(result.worker)
                        scored[0] += result.rows + result.errors
                        if assembly is not None and assembly.streams and result.table is not None:
                            assembly.add(result.index, result.table, result.error_rows or [])
                        bar.advance(result.rows + result.errors)

                    if in_memory:  # no resuming: parts only where the output is built from them
                        parts = assembly is None or not assembly.streams
                        _run_in_memory(spec, pending, reader, on_result, parts)
                    else:
                        executor.run_chunks(spec, pending, on_result)
                if assembly is not None:
                    rows, errors_seen = assembly.commit()
                else:
                    rows, errors_seen = executor.call(assemble, workdir, len(chunks), output,
                                                      errors_path)  # fmt: skip
            except BaseException:
                if assembly is not None:
                    assembly.abort()
                raise
        clear_workdir(workdir)
        return BatchSummary(rows, errors_seen, len(chunks), len(chunks) - len(pending),
                            time.perf_counter() - started, output,
                            errors_path if errors_seen else None, workers=workers,
                            scored=scored[0])  # fmt: skip
    finally:
        executor.close()


def _spec(registry: Registry, version: ModelVersion, fmap: FeatureMap, options: BatchOptions,
          executor: Any, output: Path | None, backend: str | None,
          in_memory: bool = False) -> JobSpec:  # fmt: skip
    s = registry.settings
    intra = s.intra_op_threads
    if not intra and executor.local:  # auto: share this machine's cores among the workers
        # (in-memory data is scored by one thread: its model calls get every core)
        intra = max(1, (os.cpu_count() or 1) // (1 if in_memory else executor.workers))
    runtime_options = RuntimeOptions(intra, s.inter_op_threads, s.graph_optimization,
                                     feature_major=fmap.vector_inputs)  # fmt: skip
    workdir = str(workdir_for(output)) if output is not None else ""
    return JobSpec(s.model_dump(), version.ref, version.sha256, version.signature, fmap, options,
                   runtime_options, workdir, backend)  # fmt: skip


class _MemoryReader:
    def __init__(self, data: Any) -> None:
        self.data = data

    def read(self, chunk: Chunk) -> Any:
        return self.data[chunk.start : chunk.stop] if isinstance(self.data, np.ndarray) \
            else self.data.slice(chunk.start, chunk.rows)  # fmt: skip


def _memory_plan(data: Any, chunk_rows: int) -> tuple[list[FileInfo], _MemoryReader]:
    if isinstance(data, np.ndarray):
        if data.ndim == 0 or data.dtype.kind not in "biuf":
            raise InvalidInput("the array must hold rows of numbers")
        rows, fmt, columns, shape = len(data), "memory-array", {}, tuple(data.shape)
        reader = _MemoryReader(data)
    elif type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        import pyarrow as pa

        from modelport.batch.sources import _kind

        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(f"cannot read the DataFrame: {exc}") from None
        rows, fmt, shape = table.num_rows, "memory-table", ()
        columns = {f.name: _kind(f.type) for f in table.schema}
        reader = _MemoryReader(table)
    else:
        raise InvalidInput(f"cannot score a {type(data).__name__}: pass a path, a NumPy array "
                           "or a pandas DataFrame")  # fmt: skip
    chunks = tuple((s, min(s + chunk_rows, rows), 0, 0) for s in range(0, rows, chunk_rows))
    return [FileInfo(f"<{fmt}>", fmt, rows, columns, shape, chunks)], reader


def _run_in_memory(spec: JobSpec, chunks: list[Chunk], reader: _MemoryReader,
                   on_result: Any, parts: bool) -> None:  # fmt: skip
    runtime = load_runtime(spec)
    try:
        for chunk in chunks:
            table, errors = process_chunk(spec, chunk, runtime, reader)
            if parts:
                write_part(Path(spec.workdir), chunk.index, table, errors)
            on_result(ChunkResult(chunk.index, table.num_rows, len(errors), "local", table, errors))
    finally:
        runtime.close()


def _in_memory(spec: JobSpec, chunks: list[Chunk], reader: _MemoryReader, progress: bool,
               started: float) -> BatchSummary:  # fmt: skip
    import pyarrow as pa

    runtime = load_runtime(spec)
    tables, error_rows = [], []
    try:
        with RowProgress(sum(c.rows for c in chunks), 0, progress) as bar:
            for chunk in chunks:
                table, errors = process_chunk(spec, chunk, runtime, reader)
                tables.append(table)
                error_rows.extend(errors)
                bar.advance(chunk.rows)
    finally:
        runtime.close()
    table = pa.concat_tables(t for t in tables if t.num_rows) if any(
        t.num_rows for t in tables) else tables[0]  # fmt: skip
    shapes = json.loads(tables[0].schema.metadata[b"shapes"])
    outputs = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_fixed_size_list(column.type):
            flat = as_numpy(column.combine_chunks().flatten())
            outputs[name] = flat.reshape(-1, *shapes[name])
        else:
            outputs[name] = as_numpy(column)
    return BatchSummary(
        table.num_rows,
        len(error_rows),
        len(chunks),
        0,
        time.perf_counter() - started,
        outputs=outputs,
        error_rows=error_rows,
    )
