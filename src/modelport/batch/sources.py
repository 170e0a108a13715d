"""Where batch inputs come from: CSV, Parquet, NPY or JSON Lines, as a file, a folder or a glob.

    source = FileSource("data/*.parquet")     # sorted files, one format
    infos = source.plan(chunk_rows)           # rows, columns and chunk boundaries; reads no data
    table = source.reader(columns).read(chunk)  # a pyarrow.Table (or a NumPy array for NPY)

In-memory data (``batch.memory.MemorySource``) is a source with the same three calls.

Chunks are row ranges of one file; a file's first chunk may be shorter (``first_rows``: one model
batch, so a job's first part is committed soon after it starts). CSV and JSON Lines chunks are
located by byte offsets found in one streaming pass over the file (one record per line: quoted
fields may not hold newlines).
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.reader import ChunkReader, csv_rows, read_csv_bytes
from modelport.datafiles import has_header, is_number
from modelport.errors import InvalidInput, first_line

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}  # fmt: skip
_SCAN_BLOCK = 1 << 22


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows ``[start, stop)`` of ``file``; ``offset`` is the first row's number in the whole job."""

    index: int
    file: str
    format: str
    start: int
    stop: int
    offset: int = 0
    byte_start: int = 0
    byte_stop: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What planning learned about one file: rows, column types and chunk boundaries."""

    file: str
    format: str
    rows: int
    columns: dict[str, str]  # name -> "number" | "string" | "list" | "other"
    shape: tuple[int, ...]  # NPY only: the array's shape
    chunks: tuple[tuple[int, int, int, int], ...]  # (start, stop, byte_start, byte_stop)


def format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(
            f"unsupported input format {Path(path).name!r}: use .csv, .parquet, .npy or .jsonl "
            "(or .txt, one text per line, for a text model)"
        )
    return FORMATS[suffix]


def expand(spec: str | Path) -> list[Path]:
    """The input files named by a file, a folder (its supported files) or a glob, sorted."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        format_of(path)
        return [path.absolute()]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
        if any(format_of(p) != "txt" for p in files):  # notes beside data files are not data
            files = [p for p in files if format_of(p) != "txt"]
        if not files:
            raise InvalidInput(f"folder {path} holds no .csv, .parquet, .npy or .jsonl files")
    elif glob.has_magic(text):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise InvalidInput(f"no input files match {text!r}")
        for p in files:
            format_of(p)
    else:
        raise InvalidInput(f"input {text} does not exist")
    formats = {format_of(p) for p in files}
    if len(formats) > 1:
        raise InvalidInput(f"input {text} mixes formats ({', '.join(sorted(formats))}); use one")
    return [p.absolute() for p in files]


class FileSource:
    """The files named by a path, a folder or a glob; chunks of them are read by a
    ``ChunkReader``. A job over files can resume: their parts are kept until the output is whole."""

    resumable = True

    def __init__(self, spec: str | Path) -> None:
        self.name = str(spec)
        self.files = [str(f) for f in expand(spec)]
        self.format = format_of(self.files[0])

    def plan(
        self, chunk_rows: int, map: Any = None, first_rows: int | None = None
    ) -> list[FileInfo]:
        """Every file's plan; ``map`` (an executor's) may plan them elsewhere."""
        if map is None:
            return [plan_file(f, chunk_rows, first_rows) for f in self.files]
        return map(plan_file, self.files, chunk_rows, first_rows)

    def row_shape(self) -> tuple[int, ...] | None:
        """The shape of one row of an NPY input (read from its header), else None."""
        if self.format != "npy":
            return None
        try:
            return tuple(np.load(self.files[0], mmap_mode="r", allow_pickle=False).shape[1:])
        except (OSError, ValueError):
            return None  # planning says what is wrong with the file

    def reader(self, columns: list[str] | None, span: int = 1) -> ChunkReader:
        return ChunkReader(columns, span)


def plan_file(file: str | Path, chunk_rows: int, first_rows: int | None = None) -> FileInfo:
    """Count rows, read column names and types, and cut the file into chunks of ``chunk_rows``
    (the first of ``first_rows``, when that is fewer)."""
    path = Path(file)
    fmt = format_of(path)
    first = min(first_rows or chunk_rows, chunk_rows)
    try:
        if fmt == "parquet":
            return _plan_parquet(path, chunk_rows, first)
        if fmt == "npy":
            return _plan_npy(path, chunk_rows, first)
        return _plan_lines(path, fmt, chunk_rows, first)
    except InvalidInput:
        raise
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {first_line(exc)}") from None
    except Exception as exc:  # pyarrow.ArrowInvalid and friends
        raise InvalidInput(f"cannot read {path}: {first_line(exc)}") from None


def row_ranges(
    rows: int, chunk_rows: int, first_rows: int
) -> tuple[tuple[int, int, int, int], ...]:
    """(start, stop, 0, 0) of each chunk: ``first_rows`` rows, then ``chunk_rows`` each."""
    starts = [0, *range(first_rows, rows, chunk_rows)] if rows else []
    return tuple((s, min(s + (first_rows if s == 0 else chunk_rows), rows), 0, 0) for s in starts)


def _plan_parquet(path: Path, chunk_rows: int, first_rows: int) -> FileInfo:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        rows = pf.metadata.num_rows
        columns = {f.name: _kind(f.type) for f in pf.schema_arrow}
    chunks = row_ranges(rows, chunk_rows, first_rows)
    return FileInfo(str(path), "parquet", rows, columns, (), chunks)


def _plan_npy(path: Path, chunk_rows: int, first_rows: int) -> FileInfo:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim == 0:
        raise InvalidInput(f"{path} holds a scalar, not rows")
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"{path} holds {array.dtype} values, not numbers")
    rows = array.shape[0]
    chunks = row_ranges(rows, chunk_rows, first_rows)
    return FileInfo(str(path), "npy", rows, {}, tuple(array.shape), chunks)


def _plan_lines(path: Path, fmt: str, chunk_rows: int, first_rows: int) -> FileInfo:
    """One pass over the bytes: a chunk boundary after ``first_rows`` lines, then every
    ``chunk_rows`` lines."""
    with open(path, "rb") as handle:
        header = handle.readline() if fmt == "csv" else b""
        first = handle.tell()
        boundaries = [first]
        rows = 0
        in_chunk = chunk_rows - first_rows  # rows of the chunk not yet closed (the first is short)
        position = first
        last_byte = b"\n"
        while block := handle.read(_SCAN_BLOCK):
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            ends = newlines[chunk_rows - in_chunk - 1 :: chunk_rows]
            boundaries.extend((position + ends + 1).tolist())
            rows += len(newlines)
            in_chunk = (in_chunk + len(newlines)) % chunk_rows
            position += len(block)
            last_byte = block[-1:]
        if last_byte != b"\n":
            rows += 1  # a last line without its newline
    if boundaries[-1] != position:
        boundaries.append(position)
    chunks = []
    start = 0
    for begin, end in zip(boundaries, boundaries[1:], strict=False):
        stop = min(start + (chunk_rows if chunks else first_rows), rows)
        chunks.append((start, stop, begin, end))
        start = stop
    if fmt == "txt":  # one text per line: a single column of strings
        return FileInfo(str(path), fmt, rows, {"text": "string"}, (), tuple(chunks))
    columns = _csv_columns(path, header) if fmt == "csv" else _jsonl_columns(path, first)
    return FileInfo(str(path), fmt, rows, columns, (), tuple(chunks))


def _csv_columns(path: Path, header: bytes) -> dict[str, str]:
    if not header.strip():
        raise InvalidInput(f"{path} is empty")
    names = next(iter(csv_rows(header)), [])
    if not names or not any(n.strip() for n in names):
        raise InvalidInput(f"{path} has no header line")
    if not has_header(names):
        raise InvalidInput(f"{path} has no header line (its first line holds numbers): batch "
                           "takes columns by name; add one")  # fmt: skip
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path} repeats a column name in its header")
    with open(path, "rb") as handle:
        handle.readline()
        sample = b"".join(handle.readline() for _ in range(1000))
    table = read_csv_bytes(sample, names) if sample else None
    if table is None or table.num_rows == 0:
        return dict.fromkeys(names, "number")
    # a column is numeric when most of its sampled values are: a stray bad value is a bad row
    kinds = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = _kind(column.type)
        if kind == "string":
            values = [v for v in column.to_pylist() if v not in (None, "")]
            kind = "number" if _numeric_share(values) >= 0.5 else "string"
        kinds[name] = kind
    return kinds


def _numeric_share(values: list[str]) -> float:
    return sum(map(is_number, values)) / len(values) if values else 0.0


def _jsonl_columns(path: Path, first: int) -> dict[str, str]:
    with open(path, "rb") as handle:
        handle.seek(first)
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    return {str(k): _value_kind(v) for k, v in record.items()}
    return {}


def _kind(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) \
            or pa.types.is_boolean(arrow_type) or pa.types.is_null(arrow_type):  # fmt: skip
        return "number"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) \
            or pa.types.is_fixed_size_list(arrow_type):  # fmt: skip
        return "list"
    return "other"


def _value_kind(value: Any) -> str:
    if isinstance(value, bool | int | float) or value is None:
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "other"
