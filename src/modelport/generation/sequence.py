"""One submitted sequence: its prompt, sampling state, stop filter, grammar and place in a slot.

    handle = scheduler.submit(prompt_ids, SamplingParams(max_tokens=32), on_event)
    handle.cancel()      # safe from any thread, at any time; freed within one decode step

The scheduler's decode thread owns every field but ``cancelled``.
"""

from __future__ import annotations

import codecs
import itertools
from time import perf_counter

from modelport.generation.base import OnEvent, SamplingParams
from modelport.generation.sampling import make_rng
from modelport.generation.stops import StopFilter

_ids = itertools.count(1)


class Handle:
    """One submitted sequence; ``cancel`` is safe from any thread, at any time."""

    __slots__ = (
        "id",
        "prompt",
        "params",
        "on_event",
        "rng",
        "stops",
        "utf8",
        "slot",
        "pos",
        "pending",
        "generated",
        "cancelled",
        "done",
        "submitted",
        "cached",
        "constraint",
        "last",
        "_wake",
    )

    def __init__(self, prompt: list[int], params: SamplingParams, on_event: OnEvent, wake) -> None:
        self.id = next(_ids)
        self.prompt, self.params, self.on_event = prompt, params, on_event
        self.rng = make_rng(params.seed)
        self.stops = StopFilter(params.stop)
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.slot: int | None = None
        self.pos = 0  # tokens of this sequence in the slot's cache
        self.pending: list[int] = []
        self.generated = 0
        self.cancelled = self.done = False
        self.submitted = self.last = perf_counter()
        self.cached = 0  # prompt tokens reused from the slot's cache
        self.constraint = None
        self._wake = wake

    def cancel(self) -> None:
        self.cancelled = True
        self._wake()
