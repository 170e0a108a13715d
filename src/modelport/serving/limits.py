"""Per-client limits (a token bucket and a concurrency cap per API key or client address) and a
global cap on requests in flight that sheds load before latency collapses.

    limiter = Limiter(Limits(rate=50, burst=10, concurrency=4, max_inflight=64))
    limiter.admit("ops")      # Overloaded (429, retry_after) over the key's rate or concurrency,
    try:                      # Busy (503) when the whole server has max_inflight requests
        ...                   # in flight
    finally:
        limiter.release("ops")

A client is the API key's name when keys are on, else the client's address. The limiter lives on
the server's one event loop: no locks. Health routes are never limited (probes must get through).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelport.errors import Busy, InvalidInput, Overloaded

_PRUNE_ABOVE = 4096  # clients remembered before idle ones are forgotten


@dataclass(frozen=True)
class Limits:
    """``rate``: requests per second per client (0: none); ``burst``: how many may come at once
    (0: one second's worth); ``concurrency``: requests in flight per client; ``max_inflight``:
    in flight on the whole server (503 above it). 0 turns each off."""

    rate: float = 0.0
    burst: int = 0
    concurrency: int = 0
    max_inflight: int = 0

    def __post_init__(self) -> None:
        for name in ("rate", "burst", "concurrency", "max_inflight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidInput(f"the limit {name} must be a number >= 0 (0 turns it off)")

    @property
    def enabled(self) -> bool:
        return bool(self.rate or self.concurrency or self.max_inflight)

    @property
    def bucket(self) -> float:
        return float(self.burst or max(1, math.ceil(self.rate)))


class _Client:
    __slots__ = ("tokens", "stamp", "inflight")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens, self.stamp, self.inflight = tokens, stamp, 0


class Limiter:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.inflight = 0
        self._clients: dict[str, _Client] = {}

    def admit(self, client: str) -> None:
        """Count one request of ``client`` in, or raise why it is refused."""
        limits = self.limits
        if limits.max_inflight and self.inflight >= limits.max_inflight:
            raise Busy(f"the server has {self.inflight} requests in flight, its limit: retry soon")
        now = self.clock()
        state = self._clients.get(client)
        if state is None:
            if len(self._clients) >= _PRUNE_ABOVE:
                self._prune(now)
            state = self._clients[client] = _Client(limits.bucket, now)
        if limits.concurrency and state.inflight >= limits.concurrency:
            raise Overloaded(
                f"{client} has {state.inflight} requests in flight, its limit", retry_after=1
            )
        if limits.rate:
            state.tokens = min(limits.bucket, state.tokens + (now - state.stamp) * limits.rate)
            state.stamp = now
            if state.tokens < 1.0:
                wait = math.ceil((1.0 - state.tokens) / limits.rate)
                raise Overloaded(
                    f"{client} is over its limit of {limits.rate:g} requests per second",
                    retry_after=max(1, wait),
                )
            state.tokens -= 1.0
        state.inflight += 1
        self.inflight += 1

    def release(self, client: str) -> None:
        """The end of a request that ``admit`` let in."""
        self.inflight -= 1
        state = self._clients.get(client)
        if state is not None:
            state.inflight -= 1

    def _prune(self, now: float) -> None:
        """Forget clients with nothing in flight whose bucket has refilled (they start full)."""
        rate, full = self.limits.rate, self.limits.bucket
        for name, state in list(self._clients.items()):
            refilled = not rate or state.tokens + (now - state.stamp) * rate >= full
            if state.inflight == 0 and refilled:
                del self._clients[name]
