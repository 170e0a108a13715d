"""The types of the generation layer: what a request asks, what a stream yields, what a
backend must do.

    params = SamplingParams(max_tokens=64, temperature=0.0, stop=("\\n\\n",), seed=1)
    handle = engine.submit(prompt_ids, params, on_event)   # on_event(TokenEvent) per token
    handle.cancel()                                        # freed within one decode step
    SamplingParams(logprobs=5, grammar=JSON_GBNF)          # log-probabilities, constrained output

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
MAX_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None  # alternatives reported with each token's log-probability
    grammar: str | None = None  # a GBNF grammar the generated text must follow

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
        if self.logprobs is not None and (
            isinstance(self.logprobs, bool)
            or not isinstance(self.logprobs, int)
            or not 0 <= self.logprobs <= MAX_LOGPROBS
        ):
            raise InvalidInput(
                f"logprobs must be an integer between 0 and {MAX_LOGPROBS}, got {self.logprobs!r}"
            )


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One step of a sequence: new text (possibly empty while a stop string is held back) and,
    on the last event, why it finished ("stop", "length", "cancelled" or "error: ...").

    With ``SamplingParams.logprobs`` set, ``logprob`` is the model's log-softmax of ``token``
    at its position and ``top`` the most likely (token, logprob) pairs there; both are unset on
    a token that ends the sequence without being part of its text (an end of turn, the token
    completing a stop string)."""

    text: str
    token: int | None
    finish: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()


OnEvent = Callable[[TokenEvent], None]


class Constraint(Protocol):
    """A grammar followed while decoding one sequence (made by ``BatchModel.constrain``).

    ``allows(token)`` tells whether the token may come next; ``mask(logits)`` sets the logits
    of every token that may not to -inf, in place; ``accept(token)`` advances the grammar."""

    def allows(self, token: int) -> bool: ...

    def mask(self, logits: np.ndarray) -> None: ...

    def accept(self, token: int) -> None: ...

    def close(self) -> None: ...


class BatchModel(Protocol):
    """What a generation backend implements: one forward pass over rows of several sequences.

    ``decode`` takes rows (slot, token, position, wants_logits) and returns one logits row per
    row that asked for them, in order. ``forget(slot, start)`` drops that slot's cache from
    position ``start`` on. ``tokenize`` parses special tokens written in the text and adds
    none. ``piece(token)`` is the token's bytes (UTF-8 may split over pieces).
    ``constrain(grammar)`` compiles a GBNF grammar for one sequence (``InvalidInput`` if it
    does not parse).
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

    def constrain(self, grammar: str) -> Constraint: ...

    def close(self) -> None: ...
