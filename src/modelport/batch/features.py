"""How table columns become model inputs, and which rows cannot.

    fmap = FeatureMap.plan(signature, info, columns=["pixel_0", ...], id_column="id")
    with pool.take() as buffers:                  # a set of ``buffers.BufferPool``
        batch = fmap.convert(table_or_array, chunk, buffers)  # inputs, ids, row numbers, errors

Which columns feed which input is planned by ``binding.bind``; this module turns a chunk's rows
into arrays, in buffers a chunk takes from a ``BufferPool`` (``batch.buffers``) and gives back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.batch.arrow import as_numpy
from modelport.batch.buffers import Blocks, Buffers
from modelport.batch.sources import Chunk, FileInfo
from modelport.errors import InvalidInput
from modelport.signature import Signature, TensorSpec


@dataclass(frozen=True)
class Binding:
    """Model input ``input`` fed by ``columns``: ``array`` (NPY), ``vector`` (one numeric column
    per feature), ``scalar`` (one numeric column) or ``list`` (one column of lists)."""

    input: str
    kind: str
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Converted:
    inputs: dict[str, np.ndarray]
    ids: Any  # pyarrow array of the kept rows' ids, or None
    rows: np.ndarray  # job-wide row numbers of the kept rows
    errors: list[tuple[int, str]]  # (job-wide row number, reason), sorted


@dataclass(frozen=True)
class FeatureMap:
    signature: Signature
    bindings: tuple[Binding, ...]
    id_column: str | None = None
    text = False  # a text model's job has a ``batch.text.TextMap`` instead

    @classmethod
    def plan(cls, signature: Signature, info: FileInfo, columns: list[str] | None = None,
             id_column: str | None = None) -> FeatureMap:  # fmt: skip
        """Bind every model input, or raise InvalidInput naming what does not fit (see
        ``binding.bind``)."""
        from modelport.batch.binding import bind

        bindings, id_column = bind(signature, info, columns, id_column)
        return cls(signature, bindings, id_column)

    @property
    def columns(self) -> list[str] | None:
        """The columns to read (None for arrays)."""
        if self.bindings[0].kind == "array":
            return None
        names = [c for b in self.bindings for c in b.columns]
        if self.id_column is not None:
            names.append(self.id_column)
        return list(dict.fromkeys(names))

    @property
    def vector_inputs(self) -> tuple[str, ...]:
        """Inputs fed by feature columns: a runtime may take these feature-major."""
        return tuple(b.input for b in self.bindings if b.kind == "vector")

    def convert(self, data: Any, chunk: Chunk, buffers: Buffers | None = None,
                feature_major: frozenset[str] = frozenset(),
                batch: int = 0) -> Converted:  # fmt: skip
        """Model inputs for the rows that convert; the others as (row number, reason).
        ``buffers``: lay the inputs out in this set of reusable arrays (default: fresh ones).
        ``feature_major``: vector inputs to leave as [features, rows], as the columns come;
        with ``batch``, as ``Blocks`` of that many rows."""
        if not chunk.rows or not _rows(data):
            return self._empty(chunk, feature_major)
        buffers = buffers or Buffers()
        if self.bindings[0].kind == "array":
            spec = self.signature.input(self.bindings[0].input)
            rows = np.arange(chunk.offset, chunk.offset + len(data))
            return Converted({spec.name: _as_dtype(data, spec)}, None, rows, [])
        table = data
        meta = table.schema.metadata or {}
        dropped = json.loads(meta.get(b"dropped", b"[]"))
        physical = np.arange(chunk.rows)
        if dropped:
            physical = np.delete(physical, [i for i, _ in dropped])
        reasons: dict[int, str] = {}  # table row -> first reason
        for i, reason in json.loads(meta.get(b"bad", b"[]")):
            reasons.setdefault(i, reason)
        values = {}
        for binding in self.bindings:
            spec = self.signature.input(binding.input)
            values[spec.name] = _convert(table, binding, spec, reasons, buffers,
                                         spec.name in feature_major, batch)  # fmt: skip
        keep = np.ones(table.num_rows, dtype=bool)
        if reasons:
            keep[list(reasons)] = False
            values = {k: _keep(v, keep, k in feature_major) for k, v in values.items()}
        ids = None
        if self.id_column is not None:
            ids = table.column(self.id_column).combine_chunks()
            ids = ids.filter(keep) if reasons else ids
        errors = [(chunk.offset + int(physical[i]), r) for i, r in reasons.items()]
        errors += [(chunk.offset + i, r) for i, r in dropped]
        return Converted(values, ids, chunk.offset + physical[keep], sorted(errors))

    def _empty(self, chunk: Chunk, feature_major: frozenset[str]) -> Converted:
        """No rows (an empty input, or a chunk of none): inputs of zero rows, of the right shape."""
        import pyarrow as pa

        inputs = {}
        for binding in self.bindings:
            spec = self.signature.input(binding.input)
            inner = [max(d, 1) for d in spec.shape[1:]]
            if binding.kind == "vector":
                inner = [len(binding.columns)]
            shape = (*inner[::-1], 0) if spec.name in feature_major else (0, *inner)
            inputs[spec.name] = np.zeros(shape, spec.numpy_dtype)
        ids = pa.array([], pa.large_string()) if self.id_column is not None else None
        return Converted(inputs, ids, np.zeros(0, np.int64), [])


def _keep(values: Any, keep: np.ndarray, feature_major: bool) -> Any:
    if isinstance(values, Blocks):
        kept = np.asarray(values)[:, keep]
        out = Blocks.empty(kept.shape[0], kept.shape[1], values.batch, values.dtype)
        for j, row in enumerate(kept):
            out.set_row(j, row)
        return out
    return values[:, keep] if feature_major else values[keep]


def _rows(data: Any) -> int:
    return len(data) if isinstance(data, np.ndarray) else data.num_rows


def _convert(table: Any, binding: Binding, spec: TensorSpec, reasons: dict[int, str],
             buffers: Buffers, feature_major: bool = False, batch: int = 0) -> Any:  # fmt: skip
    n = table.num_rows
    if binding.kind == "list":
        return _lists(table.column(binding.columns[0]), binding.columns[0], spec, reasons)
    width = len(binding.columns)
    if feature_major and batch:  # only vector inputs are asked for feature-major
        blocks = Blocks.empty(width, n, batch, spec.numpy_dtype, f"blocks-{binding.input}",
                              buffers)  # fmt: skip
        for j, name in enumerate(binding.columns):
            blocks.set_row(j, _numbers(table.column(name), name, reasons))
        return blocks
    key = f"columns-{binding.input}" if feature_major else "columns"
    by_column = buffers.array(key, (width, n), spec.numpy_dtype)
    for j, name in enumerate(binding.columns):
        by_column[j] = _numbers(table.column(name), name, reasons)
    if feature_major:
        return by_column
    out = buffers.array(f"rows-{binding.input}", (n, width), spec.numpy_dtype)
    _transpose(by_column, out)
    return out.reshape((n, *[d if d >= 0 else 1 for d in spec.shape[1:]]))


def _transpose(by_column: np.ndarray, out: np.ndarray, block: int = 4096) -> None:
    """Columns -> rows, a block of rows at a time (stays in cache: ~4x a plain strided copy)."""
    for start in range(0, by_column.shape[1], block):
        out[start : start + block] = by_column[:, start : start + block].T


def _numbers(column: Any, name: str, reasons: dict[int, str]) -> np.ndarray:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        if column.null_count:
            import pyarrow.compute as pc  # 0.1 s to import: only columns with gaps need it

            for i in np.flatnonzero(as_numpy(column.is_null())):
                reasons.setdefault(int(i), f"missing value in column {name!r}")
            column = pc.fill_null(column, 0)
        if pa.types.is_boolean(kind):
            column = column.cast(pa.int8())
        return as_numpy(column)
    if pa.types.is_null(kind):
        for i in range(len(column)):
            reasons.setdefault(i, f"missing value in column {name!r}")
        return np.zeros(len(column))
    out = np.zeros(len(column))
    for i, value in enumerate(column.to_pylist()):
        if value is None:
            reasons.setdefault(i, f"missing value in column {name!r}")
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            reasons.setdefault(i, f"non-numeric value {_short(value)} in column {name!r}")
    return out


def _lists(column: Any, name: str, spec: TensorSpec, reasons: dict[int, str]) -> np.ndarray:
    import pyarrow as pa

    inner = spec.shape[1:]
    size = int(np.prod(inner)) if inner else 1
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)):  # fmt: skip
        values = column.to_pylist()
    else:
        values = column.to_pylist() if column.null_count else None
        if values is None:
            lengths = as_numpy(pa.compute.list_value_length(column)).astype(np.int64)
            if (lengths == size).all():
                flat = as_numpy(pa.compute.list_flatten(column))
                try:
                    return _as_dtype(flat.reshape((len(column), *inner)), spec)
                except InvalidInput:
                    values = column.to_pylist()
            else:
                values = column.to_pylist()
    out = np.zeros((len(values), size), dtype=spec.numpy_dtype)
    for i, value in enumerate(values):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                reasons.setdefault(i, f"non-numeric value {_short(value)} in column {name!r}")
                continue
        if value is None:
            reasons.setdefault(i, f"missing value in column {name!r}")
            continue
        try:
            row = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            reasons.setdefault(i, f"non-numeric value in column {name!r}")
            continue
        if row.size != size:
            reasons.setdefault(i, f"wrong length: column {name!r} has {row.size} values, the "
                                  f"model expects {size}")  # fmt: skip
            continue
        out[i] = row
    return out.reshape((len(values), *inner))


def _as_dtype(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if array.dtype == spec.numpy_dtype:
        return array
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {spec.name!r} needs numbers, got {array.dtype}")
    return array.astype(spec.numpy_dtype)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
