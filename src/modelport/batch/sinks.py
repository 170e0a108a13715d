"""Where batch outputs go: one committed part per chunk, then one Parquet, CSV or NPY file.

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

import csv
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.arrow import arrow_array, as_numpy, numpy_dtype
from modelport.errors import InvalidInput
from modelport.registry.blobs import _fsync_dir as _fsync  # fsyncs any path by descriptor

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".npy": "npy"}
_PART = re.compile(r"^part-(\d{6})\.arrow$")
_SYNC_EVERY = 16 << 20  # bytes of output written between two syncs while the job runs


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InvalidInput(f"unsupported output format {Path(path).name!r}: use .parquet, .csv "
                           "or .npy")  # fmt: skip
    return OUTPUT_FORMATS[suffix]


def outputs_table(outputs: dict[str, np.ndarray], ids: Any, id_column: str | None) -> Any:
    """Model outputs as a table: 1-D outputs as columns, others as fixed-size lists per row
    (spread over ``name_0 .. name_k`` columns in Parquet and CSV files)."""
    import pyarrow as pa

    arrays, names, shapes = [], [], {}
    if id_column is not None:
        arrays.append(ids)
        names.append(id_column)
    for name, value in outputs.items():
        shapes[name] = list(value.shape[1:])
        if value.ndim == 1:
            arrays.append(arrow_array(value))
        else:
            width = int(np.prod(value.shape[1:]))
            flat = arrow_array(value.reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, width))
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    return table.replace_schema_metadata({"shapes": json.dumps(shapes)})


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


class Collected:
    """The output of a job without an output file: ``add`` chunks in order, ``commit`` returns
    (rows, errors); ``outputs`` then holds each model output as one array."""

    streams = True

    def __init__(self) -> None:
        self.tables: list[Any] = []
        self.error_rows: list[list[Any]] = []
        self.outputs: dict[str, np.ndarray] = {}

    def add(self, result: Any) -> None:
        self.tables.append(result.table)
        self.error_rows.extend(result.error_rows or [])

    def commit(self) -> tuple[int, int]:
        import pyarrow as pa

        tables = [t for t in self.tables if t.num_rows] or self.tables[:1]
        table = pa.concat_tables(tables)
        shapes = json.loads(self.tables[0].schema.metadata[b"shapes"])
        for name, column in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_fixed_size_list(column.type):
                flat = as_numpy(column.combine_chunks().flatten())
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


class Assembly:
    """The output, written in chunk order while the job runs: chunks scored by this process are
    ``add``-ed from memory as they finish, the others (committed by an earlier run, or by other
    workers) are read from their parts when their turn comes. NPY outputs need every part's row
    count first: they are written by ``commit`` alone."""

    def __init__(self, workdir: Path, n_chunks: int, output: Path,
                 errors_path: Path | None) -> None:  # fmt: skip
        self.workdir, self.n_chunks, self.next = workdir, n_chunks, 0
        self.streams = output_format(output) != "npy"
        self._args = (output, errors_path, workdir, n_chunks)
        self._writer: OutputWriter | None = OutputWriter(*self._args) if self.streams else None

    def add(self, result: Any) -> None:
        """A chunk's outputs (a ``ChunkResult`` with its table); chunks come in increasing
        order. Without ``streams`` (NPY) the parts are read by ``commit`` instead."""
        if not self.streams:
            return
        self._catch_up(result.index)
        self._writer.add(result.table, result.error_rows or [])
        self.next = result.index + 1

    def commit(self) -> tuple[int, int]:
        try:
            if self._writer is None:
                self._writer = OutputWriter(*self._args)
            self._catch_up(self.n_chunks)
            return self._writer.commit()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()

    def _catch_up(self, index: int) -> None:
        while self.next < index:
            self._writer.add(*read_part(self.workdir, self.next))
            self.next += 1


class OutputWriter:
    """Chunks' outputs and errors, in chunk order, to temporary files renamed by ``commit``.
    (Feeding it while chunks are scored, instead of assembling after, measured no faster on two
    cores: the encoding competes with reading and scoring for the same CPU.)"""

    def __init__(self, output: Path, errors_path: Path | None, workdir: Path,
                 n_chunks: int = 0) -> None:  # fmt: skip
        self.output, self.errors_path = output, errors_path
        self.format = output_format(output)
        # temporary files live in the work folder: a killed job's are cleared with it
        self.tmp = workdir / f"output.{os.getpid()}.tmp"
        self.err_tmp = workdir / f"errors.{os.getpid()}.tmp" if errors_path else None
        self.rows = self.errors = self._synced = 0
        self._first_schema: Any = None
        self._writer: Any = _NpyWriter(self.tmp, workdir, n_chunks) if self.format == "npy" \
            else None  # fmt: skip
        self._err_handle = open(self.err_tmp, "w", newline="") if self.err_tmp else None  # noqa: SIM115
        self._err_writer = csv.writer(self._err_handle) if self._err_handle else None
        if self._err_writer:
            self._err_writer.writerow(["row", "file", "file_row", "reason"])

    def add(self, table: Any, errors: list[list[Any]]) -> None:
        self._first_schema = self._first_schema or table.schema
        self.errors += len(errors)
        if self._err_writer:
            self._err_writer.writerows(errors)
        if table.num_rows == 0:
            return  # every row of the chunk was bad
        if self._writer is None:
            self._writer = self._open(table.schema)
        self._writer.write(table)
        self.rows += table.num_rows
        self._sync_written()

    def _sync_written(self) -> None:
        """Send what was written so far to disk as it accumulates (in this thread, beside the
        scoring), leaving little for the final fsync to wait for."""
        size = os.stat(self.tmp).st_size
        if size - self._synced >= _SYNC_EVERY:
            descriptor = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fdatasync(descriptor)
            finally:
                os.close(descriptor)
            self._synced = size

    def commit(self) -> tuple[int, int]:
        if self._writer is None:  # no row converted: an empty file with the right columns
            if self._first_schema is None:
                raise InvalidInput("the job has no chunks")
            self._writer = self._open(self._first_schema)
            self._writer.write(_empty(self._first_schema))
        self._writer.close()
        _fsync(self.tmp)
        if self._err_handle:
            self._err_handle.close()
            _fsync(self.err_tmp)
        if self.errors_path is not None:
            if self.errors:
                os.replace(self.err_tmp, self.errors_path)
            else:
                self.err_tmp.unlink(missing_ok=True)
                self.errors_path.unlink(missing_ok=True)  # a stale list would mislead
        _replace_releasing(self.tmp, self.output)
        _fsync_dir(self.output.parent)
        return self.rows, self.errors

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._err_handle:
            self._err_handle.close()
        for path in (self.tmp, self.err_tmp):
            if path is not None:
                path.unlink(missing_ok=True)

    def _open(self, schema: Any) -> Any:
        if self.format == "parquet":
            return _ParquetWriter(self.tmp, schema)
        return _CsvWriter(self.tmp)


class _ParquetWriter:
    """Model outputs are floating-point scores: neither dictionaries nor snappy shrink them (a
    few percent at most) and both cost more CPU than scoring a small model, so float columns are
    stored plain. Other columns (ids, labels) are dictionary-encoded, compressed, with statistics.
    """

    def __init__(self, path: Path, schema: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._schema = flat_schema(schema)
        others = [f.name for f in self._schema if not pa.types.is_floating(f.type)]
        self._writer = pq.ParquetWriter(
            str(path), self._schema, use_dictionary=others,
            compression={f.name: "snappy" if f.name in others else "none" for f in self._schema},
            write_statistics=others,
        )  # fmt: skip

    def write(self, table: Any) -> None:
        self._writer.write_table(flat_columns(table, self._schema))

    def close(self) -> None:
        self._writer.close()


class _CsvWriter:
    def __init__(self, path: Path) -> None:
        self._handle = open(path, "wb")  # noqa: SIM115
        self._header = True

    def write(self, table: Any) -> None:
        import pyarrow.csv as pcsv

        pcsv.write_csv(flat_columns(table), self._handle,
                       pcsv.WriteOptions(include_header=self._header))  # fmt: skip
        self._header = False

    def close(self) -> None:
        self._handle.close()


class _NpyWriter:
    """NPY needs its full shape first: read the parts' row counts, then fill a memory map."""

    def __init__(self, path: Path, workdir: Path, n_chunks: int) -> None:
        import pyarrow as pa

        total, shape, dtype = 0, None, None
        for index in range(n_chunks):
            with pa.memory_map(str(part_path(workdir, index))) as source:
                reader = pa.ipc.open_file(source)
                schema = reader.schema
                total += sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            if len(schema.names) != 1:
                raise InvalidInput("an NPY output holds one output and no id column; write "
                                   "Parquet or CSV instead")  # fmt: skip
            shape = json.loads(schema.metadata[b"shapes"])[schema.names[0]]
            field_type = schema.field(0).type
            dtype = numpy_dtype(getattr(field_type, "value_type", field_type))
        self._array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype,
                                                shape=(total, *shape))  # fmt: skip
        self._at = 0

    def write(self, table: Any) -> None:
        column = table.column(0).combine_chunks()
        if hasattr(column, "flatten"):
            column = column.flatten()
        values = as_numpy(column).reshape((-1, *self._array.shape[1:]))
        self._array[self._at : self._at + len(values)] = values
        self._at += len(values)

    def close(self) -> None:
        if self._array is not None:
            self._array.flush()
            self._array = None


def flat_schema(schema: Any) -> Any:
    """List columns (model outputs) spread over ``name_0 .. name_k``, which hold no nulls."""
    import pyarrow as pa

    fields = []
    for f in schema:
        if pa.types.is_fixed_size_list(f.type):
            fields.extend(pa.field(f"{f.name}_{j}", f.type.value_type, nullable=False)
                          for j in range(f.type.list_size))  # fmt: skip
        else:
            fields.append(f.remove_metadata())
    return pa.schema(fields)


def _empty(schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def flat_columns(table: Any, schema: Any = None) -> Any:
    """List columns spread over ``name_0 .. name_k`` columns (for CSV and DataFrames)."""
    import pyarrow as pa

    arrays, names = [], []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_fixed_size_list(column.type):
            width = column.type.list_size
            flat = as_numpy(column.combine_chunks().flatten()).reshape(-1, width)
            by_column = np.ascontiguousarray(flat.T)  # one transpose, then views
            for j in range(width):
                arrays.append(arrow_array(by_column[j]))
                names.append(f"{name}_{j}")
        else:
            arrays.append(column)
            names.append(name)
    if schema is not None:
        return pa.Table.from_arrays(arrays, schema=schema)
    return pa.Table.from_arrays(arrays, names=names)


def _replace_releasing(source: Path, target: Path) -> None:
    """``os.replace``, with the replaced file's blocks freed by a background thread: freeing a
    large file's blocks (and discarding them, on SSD-backed filesystems) takes milliseconds."""
    try:
        old = os.open(target, os.O_RDONLY)
    except OSError:
        old = None
    try:
        os.replace(source, target)
    finally:
        if old is not None:
            threading.Thread(target=os.close, args=(old,), daemon=True).start()


def _replace_with(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name, then rename it to ``path`` (no fsync: see above)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:  # some filesystems do not sync folders
        pass
