"""Scoring one chunk: its rows as model inputs, the model in batches, the outputs as a table.

    scorer = Scorer.load(spec, BufferPool(2))     # the model, loaded once per process
    scored = scorer.score(chunk, data)            # Scored(index, table, errors)
    scorer.close()
    quick = Scorer.load(spec, pool, rows=True)    # as it is, taking rows: quicker to load
    best = quick.feature_major()                  # then as batch scores it best, same pool

Bad rows become error rows ``[row, file, file_row, reason]`` (or stop the job, with
``on_error="fail"``). Inputs are laid out in a set of the scorer's ``BufferPool``, one set per
chunk being scored, given back as soon as the model has read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.arrow import arrow_array
from modelport.batch.buffers import Blocks, BufferPool
from modelport.batch.columnar import load_feature_major, load_model
from modelport.batch.job import JobSpec
from modelport.batch.sources import Chunk
from modelport.errors import InvalidInput
from modelport.runtimes import Runtime
from modelport.signature import Signature


@dataclass(frozen=True)
class Scored:
    """A scored chunk: its outputs table (ids first, when asked for) and its error rows."""

    index: int
    table: Any
    errors: list[list[Any]]


class Scorer:
    """A loaded model and how it takes its inputs; ``pool``: the input buffers, one set per chunk
    being scored (shared by the scorers of one job)."""

    def __init__(self, spec: JobSpec, runtime: Runtime, columnar: frozenset[str],
                 pool: BufferPool) -> None:  # fmt: skip
        self.spec, self.runtime, self.columnar, self.pool = spec, runtime, columnar, pool

    @classmethod
    def load(cls, spec: JobSpec, pool: BufferPool | None = None, rows: bool = False) -> Scorer:
        """Feature-major where the backend allows (``columnar``), unless ``rows``. A text
        model's job gets a ``batch.textscorer.TextScorer``, which scores the same way."""
        if spec.fmap.text:
            from modelport.batch.textscorer import TextScorer

            return TextScorer.load(spec)  # type: ignore[return-value]
        loaded = None if rows else load_feature_major(spec)
        runtime, columnar = loaded or (load_model(spec), frozenset())
        return cls(spec, runtime, columnar, pool or BufferPool())

    def feature_major(self) -> Scorer:
        """This model feature-major, sharing the pool; itself when it cannot be (or is)."""
        loaded = None if self.columnar else load_feature_major(self.spec)
        return self if loaded is None else Scorer(self.spec, *loaded, self.pool)

    def score(self, chunk: Chunk, data: Any) -> Scored:
        """The chunk's rows (as its source read them) scored ``batch_size`` rows per call."""
        spec = self.spec
        with self.pool.take() as buffers:
            converted = spec.fmap.convert(data, chunk, buffers, self.columnar,
                                          spec.options.batch_size)  # fmt: skip
            errors = [[row, Path(chunk.file).name, row - chunk.offset + chunk.start, reason]
                      for row, reason in converted.errors]  # fmt: skip
            if errors and spec.options.on_error == "fail":
                row, name, file_row, reason = errors[0]
                raise InvalidInput(f"row {row} ({name}, row {file_row}): {reason}")
            outputs = predict_in_batches(self.runtime, spec.signature, converted.inputs,
                                         spec.options.batch_size, self.columnar)  # fmt: skip
        return Scored(chunk.index, outputs_table(outputs, converted.ids, spec.fmap.id_column),
                      errors)  # fmt: skip

    def close(self) -> None:
        self.runtime.close()


def predict_in_batches(
    runtime: Runtime, signature: Signature, inputs: dict[str, Any], batch_size: int,
    columnar: frozenset[str] = frozenset(),
) -> dict[str, np.ndarray]:  # fmt: skip
    """Score ``inputs`` ``batch_size`` rows at a time, one call after the other; ``columnar``
    inputs ([features, rows] arrays, or ``Blocks``) are cut along their second axis."""
    name, first = next(iter(inputs.items()))
    n = first.shape[1] if name in columnar else len(first)
    if n == 0:
        return {s.name: np.zeros((0, *[max(d, 1) for d in s.shape[1:]]), s.numpy_dtype)
                for s in signature.outputs}  # fmt: skip
    # blocks laid out for another batch size become one [features, rows] array, once
    inputs = {k: np.asarray(v) if isinstance(v, Blocks) and v.batch != batch_size else v
              for k, v in inputs.items()}  # fmt: skip

    def call(start: int) -> dict[str, np.ndarray]:
        stop = start + batch_size
        return runtime.predict({k: v.block(start) if isinstance(v, Blocks) else
                                v[:, start:stop] if k in columnar else v[start:stop]
                                for k, v in inputs.items()})  # fmt: skip

    if n <= batch_size:
        return call(0)
    out: dict[str, np.ndarray] = {}
    for start in range(0, n, batch_size):
        for key, value in call(start).items():
            if key not in out:
                out[key] = np.empty((n, *value.shape[1:]), dtype=value.dtype)
            out[key][start : start + len(value)] = value
    return out


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
