"""A batch job: plan chunks, skip the committed ones, score the rest, assemble the output.

    infos = [plan_file(f, chunk_rows) ...]     # rows and chunk boundaries of every input file
    fmap = bind_columns(signature, infos, options)   # which columns feed which model input
    commit_chunk(spec, chunk, runtime, reader)       # read -> convert -> predict -> commit a part
    assemble(...)                              # parts in order -> output, renamed when complete

The work folder ``.<output>.parts`` beside the output holds ``job.json`` (the job's key: inputs,
model sha256 and options) and one committed part per finished chunk. A re-run with the same key
skips finished chunks; a changed command starts over, so stale parts are never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.features import Blocks, Converted, FeatureMap
from modelport.batch.sinks import outputs_table, write_part
from modelport.batch.sources import Chunk, FileInfo
from modelport.errors import Conflict, InvalidInput
from modelport.runtimes import Runtime, RuntimeOptions
from modelport.signature import Signature

_WORK_FILES = ("job.json", "part-", ".part-")


@dataclass(frozen=True)
class BatchOptions:
    columns: tuple[str, ...] = ()
    id_column: str | None = None
    chunk_rows: int = 65536
    batch_size: int = 4096
    on_error: str = "skip"

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise InvalidInput("--chunk-rows must be at least 1")
        if self.batch_size < 1:
            raise InvalidInput("--batch-size must be at least 1")
        if self.on_error not in ("skip", "fail"):
            raise InvalidInput(f"--on-error must be skip or fail, not {self.on_error!r}")


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to score a chunk; small and picklable (no data, no sessions)."""

    settings: dict[str, Any]
    model: str  # "name:version"
    sha256: str
    signature: Signature
    fmap: FeatureMap
    options: BatchOptions
    runtime_options: RuntimeOptions
    workdir: str
    backend: str | None = None


@dataclass(frozen=True)
class ChunkResult:
    index: int
    rows: int
    errors: int
    worker: str = ""
    # in-process only (a cluster's driver never holds data): the committed outputs and errors
    table: Any = None
    error_rows: list[list[Any]] | None = None


@dataclass
class BatchSummary:
    """What a job did. ``outputs`` holds the predictions when no output file was asked for."""

    rows: int
    errors: int
    chunks: int
    resumed: int
    elapsed: float
    output: Path | None = None
    errors_path: Path | None = None
    outputs: dict[str, np.ndarray] | None = None
    error_rows: list[list[Any]] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)  # "host:pid" of the processes that scored
    scored: int | None = None  # rows read by this run (a resumed job skips the committed ones)

    @property
    def throughput(self) -> float:
        rows = self.rows + self.errors if self.scored is None else self.scored
        return rows / self.elapsed if self.elapsed > 0 else 0.0


def load_runtime(spec: JobSpec) -> Runtime:
    """Open the registry from the job's settings and load the exact version (sha256 checked)."""
    from modelport.api import load
    from modelport.registry import Registry
    from modelport.settings import Settings

    registry = Registry(Settings(**spec.settings))
    try:
        version = registry.resolve(spec.model)
        if version.sha256 != spec.sha256:
            raise Conflict(f"{spec.model} changed while the job ran")
        return load(version, registry=registry, options=spec.runtime_options, backend=spec.backend)
    finally:
        registry.close()


def convert_chunk(spec: JobSpec, chunk: Chunk, data: Any, columnar: frozenset[str],
                  reuse: int = 0) -> tuple[Converted, list[list[Any]]]:  # fmt: skip
    """Turn a chunk's rows (as its reader returned them) into model inputs, the ``columnar``
    ones feature-major (see ``Runtime.feature_major``); bad rows become error rows. ``reuse=k``: the
    inputs may live in a buffer that the k-th next call of this thread overwrites."""
    converted = spec.fmap.convert(data, chunk, reuse=reuse, feature_major=columnar,
                                  batch=spec.options.batch_size)  # fmt: skip
    errors = [[row, Path(chunk.file).name, row - chunk.offset + chunk.start, reason]
              for row, reason in converted.errors]  # fmt: skip
    if errors and spec.options.on_error == "fail":
        row, name, file_row, reason = errors[0]
        raise InvalidInput(f"row {row} ({name}, row {file_row}): {reason}")
    return converted, errors


def process_chunk(spec: JobSpec, chunk: Chunk, runtime: Runtime, reader: Any) -> tuple[Any, list]:
    """Read, convert and score one chunk: (outputs table, error rows)."""
    converted, errors = convert_chunk(spec, chunk, reader.read(chunk), runtime.feature_major)
    outputs = predict_in_batches(runtime, spec.signature, converted.inputs, spec.options.batch_size)
    return outputs_table(outputs, converted.ids, spec.fmap.id_column), errors


def write_chunk(spec: JobSpec, chunk: Chunk, outputs: dict[str, np.ndarray], converted: Converted,
                errors: list[list[Any]], keep: bool = False) -> ChunkResult:  # fmt: skip
    """Commit one scored chunk as a part file; ``keep``: the result carries the table too."""
    table = outputs_table(outputs, converted.ids, spec.fmap.id_column)
    write_part(Path(spec.workdir), chunk.index, table, errors)
    worker = f"{os.uname().nodename}:{os.getpid()}"
    if keep:
        return ChunkResult(chunk.index, table.num_rows, len(errors), worker, table, errors)
    return ChunkResult(chunk.index, table.num_rows, len(errors), worker)


def commit_chunk(spec: JobSpec, chunk: Chunk, runtime: Runtime, reader: Any) -> ChunkResult:
    converted, errors = convert_chunk(spec, chunk, reader.read(chunk), runtime.feature_major)
    outputs = predict_in_batches(runtime, spec.signature, converted.inputs, spec.options.batch_size)
    return write_chunk(spec, chunk, outputs, converted, errors)


def predict_in_batches(runtime: Runtime, signature: Signature, inputs: dict[str, Any],
                       batch_size: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Score ``inputs`` ``batch_size`` rows at a time; feature-major inputs (``Blocks``, or
    [features, rows] arrays) are cut along their second axis."""
    columnar = runtime.feature_major
    name, first = next(iter(inputs.items()))
    n = first.shape[1] if name in columnar else len(first)
    if n == 0:
        return {s.name: np.zeros((0, *[max(d, 1) for d in s.shape[1:]]), s.numpy_dtype)
                for s in signature.outputs}  # fmt: skip
    # blocks laid out for another batch size become one [features, rows] array, once
    inputs = {k: np.asarray(v) if isinstance(v, Blocks) and v.batch != batch_size else v
              for k, v in inputs.items()}  # fmt: skip
    out: dict[str, np.ndarray] = {}
    for start in range(0, n, batch_size):
        stop = start + batch_size
        batch = {k: v.block(start) if isinstance(v, Blocks) else
                 v[:, start:stop] if k in columnar else v[start:stop]
                 for k, v in inputs.items()}  # fmt: skip
        result = runtime.predict(batch)
        if n <= batch_size:
            return result
        for key, value in result.items():
            if key not in out:
                out[key] = np.empty((n, *value.shape[1:]), dtype=value.dtype)
            out[key][start : start + len(value)] = value
    return out


def chunks_of(infos: list[FileInfo]) -> list[Chunk]:
    chunks, offset = [], 0
    for info in infos:
        for start, stop, byte_start, byte_stop in info.chunks:
            chunks.append(Chunk(len(chunks), info.file, info.format, start, stop,
                                offset + start, byte_start, byte_stop))  # fmt: skip
        offset += info.rows
    return chunks


def bind_columns(signature: Signature, infos: list[FileInfo], options: BatchOptions) -> FeatureMap:
    """One feature map for every file; files whose columns bind differently are refused."""
    if sum(info.rows for info in infos) == 0:
        raise InvalidInput("the input is empty: no rows to score")
    fmap = FeatureMap.plan(signature, infos[0], list(options.columns), options.id_column)
    for info in infos[1:]:
        if FeatureMap.plan(signature, info, list(options.columns), options.id_column) != fmap:
            raise InvalidInput(f"{info.file} has other columns than {infos[0].file}")
    return fmap


def job_key(infos: list[FileInfo], sha256: str, model: str, options: BatchOptions,
            output: Path) -> str:  # fmt: skip
    inputs = []
    for info in infos:
        stat = os.stat(info.file)
        inputs.append([info.file, stat.st_size, stat.st_mtime_ns])
    data = {"inputs": inputs, "model": model, "sha256": sha256, "options": asdict(options),
            "output": str(output)}  # fmt: skip
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def workdir_for(output: Path) -> Path:
    return output.parent / f".{output.name}.parts"


@contextlib.contextmanager
def open_workdir(workdir: Path, key: str, n_chunks: int) -> Iterator[bool]:
    """Lock the work folder and make it this job's; yields whether earlier parts are reusable."""
    import fcntl

    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Conflict(f"another job is writing {workdir}") from None
        manifest = workdir / "job.json"
        reusable = False
        if manifest.is_file():
            try:
                reusable = json.loads(manifest.read_text()).get("key") == key
            except ValueError:
                reusable = False
        if not reusable:
            clear_workdir(workdir, keep_lock=True)
            tmp = workdir / ".job.json.tmp"
            tmp.write_text(json.dumps({"key": key, "chunks": n_chunks}))
            os.replace(tmp, manifest)
        else:
            for stale in workdir.glob("*.tmp"):  # writes cut short by a kill
                stale.unlink(missing_ok=True)
            for stale in workdir.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        yield reusable


def clear_workdir(workdir: Path, keep_lock: bool = False) -> None:
    if not workdir.is_dir():
        return
    for path in workdir.iterdir():
        if path.name.startswith(_WORK_FILES) or path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
    if not keep_lock:
        shutil.rmtree(workdir, ignore_errors=True)
