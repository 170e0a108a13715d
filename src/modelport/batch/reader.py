"""Reading one chunk of a batch input: its rows as a pyarrow.Table (NPY: a NumPy array).

    reader = ChunkReader(columns, span=4)    # one per job; remembers each CSV file's header
    table = reader.read(chunk)               # any chunk a FileSource planned, in any order

Rows that cannot be parsed are not errors here: they are listed in the table's metadata
(``dropped`` or ``bad``) for the feature map to report with their row numbers.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput, first_line

if TYPE_CHECKING:
    from modelport.batch.sources import Chunk


def csv_rows(data: bytes) -> list[list[str]]:
    import csv

    return list(csv.reader(io.StringIO(data.decode("utf-8", errors="replace"))))


def read_csv_bytes(data: bytes, names: list[str]) -> Any:
    """Parse header-less CSV bytes; rows with the wrong number of fields become ``bad`` rows."""
    import pyarrow.csv as pcsv

    dropped: list[tuple[int, str]] = []

    def invalid(row: Any) -> str:
        dropped.append((row.number - 1, f"wrong length: {row.actual_columns} fields, the header "
                                    f"has {row.expected_columns}"))  # fmt: skip
        return "skip"

    table = pcsv.read_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(
            column_names=names, use_threads=False, block_size=max(1 << 20, len(data) + 1)
        ),  # fmt: skip
        parse_options=pcsv.ParseOptions(invalid_row_handler=invalid, ignore_empty_lines=False),
    )
    return table.replace_schema_metadata({"dropped": json.dumps(dropped)}) if dropped else table


class ChunkReader:
    """Reads chunks, in any order; remembers the header of each CSV file.

    ``span=k``: for a reader that takes a file's chunks in order, each Parquet read decodes the
    rows of the next ``k`` chunks at once and hands them out one by one (decoding a row range in
    the middle of a large row group costs about twice as much per row in small pieces). The
    first chunk of each file is read alone, so that work can start on it sooner."""

    def __init__(self, columns: list[str] | None = None, span: int = 1) -> None:
        self.columns = columns
        self.span = max(1, span)
        self._headers: dict[str, list[str]] = {}
        self._decoded: tuple[str, int, Any] | None = None  # (file, first row, polars frame)

    def read(self, chunk: Chunk) -> Any:
        """A pyarrow.Table of the chunk's rows (NPY: a NumPy array). Unreadable rows are listed,
        as (row in chunk, reason), in the schema metadata: ``dropped`` (CSV rows with the wrong
        number of fields, left out of the table) or ``bad`` (JSON Lines, kept as empty rows)."""
        try:
            if not chunk.rows and chunk.format != "npy":
                return _empty_table()
            if chunk.format == "parquet":
                return self._parquet(chunk)
            if chunk.format == "npy":
                return np.array(np.load(chunk.file, mmap_mode="r")[chunk.start : chunk.stop])
            with open(chunk.file, "rb") as handle:
                handle.seek(chunk.byte_start)
                data = handle.read(chunk.byte_stop - chunk.byte_start)
            if chunk.format == "csv":
                return read_csv_bytes(data, self._header(chunk.file))
            if chunk.format == "txt":
                return _read_text_bytes(data)
            return _read_jsonl_bytes(data, self.columns)
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidInput(f"cannot read rows {chunk.start}-{chunk.stop} of {chunk.file}: "
                               f"{first_line(exc)}") from None  # fmt: skip

    def _header(self, file: str) -> list[str]:
        if file not in self._headers:
            with open(file, "rb") as handle:
                self._headers[file] = next(iter(csv_rows(handle.readline())))
        return self._headers[file]

    def _parquet(self, chunk: Chunk) -> Any:
        """The chunk's rows, decoded by polars (about half the CPU time of pyarrow's reader) and
        handed over as Arrow without a copy. Memory holds at most ``span`` chunks of decoded
        rows, not the unbounded read-ahead of a stream. A file's first chunk of numbers is read
        by pyarrow, which planning imported: importing polars costs 0.3 CPU-s, more than a job's
        first part needs altogether."""
        if chunk.start == 0 and (first := _first_numbers(chunk, self.columns)) is not None:
            return first
        import polars as pl

        decoded = self._decoded
        if (
            decoded is None
            or decoded[0] != chunk.file
            or not (decoded[1] <= chunk.start and chunk.stop <= decoded[1] + decoded[2].height)
        ):
            rows = chunk.rows * (self.span if decoded is not None and decoded[0] == chunk.file
                                 else 1)  # fmt: skip
            self._decoded = decoded = None  # free the previous span before decoding the next
            frame = pl.scan_parquet(chunk.file)
            if self.columns is not None:
                frame = frame.select(self.columns)
            decoded = (chunk.file, chunk.start, frame.slice(chunk.start, rows).collect())
            if self.span > 1:
                self._decoded = decoded
        data = decoded[2].slice(chunk.start - decoded[1], chunk.rows)
        return data.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string, not views


def _first_numbers(chunk: Chunk, columns: list[str] | None) -> Any:
    """The first rows of a Parquet file as pyarrow reads them, when every column read holds
    numbers (the types polars would give too); else None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # page by page (64 KiB reads): the first pages of each column, not its whole column chunk
    with pq.ParquetFile(chunk.file, pre_buffer=False, buffer_size=1 << 16) as pf:
        fields = [f for f in pf.schema_arrow if columns is None or f.name in columns]
        if not all(pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                   or pa.types.is_boolean(f.type) for f in fields):  # fmt: skip
            return None
        batches, rows = [], 0
        for batch in pf.iter_batches(chunk.rows, columns=columns):
            batches.append(batch)
            rows += batch.num_rows
            if rows >= chunk.rows:
                break
        table = pa.Table.from_batches(batches).slice(0, chunk.rows)
    return (table if columns is None else table.select(columns)).replace_schema_metadata(None)


def _read_jsonl_bytes(data: bytes, columns: list[str] | None) -> Any:
    import pyarrow as pa

    records: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    lines = data.split(b"\n")  # the planner counted b"\n": bytes.splitlines also splits on \r
    if lines and not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            bad.append((number, "not a JSON object"))
            record = {}
        records.append(record)
    names = columns if columns is not None else list(dict.fromkeys(k for r in records for k in r))
    arrays, nonstring = {}, {}
    for name in names:
        values = [r.get(name, _MISSING) for r in records]
        for i, v in enumerate(values):
            if v is _MISSING and records[i]:
                bad.append((i, f"missing column {name!r}"))
        values = [None if v is _MISSING else v for v in values]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep the text, judge later
            arrays[name] = pa.array([v if v is None or isinstance(v, str) else json.dumps(v)
                                     for v in values])  # fmt: skip
            # which values were not strings, for a column of texts (batch.text)
            nonstring[name] = [i for i, v in enumerate(values)
                               if v is not None and not isinstance(v, str)]  # fmt: skip
    table = pa.table(arrays) if arrays else pa.table({"_": pa.nulls(len(records))})
    meta = {"bad": json.dumps(bad)} if bad else {}
    if nonstring:
        meta["nonstring"] = json.dumps(nonstring)
    return table.replace_schema_metadata(meta) if meta else table


def _read_text_bytes(data: bytes) -> Any:
    """A plain text file's lines as one column, ``text`` (bytes that are not UTF-8: bad rows)."""
    import pyarrow as pa

    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    texts: list[str | None] = []
    bad = []
    for number, line in enumerate(lines):
        try:
            texts.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(None)
            bad.append((number, "not UTF-8 text"))
    table = pa.table({"text": pa.array(texts, pa.string())})
    return table.replace_schema_metadata({"bad": json.dumps(bad)}) if bad else table


_MISSING = object()


def _empty_table() -> Any:
    import pyarrow as pa

    return pa.table({})
