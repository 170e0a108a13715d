"""Token log-probabilities in OpenAI's two reply shapes, built from the engine's token events.

    shape = Logprobs(engine, chat=True)
    part = shape.of([event, ...])     # one choice's events, or one streamed chunk's
    # chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}
    # completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}

An event without a ``logprob`` (an end of turn, the token completing a stop string) is not part
of the text and gets no entry. ``text_offset`` counts characters of the token strings from the
start of the completion, across the chunks of a stream (one ``Logprobs`` per choice).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelport.generation.base import TokenEvent


class Logprobs:
    def __init__(self, engine: Any, chat: bool) -> None:
        self.engine = engine
        self.chat = chat
        self.offset = 0

    def token(self, token: int) -> tuple[str, bytes]:
        raw = self.engine.piece(token)
        return raw.decode("utf-8", "replace"), raw

    def of(self, events: Iterable[TokenEvent]) -> dict[str, Any] | None:
        kept = [e for e in events if e.logprob is not None and e.token is not None]
        return self._chat(kept) if self.chat else self._completion(kept)

    def _chat(self, events: list[TokenEvent]) -> dict[str, Any]:
        content = []
        for event in events:
            text, raw = self.token(event.token)
            top = []
            for token, logprob in event.top:
                alt, alt_raw = self.token(token)
                top.append({"token": alt, "logprob": logprob, "bytes": list(alt_raw)})
            content.append(
                {"token": text, "logprob": event.logprob, "bytes": list(raw), "top_logprobs": top}
            )
        return {"content": content, "refusal": None}

    def _completion(self, events: list[TokenEvent]) -> dict[str, Any]:
        tokens, logprobs, tops, offsets = [], [], [], []
        for event in events:
            text, _ = self.token(event.token)
            tokens.append(text)
            logprobs.append(event.logprob)
            top: dict[str, float] = {}
            for token, logprob in event.top:
                top.setdefault(self.token(token)[0], logprob)
            tops.append(top)
            offsets.append(self.offset)
            self.offset += len(text)
        return {
            "tokens": tokens,
            "token_logprobs": logprobs,
            "top_logprobs": tops,
            "text_offset": offsets,
        }
