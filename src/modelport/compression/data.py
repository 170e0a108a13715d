"""Calibration, training and evaluation data: npy/npz/csv/parquet files checked against a signature.

data = load_dataset("eval.npy", signature, labels="eval_labels.npy")
data.inputs      # {"input": float32[n, 64]}
data.labels      # int64[n] or None
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.signature import Signature

SUFFIXES = (".npy", ".npz", ".csv", ".parquet")


@dataclass(frozen=True)
class Dataset:
    """Rows of inputs (name -> array, first axis = rows) and optional integer class labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def take(self, n: int) -> Dataset:
        labels = None if self.labels is None else self.labels[:n]
        return Dataset({k: v[:n] for k, v in self.inputs.items()}, labels)

    def batches(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), size):
            yield {k: v[start : start + size] for k, v in self.inputs.items()}


def read_table(path: Path) -> Any:
    """The raw content of a data file: an array, or a mapping of names to arrays (npz/parquet)."""
    from modelport.datafiles import read_numbers

    return read_numbers(path, SUFFIXES)


def _columns_to_matrix(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(v) for v in columns.values()]
    if any(a.dtype == object or a.ndim != 1 for a in arrays):
        raise InvalidInput("table columns must be plain numbers (one feature per column)")
    return np.stack(arrays, axis=1)


def load_inputs(path: Path, signature: Signature) -> dict[str, np.ndarray]:
    """Inputs for ``signature`` from a file; shape and dtype are checked against it."""
    raw = read_table(path)
    if isinstance(raw, dict):
        if set(raw) >= set(signature.input_names):
            raw = {name: raw[name] for name in signature.input_names}
        elif len(signature.inputs) == 1:
            raw = {signature.inputs[0].name: _columns_to_matrix(raw)}
        else:
            raise InvalidInput(
                f"{Path(path).name} holds {sorted(raw)}; the model takes {signature.input_names}"
            )
    elif len(signature.inputs) != 1:
        raise InvalidInput(
            f"the model takes {len(signature.inputs)} inputs {signature.input_names}; "
            "give an .npz file with one array per input"
        )
    else:
        raw = {signature.inputs[0].name: raw}
    inputs = {}
    for spec in signature.inputs:
        array = np.asarray(raw[spec.name])
        want = spec.numpy_dtype.kind
        if array.dtype.kind == "f" and want == "f":
            array = array.astype(spec.numpy_dtype)  # csv gives float64 for a float32 model
        elif array.dtype.kind == "f" and want in "iu" and np.all(np.mod(array, 1) == 0):
            array = array.astype(spec.numpy_dtype)  # whole numbers from csv for token ids
        elif array.dtype.kind in "iu" and want in "iu":
            array = array.astype(spec.numpy_dtype)
        try:
            inputs[spec.name] = spec.coerce(array)
        except InvalidInput as exc:
            raise InvalidInput(f"{Path(path).name}: {exc.message}") from None
        if inputs[spec.name].shape[0] == 0:
            raise InvalidInput(f"data file {path} has no rows")
    rows = {a.shape[0] for a in inputs.values()}
    if len(rows) != 1:
        raise InvalidInput(
            f"{Path(path).name}: inputs have different numbers of rows {sorted(rows)}"
        )
    return inputs


def load_labels(path: Path, n_rows: int, n_classes: int | None) -> np.ndarray:
    """Integer class labels, one per row, each below ``n_classes`` when that is known."""
    raw = read_table(path)
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise InvalidInput(
                f"{Path(path).name} must hold one column of labels, found {sorted(raw)}"
            )
        raw = next(iter(raw.values()))
    labels = np.asarray(raw)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InvalidInput(
            f"labels must be one class index per row, got shape {list(labels.shape)}"
        )
    if labels.dtype.kind == "f":
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise InvalidInput("labels must be integer class indices")
    elif labels.dtype.kind not in "iu":
        raise InvalidInput(f"labels must be integer class indices, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.shape[0] != n_rows:
        raise InvalidInput(f"there are {labels.shape[0]} labels for {n_rows} rows of data")
    if n_classes is not None and (labels.min() < 0 or labels.max() >= n_classes):
        raise InvalidInput(
            f"labels range over [{labels.min()}, {labels.max()}] but the model outputs "
            f"{n_classes} classes"
        )
    return labels


def load_dataset(
    path: str | Path, signature: Signature, labels: str | Path | None = None
) -> Dataset:
    inputs = load_inputs(Path(path), signature)
    n = int(next(iter(inputs.values())).shape[0])
    if labels is None:
        return Dataset(inputs)
    return Dataset(inputs, load_labels(Path(labels), n, n_classes(signature)))


def n_classes(signature: Signature) -> int | None:
    """The class count of a classifier's first output ``[batch, classes]``, if fixed."""
    if not signature.outputs:
        return None
    shape = signature.outputs[0].shape
    if len(shape) != 2:
        raise InvalidInput(
            f"labels need a [batch, classes] output; the first output has shape {list(shape)}"
        )
    return shape[1] if shape[1] > 0 else None


def as_dataset(inputs: Any, signature: Signature, labels: Any = None) -> Dataset:
    """A Dataset from arrays in memory (the Python API), checked like a file would be."""
    if isinstance(inputs, Dataset):
        return inputs
    if isinstance(inputs, (str, Path)):
        return load_dataset(inputs, signature, labels)
    mapping = inputs if isinstance(inputs, Mapping) else {signature.inputs[0].name: inputs}
    checked = signature.coerce_inputs(mapping)
    n = int(next(iter(checked.values())).shape[0])
    if n == 0:
        raise InvalidInput("the data has no rows")
    if labels is None:
        return Dataset(checked)
    if isinstance(labels, (str, Path)):
        return Dataset(checked, load_labels(Path(labels), n, n_classes(signature)))
    tmp = np.asarray(labels)
    if tmp.ndim != 1 or tmp.shape[0] != n or tmp.dtype.kind not in "iu":
        raise InvalidInput(
            f"labels must be {n} integer class indices, got {tmp.dtype}{list(tmp.shape)}"
        )
    k = n_classes(signature)
    if k is not None and (tmp.min() < 0 or tmp.max() >= k):
        raise InvalidInput(
            f"labels range over [{tmp.min()}, {tmp.max()}] but the model outputs {k} classes"
        )
    return Dataset(checked, tmp.astype(np.int64))
