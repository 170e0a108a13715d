"""The output file of a batch job: Parquet, CSV or NPY, written in chunk order, renamed when whole.

    writer = OutputWriter(output, errors_path, workdir)
    writer.add(table, error_rows)      # chunk after chunk, as they are committed
    writer.commit()                    # fsync, then rename into place: (rows, errors)

What was written is sent to disk as it accumulates (every 16 MiB), so the final fsync has little
left to wait for. An NPY file streams like the others: its header, padded to a fixed size, is
written first and rewritten with the final row count by ``commit``.
"""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.arrow import arrow_array, as_numpy, list_values, numpy_dtype
from modelport.errors import InvalidInput
from modelport.registry.blobs import _fsync_dir as _fsync  # fsyncs any path by descriptor

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".npy": "npy"}
_SYNC_EVERY = 16 << 20  # bytes of output written between two syncs while the job runs
_NPY_HEADER = 128  # bytes: the magic, the version, the length and the padded header dict


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise InvalidInput(f"unsupported output format {Path(path).name!r}: use .parquet, .csv "
                           "or .npy")  # fmt: skip
    return OUTPUT_FORMATS[suffix]


class OutputWriter:
    """Chunks' outputs and errors, in chunk order, to temporary files renamed by ``commit``.
    (Feeding it while chunks are scored, instead of assembling after, measured no faster on two
    cores: the encoding competes with reading and scoring for the same CPU.)"""

    def __init__(self, output: Path, errors_path: Path | None, workdir: Path) -> None:
        self.output, self.errors_path = output, errors_path
        self.format = output_format(output)
        # temporary files live in the work folder: a killed job's are cleared with it
        self.tmp = workdir / f"output.{os.getpid()}.tmp"
        self.err_tmp = workdir / f"errors.{os.getpid()}.tmp" if errors_path else None
        self.rows = self.errors = self._synced = 0
        self._first_schema: Any = None
        self._writer: Any = None
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
        if self.format == "npy":
            return _NpyWriter(self.tmp, schema)
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
        others = [f.name for f in self._schema
                  if not pa.types.is_floating(getattr(f.type, "value_type", f.type))]  # fmt: skip
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
    """Rows appended after a fixed-size header; ``close`` writes the header's final shape."""

    def __init__(self, path: Path, schema: Any) -> None:
        import json

        name = schema.names[0]
        if len(schema.names) != 1:
            raise InvalidInput("an NPY output holds one output and no id column; write "
                               "Parquet or CSV instead")  # fmt: skip
        self._inner = tuple(json.loads(schema.metadata[b"shapes"])[name])
        field_type = schema.field(0).type
        self._dtype = numpy_dtype(getattr(field_type, "value_type", field_type))
        self._handle = open(path, "wb")  # noqa: SIM115
        self._rows = 0
        self._handle.write(self._header())

    def _header(self) -> bytes:
        described = {"descr": np.lib.format.dtype_to_descr(self._dtype), "fortran_order": False,
                     "shape": (self._rows, *self._inner)}  # fmt: skip
        text = repr(described).encode("latin1")
        return b"\x93NUMPY\x01\x00" + (_NPY_HEADER - 10).to_bytes(2, "little") \
            + text.ljust(_NPY_HEADER - 11) + b"\n"  # fmt: skip

    def write(self, table: Any) -> None:
        column = table.column(0)
        values = list_values(column) if hasattr(column.type, "list_size") else as_numpy(column)
        self._handle.write(np.ascontiguousarray(values, self._dtype).data)
        self._rows += table.num_rows

    def close(self) -> None:
        if self._handle.closed:
            return
        self._handle.seek(0)
        self._handle.write(self._header())
        self._handle.close()


def flat_schema(schema: Any) -> Any:
    """List columns (model outputs) spread over ``name_0 .. name_k``, which hold no nulls, but
    for those the schema's ``lists`` metadata keeps whole (a text job's embeddings)."""
    import json

    import pyarrow as pa

    kept = set(json.loads((schema.metadata or {}).get(b"lists", b"[]")))
    fields = []
    for f in schema:
        if pa.types.is_fixed_size_list(f.type) and f.name not in kept:
            fields.extend(pa.field(f"{f.name}_{j}", f.type.value_type, nullable=False)
                          for j in range(f.type.list_size))  # fmt: skip
        else:
            fields.append(f.remove_metadata())
    return pa.schema(fields)


def _empty(schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def flat_columns(table: Any, schema: Any = None) -> Any:
    """List columns spread over ``name_0 .. name_k`` columns (for CSV and DataFrames), but for
    those ``schema`` keeps whole."""
    import pyarrow as pa

    arrays, names = [], []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_fixed_size_list(column.type) and (schema is None
                                                         or name not in schema.names):  # fmt: skip
            width = column.type.list_size
            flat = list_values(column).reshape(-1, width)
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


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:  # some filesystems do not sync folders
        pass
