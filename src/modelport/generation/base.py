"""The types of the generation layer: what a request asks, what a stream yields, what a
backend must do.

    params = SamplingParams(max_tokens=64, temperature=0.0, stop=("\\n\\n",), seed=1)
    handle = engine.submit(prompt_ids, params, on_event)   # on_event(TokenEvent) per token
    handle.cancel()                                        # freed within one decode step

A backend (`BatchModel`) only decodes rows of (sequence slot, token, position) and hands back
logits; slots, admission, chunked prefill, sampling, stop strings and cancellation live in the
scheduler, once for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from modelport.errors import InvalidInput

MAX_TOKENS_LIMIT = 1 << 16


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise InvalidInput(f"max_tokens must be an integer, got {self.max_tokens!r}")
        if not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT:
            raise InvalidInput(
                f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {self.max_tokens}"
            )
        if not _number(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            raise InvalidInput(f"temperature must be between 0 and 2, got {self.temperature!r}")
        if not _number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise InvalidInput(f"top_p must be greater than 0 and at most 1, got {self.top_p!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InvalidInput(f"seed must be an integer, got {self.seed!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One step of a sequence: new text (possibly empty while a stop string is held back) and,
    on the last event, why it finished ("stop", "length" or "cancelled")."""

    text: str
    token: int | None
    finish: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


OnEvent = Callable[[TokenEvent], None]


class BatchModel(Protocol):
    """What a generation backend implements: one forward pass over rows of several sequences.

    ``decode`` takes rows (slot, token, position, wants_logits) and returns one logits row per
    row that asked for them, in order. ``forget(slot, start)`` drops that slot's cache from
    position ``start`` on. ``tokenize`` parses special tokens written in the text and adds
    none. ``piece(token)`` is the token's bytes (UTF-8 may split over pieces).
    """

    slots: int
    context: int  # positions per sequence
    vocab: int
    eos: frozenset[int]
    batch: int  # rows per decode call

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> np.ndarray: ...

    def forget(self, slot: int, start: int) -> None: ...

    def tokenize(self, text: str) -> list[int]: ...

    def piece(self, token: int) -> bytes: ...

    def close(self) -> None: ...
