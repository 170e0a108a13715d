"""A shared check: a runtime called from several threads gives each call its own answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def assert_thread_safe(runtime: Any, n_features: int, output: str = "probabilities") -> None:
    name = runtime.signature.inputs[0].name
    batches = [np.full((i + 1, n_features), float(i), np.float32) for i in range(16)]
    expected = [runtime.predict({name: b})[output] for b in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda b: runtime.predict({name: b})[output], batches * 4))
    for i, result in enumerate(got):
        np.testing.assert_array_equal(result, expected[i % 16])
