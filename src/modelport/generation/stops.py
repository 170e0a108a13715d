"""Stop strings held back: text that could still become a stop string is never emitted early.

stops = StopFilter(["\\nUser:"])
stops.feed("Hello\\nUs")   # ("Hello", False): "\\nUs" may be the start of the stop string
stops.feed("er: hi")       # ("", True): the stop string matched; nothing of it is emitted
stops.flush()              # what was held back when generation ends for another reason
"""

from __future__ import annotations

from collections.abc import Iterable


class StopFilter:
    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text safe to emit now, and whether a stop string has matched."""
        if not self.stops:
            return text, False
        buffer = self.held + text
        hits = [(i + len(s), i) for s in self.stops if (i := buffer.find(s)) >= 0]
        if hits:  # the stop string that completes first, as token-by-token decoding meets it
            self.held = ""
            return buffer[: min(hits)[1]], True
        keep = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:k]):
                    keep = k
                    break
        self.held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held
