"""Planning a batch job: how big its chunks are, where they lie, and what an earlier run left.

    chunk_rows, batch_size = sizes(signature, source.row_shape(), budget=1 << 30, workers=2)
    plan = Plan.make(version, source, options, output, executor.map)
    with plan.resume():          # locks the work folder; plan.done: chunks an earlier run committed
        plan.pending             # the chunks left to read, score and write

The work folder ``.<output>.parts`` beside the output holds ``job.json`` (the job's key: inputs,
model sha256 and options) and one committed part per finished chunk. A re-run with the same key
skips finished chunks; a changed command starts over, so stale parts are never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.batch.features import FeatureMap
from modelport.batch.job import BatchOptions
from modelport.batch.outputs import output_format
from modelport.batch.sinks import committed
from modelport.batch.sources import Chunk, FileInfo
from modelport.errors import Conflict, InvalidInput
from modelport.registry import ModelVersion
from modelport.signature import Signature

if TYPE_CHECKING:
    from modelport.batch.text import TextMap

_WORK_FILES = ("job.json", "part-", ".part-")
MAX_CHUNK_ROWS = 65536
MAX_BATCH_SIZE = 4096


def row_bytes(signature: Signature, row_shape: tuple[int, ...] | None = None) -> int:
    """Bytes of one row of model inputs (an NPY row's shape fills a single input's free
    dimensions)."""
    total = 0
    for spec in signature.inputs:
        inner = spec.shape[1:]
        if row_shape is not None and len(signature.inputs) == 1 and len(row_shape) == len(inner):
            inner = tuple(d if d > 0 else g for d, g in zip(inner, row_shape, strict=True))
        total += int(np.prod([max(d, 1) for d in inner])) * spec.numpy_dtype.itemsize
    return max(total, 1)


def sizes(signature: Signature, row_shape: tuple[int, ...] | None, budget: int,
          workers: int) -> tuple[int, int]:  # fmt: skip
    """(chunk rows, batch size) from a row's bytes and a memory budget, for any model.

    A job holds about ``2 * workers + 2`` chunks at once (read ahead, being scored, being
    written), each up to three times its input bytes (the rows as read, as laid out for the
    model, their outputs): chunks get a third of ``budget / (2 * workers + 2)``. A model call may
    need many times its input for activations (a convolution's channels): each of the
    ``workers`` calls in flight gets 1/32 of its share of the budget as input. Both are capped
    (65,536 and 4,096 rows), which small rows reach."""
    size = row_bytes(signature, row_shape)
    workers = max(1, workers)
    chunk_rows = budget // (3 * (2 * workers + 2) * size)
    batch_size = budget // (32 * workers * size)
    chunk_rows = int(min(max(chunk_rows, 1), MAX_CHUNK_ROWS))
    return chunk_rows, int(min(max(batch_size, 1), MAX_BATCH_SIZE, chunk_rows))


@dataclass
class Plan:
    """The job's chunks in order, how columns feed the model, and its resume state."""

    infos: list[FileInfo]
    chunks: list[Chunk]
    fmap: FeatureMap
    workdir: Path | None
    key: str
    done: set[int] = field(default_factory=set)

    @property
    def pending(self) -> list[Chunk]:
        return [c for c in self.chunks if c.index not in self.done]

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)

    @property
    def rows_done(self) -> int:
        """Rows of the chunks an earlier run committed (known once ``resume`` is entered)."""
        return sum(c.rows for c in self.chunks if c.index in self.done)

    @classmethod
    def make(cls, version: ModelVersion, source: Any, options: BatchOptions,
             output: Path | None, map: Any = None) -> Plan:  # fmt: skip
        infos = source.plan(options.chunk_rows, map, options.first_rows)
        fmap = _text_map(version, infos, options, output) or \
            bind_columns(version.signature, infos, options)  # fmt: skip
        if output is not None and output_format(output) == "npy" and not fmap.text:
            if len(version.signature.outputs) != 1 or options.id_column:
                raise InvalidInput("an NPY output holds one output and no id column; write "
                                   "Parquet or CSV instead")  # fmt: skip
        key = job_key(infos, version.sha256, version.ref, options, output) \
            if source.resumable and output is not None else os.urandom(8).hex()  # fmt: skip
        workdir = workdir_for(output) if output is not None else None
        # an input of no rows is one chunk of none: its output has no rows, the right columns
        chunks = chunks_of(infos) or [Chunk(0, infos[0].file, infos[0].format, 0, 0)]
        return cls(infos, chunks, fmap, workdir, key)

    @contextlib.contextmanager
    def resume(self) -> Iterator[Plan]:
        """Lock the work folder and make it this job's; ``done`` lists the reusable parts."""
        if self.workdir is None:
            yield self
            return
        with open_workdir(self.workdir, self.key, len(self.chunks)) as reusable:
            self.done = committed(self.workdir) if reusable else set()
            yield self

    def clear(self) -> None:
        if self.workdir is not None:
            clear_workdir(self.workdir)


def chunks_of(infos: list[FileInfo]) -> list[Chunk]:
    """Every file's chunks, numbered in order."""
    chunks, offset = [], 0
    for info in infos:
        for start, stop, byte_start, byte_stop in info.chunks:
            chunks.append(Chunk(len(chunks), info.file, info.format, start, stop,
                                offset + start, byte_start, byte_stop))  # fmt: skip
        offset += info.rows
    return chunks


def _text_map(version: ModelVersion, infos: list[FileInfo], options: BatchOptions,
              output: Path | None) -> TextMap | None:  # fmt: skip
    """``batch.text.plan_text``, imported only for a job that may read texts (a model with a task
    tag, ``--text-column``, a ``.txt`` input): a tensor job's start goes without it."""
    if not (version.tags.get("task") or options.text_column or infos[0].format == "txt"):
        return None
    from modelport.batch.text import plan_text

    return plan_text(version, infos, options, output)


def bind_columns(signature: Signature, infos: list[FileInfo], options: BatchOptions) -> FeatureMap:
    """One feature map for every file; files whose columns bind differently are refused."""
    fmap = FeatureMap.plan(signature, infos[0], list(options.columns), options.id_column)
    for info in infos[1:]:
        if FeatureMap.plan(signature, info, list(options.columns), options.id_column) != fmap:
            raise InvalidInput(f"{info.file} has other columns than {infos[0].file}")
    return fmap


def job_key(infos: list[FileInfo], sha256: str, model: str, options: BatchOptions,
            output: Path | None) -> str:  # fmt: skip
    inputs = []
    for info in infos:
        stat = os.stat(info.file)
        inputs.append([info.file, stat.st_size, stat.st_mtime_ns])
    data = {
        "inputs": inputs,
        "model": model,
        "sha256": sha256,
        "options": asdict(options),
        "first_rows": options.first_rows,
        "output": str(output),
    }  # the chunks' layout too
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
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
