"""The traffic split: a wrapper with the LoadedModel interface, chosen when a rollout serves.

    board = Board(traffic, comparison)             # one per model under rollout (board.py)
    model = Split(stable, candidate, board)        # what the model set serves as the default
    outputs = await model.infer({"input": x}, "rest")

Per request: an explicit version (``X-Modelport-Version: candidate|stable|N``) wins; else a key
(``X-Modelport-Key``, or the configured input) hashed into 10,000 buckets picks the candidate
when its bucket is under the weight, so raising the weight only moves stable keys; unkeyed
requests are split at random. A candidate failure is answered by stable and counted. In a shadow
step a copy of the request runs on the candidate off the request path and the two replies are
compared there (board.py hands it to a worker process, shadow.py, by default).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from contextvars import ContextVar
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ModelportError
from modelport.rollouts.board import Board, Traffic

if TYPE_CHECKING:
    from modelport.serving.loaded import LoadedModel

BUCKETS = 10_000
KEY_HEADER, VERSION_HEADER = b"x-modelport-key", b"x-modelport-version"

# (sticky key, version override) of the request being served; set by the transport
ROUTE: ContextVar[tuple[bytes | None, bytes | None] | None] = ContextVar("route", default=None)


def route_of(headers: Mapping[bytes, bytes]) -> tuple[bytes | None, bytes | None] | None:
    """The routing headers of a request, or None when it has neither (the common case)."""
    key, version = headers.get(KEY_HEADER), headers.get(VERSION_HEADER)
    return None if key is None and version is None else (key, version)


def bucket(key: bytes, salt: bytes) -> int:
    """A key's bucket in 0..9999: the same on every replica and after restarts."""
    digest = hashlib.blake2b(key, digest_size=8, key=salt[:64]).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class Split:
    """Stable and candidate behind the LoadedModel interface (name, version, signature...)."""

    def __init__(self, stable: LoadedModel, candidate: LoadedModel, board: Board) -> None:
        self.stable = stable
        self.candidate = candidate
        self.board = board
        self.name, self.version, self.record = stable.name, stable.version, stable.record
        self.signature, self.platform = stable.signature, stable.platform
        self.labels, self.batch = stable.labels, stable.batch
        candidate.share_cost(stable)  # both on the event loop, or both in threads
        if board.traffic.shadow:
            board.prepare(candidate)

    @property
    def loaded(self) -> bool:
        return self.stable.loaded

    async def infer(self, inputs: Mapping[str, np.ndarray], protocol: str) -> dict[str, np.ndarray]:
        with self.stable._metrics.request(self.name, self.version, protocol):
            return await self.run(inputs)

    async def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the data plane calls: the candidate's answer when the split sends this request
        there and it succeeds, otherwise stable's."""
        board = self.board
        board.serving()
        try:
            return await self._answer(board, feed)
        finally:
            board.served()

    async def _answer(self, board: Board, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        traffic = board.traffic
        if self._to_candidate(traffic, feed):
            started = perf_counter()
            try:
                outputs = await self.candidate.run(feed)
            except Exception:  # answered by stable below; counted if stable succeeds
                failed = perf_counter() - started
            else:
                board.observe("candidate", perf_counter() - started, True, outputs)
                return outputs
            outputs = await self._stable(feed)
            board.observe("candidate", failed, False)
            return outputs
        outputs = await self._stable(feed)
        if traffic.shadow and random.random() * 100 < traffic.shadow:
            board.offer(self.candidate, feed, outputs)
        return outputs

    async def _stable(self, feed: Mapping[str, np.ndarray]) -> dict:
        started = perf_counter()
        try:
            outputs = await self.stable.run(feed)
        except ModelportError as exc:
            if exc.status >= 500:
                self.board.observe("stable", perf_counter() - started, False)
            raise
        self.board.observe("stable", perf_counter() - started, True, outputs)
        return outputs

    def _to_candidate(self, traffic: Traffic, inputs: Mapping[str, Any]) -> bool:
        route = ROUTE.get()
        key = None
        if route is not None:
            key, version = route
            if version is not None:
                return _override(version, traffic)
        if traffic.mode != "canary":
            return traffic.mode == "candidate"
        if key is None and self.board.key_field is not None:
            key = _field_key(inputs.get(self.board.key_field))
        if key is None:
            return random.random() * 100 < traffic.weight
        return bucket(key, traffic.salt) < traffic.weight * (BUCKETS // 100)


def _override(version: bytes, traffic: Traffic) -> bool:
    text = version.strip().lower()
    if text == b"candidate" or text == str(traffic.candidate).encode():
        return True
    return False  # "stable", stable's number, or anything else: the version that serves


def _field_key(value: Any) -> bytes | None:
    if value is None:
        return None
    first = np.asarray(value).reshape(-1)[:1]
    if not first.size:
        return None
    item = first[0]
    return item if isinstance(item, bytes) else str(item).encode()
