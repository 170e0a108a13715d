"""In-memory data as a batch source: a NumPy array or a pandas DataFrame, with the calls of a
``FileSource`` (``plan``, ``row_shape``, ``reader``), so it runs through the same pipeline.

    source = MemorySource(x)                 # rows of numbers, or a DataFrame
    infos = source.plan(chunk_rows)          # one pseudo-file, "<memory-array>"
    rows = source.reader(None).read(chunk)   # a slice: no copy
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.batch.sources import Chunk, FileInfo, _kind, row_ranges
from modelport.errors import InvalidInput


class MemorySource:
    """Nothing to resume (the data lives in this process): no part files, and never sent to a
    cluster."""

    resumable = False

    def __init__(self, data: Any) -> None:
        if isinstance(data, np.ndarray):
            if data.ndim == 0 or data.dtype.kind not in "biuf":
                raise InvalidInput("the array must hold rows of numbers")
            self.data, self.format = data, "memory-array"
        elif type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
            import pyarrow as pa

            try:
                self.data = pa.Table.from_pandas(data, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidInput(f"cannot read the DataFrame: {exc}") from None
            self.format = "memory-table"
        else:
            raise InvalidInput(f"cannot score a {type(data).__name__}: pass a path, a NumPy array "
                               "or a pandas DataFrame")  # fmt: skip
        self.name = f"<{self.format}>"

    def plan(
        self, chunk_rows: int, map: Any = None, first_rows: int | None = None
    ) -> list[FileInfo]:
        if isinstance(self.data, np.ndarray):
            rows, columns, shape = len(self.data), {}, tuple(self.data.shape)
        else:
            rows, shape = self.data.num_rows, ()
            columns = {f.name: _kind(f.type) for f in self.data.schema}
        chunks = row_ranges(rows, chunk_rows, min(first_rows or chunk_rows, chunk_rows))
        return [FileInfo(self.name, self.format, rows, columns, shape, chunks)]

    def row_shape(self) -> tuple[int, ...] | None:
        return tuple(self.data.shape[1:]) if isinstance(self.data, np.ndarray) else None

    def reader(self, columns: list[str] | None, span: int = 1) -> MemorySource:
        return self

    def read(self, chunk: Chunk) -> Any:
        if isinstance(self.data, np.ndarray):
            return self.data[chunk.start : chunk.stop]
        return self.data.slice(chunk.start, chunk.rows)
