"""Where a runtime call runs: inline on the event loop when it is cheap, else in a worker thread.

Handing a call to a worker thread and back costs tens to hundreds of microseconds, more than a
small model's whole inference. So a call estimated to take less than ``limit`` seconds runs
inline (a health check then waits at most about ``limit``), and any bigger call (a large batch, a
large model) goes to the thread pool. The estimate is a per-row cost, seeded by timing the warm-up
calls and kept as a moving average of the calls made inline. A call timed in a worker thread also
counts the wait for the GIL, which the busy event loop holds, so it can only lower the estimate:
otherwise a loaded server would talk itself out of ever running inline again.
"""

from __future__ import annotations

import numpy as np


class CallCost:
    __slots__ = ("limit", "per_row")

    def __init__(self, limit: float, per_row: float | None = None) -> None:
        self.limit = limit
        self.per_row = per_row if per_row is not None else limit  # unknown: start off the loop

    def inline(self, rows: int) -> bool:
        return rows * self.per_row < self.limit

    def update(self, seconds: float, rows: int, inline: bool = True) -> None:
        sample = seconds / (rows or 1)
        if inline or sample < self.per_row:
            self.per_row += 0.1 * (sample - self.per_row)


def rows_of(feed: dict[str, np.ndarray]) -> int:
    first = next(iter(feed.values()), None)
    return first.shape[0] if first is not None and first.ndim else 1
