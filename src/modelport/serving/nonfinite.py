"""NaN and infinities on the wire: told apart from nulls and overflow when read, written as
JSON's missing words when sent.

    check_nonfinite("x", [1, None], array)   # InvalidInput: a null; 1e308 as FP32: out of range
    nonfinite_json(np.array([1.0, np.nan]))  # orjson.Fragment: [1.0,NaN]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelport.errors import InvalidInput
from modelport.signature import out_of_range


def check_nonfinite(name: str, data: Any, array: np.ndarray) -> None:
    """NaN and infinities the client wrote (NaN, Infinity) pass; a NaN that was a null, and a
    finite number too large for the datatype (1e308 as FP32), are refused."""
    flat: list[Any] = []
    flatten(data, flat)
    if any(value is None for value in flat):
        raise InvalidInput(f"input {name!r}: data holds null or non-numbers")
    try:
        wide = np.array(flat, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        wide = np.full(len(flat), np.inf)
    if (np.isinf(array.reshape(-1)) & ~np.isinf(wide)).any():
        raise out_of_range(name, array.dtype)


def flatten(data: Any, out: list[Any], depth: int = 0) -> None:
    if depth > 32:
        raise InvalidInput("tensor data is nested too deeply")
    if isinstance(data, list):
        for item in data:
            flatten(item, out, depth + 1)
    else:
        out.append(data)


_WORDS = {"nan": b"NaN", "inf": b"Infinity", "-inf": b"-Infinity"}


def nonfinite_json(array: np.ndarray) -> orjson.Fragment:
    """A float array as JSON numbers (nested like its shape) with NaN and the infinities written
    ``NaN``, ``Infinity``, ``-Infinity``: not standard JSON, but what TF Serving and Triton write
    and what Python's json and rapidjson (so tritonclient) read. Never ``null``."""
    values = np.asarray(array).astype(np.float64 if array.itemsize > 4 else np.float32)
    finite = np.isfinite(values)
    text = orjson.dumps(np.where(finite, values, 0).reshape(-1), option=orjson.OPT_SERIALIZE_NUMPY)
    tokens = text[1:-1].split(b",")
    flat = values.reshape(-1)
    for index in np.flatnonzero(~finite.reshape(-1)):
        tokens[index] = _WORDS[str(flat[index])]
    if values.ndim == 0:
        return orjson.Fragment(tokens[0])
    return orjson.Fragment(_nest(tokens, values.shape))


def _nest(tokens: list[bytes], shape: tuple[int, ...]) -> bytes:
    if len(shape) == 1:
        return b"[" + b",".join(tokens) + b"]"
    step = len(tokens) // shape[0] if shape[0] else 0
    parts = [_nest(tokens[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
    return b"[" + b",".join(parts) + b"]"
