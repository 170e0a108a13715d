"""Reading a file of numbers: NPY, NPZ, JSON, CSV (a header line or not) and Parquet.

    data = read_numbers(Path("x.csv"))        # float64 [rows, columns]
    data = read_numbers(Path("x.npz"))        # {"input": array, ...}
    has_header(["a", "b", "c"])               # True: no cell is a number

One rule for CSV header lines everywhere (``predict``, compression data, batch): the first row is
a header when none of its cells is a number, so a data row with one bad value is reported as
such, not silently taken for column names.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, MissingDependency, first_line

SUFFIXES = (".npy", ".npz", ".json", ".csv", ".parquet")


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def has_header(cells: list[str]) -> bool:
    """Whether a CSV file's first row names its columns: none of its cells is a number."""
    return bool(cells) and not any(is_number(cell) for cell in cells)


def read_numbers(path: Path, suffixes: tuple[str, ...] = SUFFIXES) -> Any:
    """The content of a data file: an array (NPY, CSV), a name -> array mapping (NPZ, Parquet)
    or the parsed JSON document; ``suffixes``: the formats the caller takes."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise InvalidInput(f"cannot read {path.name}: use one of {', '.join(suffixes)}")
    if not path.is_file():
        raise InvalidInput(f"data file {path} does not exist")
    if path.stat().st_size == 0:
        raise InvalidInput(f"data file {path} is empty")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        if suffix == ".json":
            return json.loads(path.read_text())
        if suffix == ".csv":
            return _read_csv(path)
        return _read_parquet(path)
    except InvalidInput:
        raise
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {first_line(exc)}") from None


def _read_csv(path: Path) -> np.ndarray:
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise InvalidInput(f"data file {path} is empty")
    if has_header(rows[0]):
        rows = rows[1:]
    if not rows:
        raise InvalidInput(f"data file {path} has a header but no rows")
    if len({len(row) for row in rows}) > 1:
        raise InvalidInput(f"{path}: rows have different numbers of values")
    try:
        return np.array([[float(x) for x in row] for row in rows], dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InvalidInput(f"{path} has a non-numeric value: {exc}") from None


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency("pyarrow", "batch") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own types
        raise InvalidInput(f"cannot read {path}: {first_line(exc)}") from None
    return {name: np.asarray(table.column(name).to_numpy(zero_copy_only=False))
            for name in table.column_names}  # fmt: skip
