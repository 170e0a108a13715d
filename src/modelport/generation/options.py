"""How a generation engine is opened: slots, context per sequence, threads, queue, chunks.

options = EngineOptions(slots=4, context=2048, threads=2, token_gap_timeout=30.0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from modelport.errors import InvalidInput


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class EngineOptions:
    slots: int = 4  # sequences decoded together
    context: int = 0  # positions per sequence; 0 = the model's, at most 4096
    threads: int = 0  # 0 = one per core
    batch: int = 512  # rows per decode call
    prefill_chunk: int = 256  # prompt tokens computed per step while others decode
    max_queue: int = 64  # waiting sequences before 429
    first_token_timeout: float = 300.0  # seconds from submission (queue included)
    token_gap_timeout: float = 60.0  # seconds between two tokens of a sequence

    def __post_init__(self) -> None:
        for name in ("first_token_timeout", "token_gap_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInput(f"{name} must be a number of seconds > 0, got {value!r}")
        for name in ("slots", "batch", "prefill_chunk", "max_queue"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("context", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be an integer >= 0, got {value!r}")
        if not self.threads:
            object.__setattr__(self, "threads", _cores())
