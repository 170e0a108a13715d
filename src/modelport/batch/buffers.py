"""Reusable input arrays for batch scoring, and the feature-major layout of a chunk's inputs.

pool = BufferPool(sets=2)                 # one set of arrays per chunk being scored
with pool.take() as buffers:              # waits while every set is in use
    x = buffers.array("x", (rows, 64), np.float32)
blocks = Blocks.empty(64, rows, batch=4096, dtype=np.float32)   # [features, rows], by batch
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Buffers:
    """One chunk's set of arrays, by key; reused by the next chunk that takes the same set."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def array(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of ``shape``, in this set's buffer named ``key``."""
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if key not in self.arrays or self.arrays[key].size < size:
            self.arrays[key] = np.empty(size, dtype=np.uint8)
        return self.arrays[key][:size].view(dtype).reshape(shape)


class BufferPool:
    """``sets`` sets of reusable input arrays: a chunk takes a set while its inputs are laid out
    and scored, and gives it back when the model is done with them (fresh pages cost more than
    the copy itself). With every set taken, ``take`` waits: inputs in memory never exceed
    ``sets`` chunks, and a set is never overwritten while a model call reads it."""

    def __init__(self, sets: int = 1) -> None:
        self.sets = max(1, sets)
        self._free: queue.SimpleQueue[Buffers] = queue.SimpleQueue()
        for _ in range(self.sets):
            self._free.put(Buffers())

    @contextlib.contextmanager
    def take(self) -> Iterator[Buffers]:
        buffers = self._free.get()
        try:
            yield buffers
        finally:
            self._free.put(buffers)


class Blocks:
    """A feature-major ``[features, rows]`` input stored batch by batch: the values of each
    ``batch`` rows form one contiguous ``[features, batch]`` block, which the runtime takes
    without a copy (a strided ``[:, start:stop]`` view of one array costs it a copy per call)."""

    def __init__(self, flat: np.ndarray, features: int, rows: int, batch: int) -> None:
        self.flat, self.features, self.rows, self.batch = flat, features, rows, batch
        self.shape = (features, rows)
        self.dtype = flat.dtype

    @classmethod
    def empty(cls, features: int, rows: int, batch: int, dtype: np.dtype, key: str = "",
              buffers: Buffers | None = None) -> Blocks:  # fmt: skip
        flat = (buffers or Buffers()).array(key, (features * rows,), dtype)
        return cls(flat, features, rows, batch)

    def block(self, start: int) -> np.ndarray:
        """The ``[features, rows]`` block of the batch that begins at row ``start``."""
        size = min(self.batch, self.rows - start)
        first = start * self.features
        return self.flat[first : first + self.features * size].reshape(self.features, size)

    def set_row(self, j: int, values: np.ndarray) -> None:
        """Feature ``j`` of every row."""
        full = self.rows // self.batch * self.batch
        if full:
            blocks = self.flat[: full * self.features].reshape(-1, self.features, self.batch)
            blocks[:, j, :] = values[:full].reshape(-1, self.batch)
        if full < self.rows:
            self.block(full)[j] = values[full:]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([self.block(s) for s in range(0, self.rows, self.batch)], axis=1) \
            if self.rows else np.empty(self.shape, self.dtype)  # fmt: skip
        return out if dtype is None else out.astype(dtype)
