"""Arrow <-> NumPy for numbers, through buffers.

``pa.array(ndarray)``, ``Array.to_numpy()`` and ``Schema.empty_table()`` import pandas on first
use: a second of start-up and ~60 MiB for a process that never needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_NUMPY_NAMES = {"float": "float32", "double": "float64", "halffloat": "float16"}


def numpy_dtype(arrow_type: Any) -> np.dtype | None:
    """The NumPy dtype of a fixed-width numeric Arrow type, else None."""
    name = str(arrow_type)
    name = _NUMPY_NAMES.get(name, name if name.startswith(("int", "uint")) else None)
    return None if name is None else np.dtype(name)


def as_numpy(column: Any) -> np.ndarray:
    """A pyarrow array or chunked array as NumPy, without ChunkedArray.to_numpy (which imports
    pandas: a second of start-up)."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    if len(chunks) == 1:
        return _array_numpy(chunks[0])
    if not chunks:
        return np.zeros(0)
    return np.concatenate([_array_numpy(c) for c in chunks])


def list_values(column: Any) -> np.ndarray:
    """The values of a fixed-size list column (no nulls), flat, as NumPy: the child array's
    slice, where ``flatten()`` would import pyarrow.compute (0.1 s of start-up)."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    parts = []
    for chunk in chunks:
        width = chunk.type.list_size
        parts.append(_array_numpy(chunk.values.slice(chunk.offset * width, len(chunk) * width)))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0)


def _array_numpy(array: Any) -> np.ndarray:
    dtype = numpy_dtype(array.type)
    if dtype is None or array.null_count:
        return array.to_numpy(zero_copy_only=False)
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def arrow_array(values: np.ndarray) -> Any:
    """A NumPy vector as an Arrow array; numbers go through buffers (``pa.array`` on an ndarray
    imports pandas, a second of start-up)."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    if values.dtype.kind in "iuf" and values.ndim == 1:
        arrow_type = pa.from_numpy_dtype(values.dtype)
        return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])
    return pa.array(values)
