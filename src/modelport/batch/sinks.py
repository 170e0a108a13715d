"""Where scored chunks go: one committed part per chunk, and the output, in chunk order.

    result = Parts(workdir).write(scored)        # a part file: temp name, then rename
    committed(workdir)                           # indices of finished, intact chunks
    output = Assembly(workdir, n_chunks, output, errors_path)  # or Collected() for memory
    output.add(result); output.commit()          # chunks in order, then renamed when whole

A part is an Arrow IPC file; its errors are written before it, so a committed part always has
its complete error list beside it. Parts are renamed into place without an fsync (which cost a
tenth of a job's time): a killed job's parts are whole, since the page cache outlives the
process, and after a machine crash ``committed`` opens each part and drops any that did not reach
the disk whole, so its chunk is scored again. The output itself is fsynced before its rename.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.arrow import as_numpy, list_values
from modelport.batch.outputs import OutputWriter, output_format

_PART = re.compile(r"^part-(\d{6})\.arrow$")


class Parts:
    """``write(scored)``: commit a scored chunk as a part file in ``workdir`` (None: keep no
    parts, as for in-memory data streamed to its output); ``keep``: the result carries the table,
    for an output built in this process."""

    def __init__(self, workdir: str | Path | None, keep: bool = False) -> None:
        self.workdir = Path(workdir) if workdir else None
        self.keep = keep
        self.worker = f"{os.uname().nodename}:{os.getpid()}"

    def write(self, scored: Any) -> Any:
        from modelport.batch.job import ChunkResult

        table, errors = scored.table, scored.errors
        if self.workdir is not None:
            write_part(self.workdir, scored.index, table, errors)
        if self.keep:
            return ChunkResult(scored.index, table.num_rows, len(errors), self.worker, table,
                               errors)  # fmt: skip
        return ChunkResult(scored.index, table.num_rows, len(errors), self.worker)


class Tally:
    """What the chunks handed back add up to (rows read, the workers that wrote them), with the
    progress bar advanced; the job's output, when this process writes it, is a ``Tally`` too."""

    def __init__(self, progress: Any = None) -> None:
        self.progress = progress
        self.workers: set[str] = set()
        self.scored = 0

    def add(self, result: Any) -> None:
        self.workers.add(result.worker)
        self.scored += result.rows + result.errors
        if self.progress is not None:
            self.progress.advance(result.rows + result.errors)

    def abort(self) -> None:
        pass


class Collected(Tally):
    """The output of a job without an output file: ``add`` chunks in order, ``commit`` returns
    (rows, errors); ``outputs`` then holds each model output as one array."""

    def __init__(self, progress: Any = None) -> None:
        super().__init__(progress)
        self.tables: list[Any] = []
        self.error_rows: list[list[Any]] = []
        self.outputs: dict[str, np.ndarray] = {}

    def add(self, result: Any) -> None:
        super().add(result)
        self.tables.append(result.table)
        self.error_rows.extend(result.error_rows or [])

    def commit(self) -> tuple[int, int]:
        import pyarrow as pa

        tables = [t for t in self.tables if t.num_rows] or self.tables[:1]
        table = pa.concat_tables(tables)
        shapes = json.loads(self.tables[0].schema.metadata[b"shapes"])
        for name, column in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_fixed_size_list(column.type):
                flat = list_values(column)
                self.outputs[name] = flat.reshape(-1, *shapes[name])
            else:
                self.outputs[name] = as_numpy(column)
        return table.num_rows, len(self.error_rows)

    def abort(self) -> None:
        self.tables.clear()


def part_path(workdir: Path, index: int) -> Path:
    return workdir / f"part-{index:06d}.arrow"


def write_part(workdir: Path, index: int, table: Any, errors: list[list[Any]]) -> None:
    import pyarrow as pa

    target = part_path(workdir, index)
    _replace_with(target.with_suffix(".errors.json"), json.dumps(errors).encode())
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, target)


def committed(workdir: Path) -> set[int]:
    """Chunks whose part and error list are whole; broken ones are removed."""
    if not workdir.is_dir():
        return set()
    done = set()
    for path in workdir.iterdir():
        if (match := _PART.match(path.name)) is None:
            continue
        if _intact(path):
            done.add(int(match.group(1)))
        else:
            path.unlink(missing_ok=True)
    return done


def _intact(path: Path) -> bool:
    import pyarrow as pa

    try:
        json.loads(path.with_suffix(".errors.json").read_bytes())
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                reader.get_batch(i).validate()
        return True
    except (OSError, ValueError, pa.ArrowException):
        return False


def read_part(workdir: Path, index: int) -> tuple[Any, list[list[Any]]]:
    import pyarrow as pa

    path = part_path(workdir, index)
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    errors = json.loads(path.with_suffix(".errors.json").read_text())
    return table, errors


def assemble(workdir: Path, n_chunks: int, output: Path,
             errors_path: Path | None) -> tuple[int, int]:  # fmt: skip
    """Join the parts in chunk order into ``output`` (renamed into place only when complete) and
    their errors into ``errors_path``; return (rows, errors)."""
    return Assembly(workdir, n_chunks, output, errors_path).commit()


class Assembly(Tally):
    """The output, written in chunk order while the job runs: chunks scored by this process are
    ``add``-ed from memory as they finish, the others (committed by an earlier run, or by other
    workers) are read from their parts when their turn comes."""

    def __init__(self, workdir: Path, n_chunks: int, output: Path, errors_path: Path | None,
                 progress: Any = None) -> None:  # fmt: skip
        super().__init__(progress)
        self.workdir, self.n_chunks, self.next = workdir, n_chunks, 0
        output_format(output)
        self._writer = OutputWriter(output, errors_path, workdir)

    def add(self, result: Any) -> None:
        """A chunk's outputs (a ``ChunkResult`` with its table); chunks come in increasing
        order."""
        super().add(result)
        self._catch_up(result.index)
        self._writer.add(result.table, result.error_rows or [])
        self.next = result.index + 1

    def commit(self) -> tuple[int, int]:
        try:
            self._catch_up(self.n_chunks)
            return self._writer.commit()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._writer.abort()

    def _catch_up(self, index: int) -> None:
        while self.next < index:
            self._writer.add(*read_part(self.workdir, self.next))
            self.next += 1


def _replace_with(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name, then rename it to ``path`` (no fsync: see above)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
