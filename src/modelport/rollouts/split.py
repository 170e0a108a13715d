"""The traffic split: a wrapper with the LoadedModel interface, chosen when a rollout serves.

    board = Board(traffic, comparison)             # one per model under rollout (agent.py)
    model = Split(stable, candidate, board)        # what the model set serves as the default
    outputs = await model.infer({"input": x}, "rest")

Per request: an explicit version (``X-Modelport-Version: candidate|stable|N``) wins; else a key
(``X-Modelport-Key``, or the configured input) hashed into 10,000 buckets picks the candidate
when its bucket is under the weight, so raising the weight only moves stable keys; unkeyed
requests are split at random. A candidate failure is answered by stable and counted. In a shadow
step a copy of the request runs on the candidate off the request path, through a bounded queue
that drops (and counts) what it cannot take; a copy starts only while no request of the model is
being served, so it never holds up a reply (under saturation copies wait, then drop); the two
replies are compared as they come.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ModelportError
from modelport.rollouts.compare import Comparison
from modelport.rollouts.shadow import ShadowProcess, ShadowThread
from modelport.rollouts.tally import ROLES, Tally

if TYPE_CHECKING:
    from modelport.serving.loaded import LoadedModel

log = logging.getLogger("modelport.rollouts")
BUCKETS = 10_000
KEY_HEADER, VERSION_HEADER = b"x-modelport-key", b"x-modelport-version"
SHADOW_QUEUE = 256
CLASS_BATCH = 64  # replies whose output classes are counted together

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


@dataclass(frozen=True)
class Traffic:
    """What the catalogue says for one model now; replaced whole by the agent."""

    rollout_id: int
    stable: int
    candidate: int
    mode: str  # "shadow", "canary", "stable" (paused or rolled back), "candidate" (promoted)
    weight: int  # percent of requests the candidate answers (canary)
    shadow: int = 0  # percent of the requests stable answers that are copied to the candidate

    @property
    def salt(self) -> bytes:
        return b"rollout-%d" % self.rollout_id


class Board:
    """The live state of one model's rollout on this replica: traffic, the window's tally,
    running totals for Prometheus, and the shadow copies' runner.

    ``runner``: where copies run: "process" (a worker process opening the candidate from
    ``spec()``, see shadow.py), "thread" (a worker thread on the candidate loaded here) or
    "loop" (on the event loop, between requests); a runner that fails falls back to the loop."""

    def __init__(self, traffic: Traffic, comparison: Comparison, key_field: str | None = None,
                 queue_size: int = SHADOW_QUEUE, timeout: float = 30.0, runner: str = "loop",
                 spec: Callable[[], dict] | None = None) -> None:  # fmt: skip
        self.traffic = traffic
        self.comparison = comparison
        self.key_field = key_field
        self.tally = Tally()  # the window's; swapped for a fresh one by take_tally()
        self._replies: dict[str, list] = {role: [] for role in ROLES}  # classes not yet counted
        self._past = Tally()  # the windows taken since this replica began following the rollout
        self.queue_size = queue_size
        self.runner = runner
        self.spec = spec
        self._runner: ShadowProcess | ShadowThread | None = None
        self._closing: list[asyncio.Task] = []
        self._queue: asyncio.Queue = asyncio.Queue(queue_size)
        self._timeout = timeout
        self._worker: asyncio.Task | None = None
        self.window_ms = 1000  # the rollout's window width
        self._serving = 0  # requests of the model being answered now
        self._quiet = asyncio.Event()  # set while none is: when copies on the loop may run
        self._quiet.set()

    @property
    def totals(self) -> Tally:
        """Everything since this replica began following the rollout (output classes left out)."""
        total = Tally.merged((self._past, self.tally))
        for role in total.roles.values():
            role.classes = {}
        return total

    def take_tally(self) -> Tally:
        """The window's tally, replaced by a fresh one; its counts stay in the totals."""
        for role in ROLES:
            self._classify(role)
        tally, self.tally = self.tally, Tally()
        self._past.add(tally)
        return tally

    def serving(self) -> None:
        self._serving += 1
        self._quiet.clear()

    def served(self) -> None:
        self._serving -= 1
        if not self._serving:
            self._quiet.set()

    def observe(self, role: str, seconds: float, ok: bool, outputs: Any = None) -> None:
        """One reply; its output classes are counted CLASS_BATCH replies at a time."""
        self.tally.roles[role].observe(seconds, ok)
        if outputs is not None:
            replies = self._replies[role]
            replies.append(outputs[self.comparison.output])
            if len(replies) >= CLASS_BATCH:
                self._classify(role)

    def _classify(self, role: str) -> None:
        replies = self._replies[role]
        if replies:
            counted = self.comparison.count_classes(replies)
            replies.clear()
            tally = self.tally.roles[role]
            for label, n in counted.items():
                tally.count(label, n)

    def merge(self, tally: Tally) -> None:
        """Counts a shadow runner sends back."""
        self.tally.add(tally)

    def prepare(self, candidate: LoadedModel) -> None:
        """Start the shadow runner (a process opens the candidate meanwhile), if not started."""
        if self._runner is None and self.runner != "loop":
            self._runner = self._start(candidate)

    async def ready(self) -> None:
        """Wait until the shadow runner takes copies (at once when they run on the loop)."""
        if self._runner is not None:
            await self._runner.ready.wait()

    def offer(self, candidate: LoadedModel, inputs: Any, outputs: dict[str, np.ndarray]) -> None:
        """Hand over a shadow copy; past the bound it is dropped (counted), never waited for."""
        runner = self._runner
        if runner is None and self.runner != "loop":
            runner = self._runner = self._start(candidate)
        if runner is not None and runner.failed is None:
            if not runner.offer(inputs, outputs):
                self.tally.dropped += 1
            return
        try:
            self._queue.put_nowait((candidate, inputs, outputs))
        except asyncio.QueueFull:
            self.tally.dropped += 1
            return
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._shadows())

    def _start(self, candidate: LoadedModel) -> ShadowProcess | ShadowThread | None:
        if self.runner == "process" and self.spec is not None:
            return ShadowProcess(self.spec, self.comparison, self.merge, self.queue_size)
        if self.runner == "thread":
            return ShadowThread(candidate.runtime, self.comparison, self.merge, self.queue_size)
        self.runner = "loop"
        return None

    async def _shadows(self) -> None:
        while True:
            candidate, inputs, primary = await self._queue.get()
            try:
                await self._quiet.wait()  # replies first: a copy runs between requests
                await self._shadow(candidate, inputs, primary)
            finally:
                self._queue.task_done()

    async def _shadow(self, candidate: LoadedModel, inputs: Any, primary: dict) -> None:
        started = perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                outputs = await candidate.infer(inputs, "shadow")
        except Exception as exc:  # a shadow failure is evidence, never the client's error
            log.debug("shadow call failed: %s", exc)
            self.observe("shadow", perf_counter() - started, False)
            return
        self.observe("shadow", perf_counter() - started, True, outputs)
        self.tally.compared_rows(*self.comparison.compare(primary, outputs))

    async def drained(self) -> None:
        """Wait until every shadow copy handed over so far has run and been counted."""
        if self._runner is not None:
            await self._runner.drained()
        await self._queue.join()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if self._runner is not None:
            self._closing.append(asyncio.get_running_loop().create_task(self._runner.close()))
            self._runner = None

    async def closed(self) -> None:
        """Wait until the runner closed by ``close`` has stopped (its process has exited)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
            self._closing.clear()


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
