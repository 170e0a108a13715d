"""Inputs made up from a signature, for warm-ups, parity checks and speed measurements.

    synthetic_inputs(signature, rows=64)                # floats in [0, 1), integers in [0, 10)
    synthetic_inputs(signature, rows=1, fill="zeros")   # zeros (empty strings for text)

A free first dimension takes ``rows``, other free dimensions ``free``; fixed ones stay. The same
seed gives the same inputs, so a parent and its child are always measured on the same rows.
"""

from __future__ import annotations

import numpy as np

from modelport.errors import InvalidInput
from modelport.signature import Signature


def synthetic_inputs(signature: Signature, rows: int = 1, *, fill: str = "random", seed: int = 0,
                     free: int = 8) -> dict[str, np.ndarray]:  # fmt: skip
    """One array per input of ``signature``; ``fill`` is ``random`` or ``zeros``."""
    if fill not in ("random", "zeros"):
        raise InvalidInput(f"fill must be random or zeros, not {fill!r}")
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = [rows if i == 0 and d < 0 else free if d < 0 else d
                 for i, d in enumerate(spec.shape)]  # fmt: skip
        kind = "U" if spec.dtype == "string" else spec.numpy_dtype.kind
        if fill == "zeros":
            data[spec.name] = np.full(shape, "", dtype=object) if kind == "U" \
                else np.zeros(shape, dtype=spec.numpy_dtype)  # fmt: skip
        elif kind == "f":
            data[spec.name] = rng.random(shape).astype(spec.numpy_dtype)
        elif kind in "iu":
            data[spec.name] = rng.integers(0, 10, shape).astype(spec.numpy_dtype)
        elif kind == "b":
            data[spec.name] = rng.random(shape) < 0.5
        else:
            raise InvalidInput(f"cannot draw random values for input {spec.describe()}; "
                               "pass sample data")  # fmt: skip
    return data
