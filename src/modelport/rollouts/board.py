"""One model's rollout on this replica: the traffic it follows, the window's tally, the shadows.

    board = Board(traffic, comparison, runner="process", spec=spec)   # made by agent.py
    board.observe("stable", 0.0012, ok=True, outputs=outputs)        # what Split counts
    board.offer(candidate, inputs, outputs)                           # a shadow copy
    tally = board.take_tally()                                        # at a window's end
    board.totals.role("shadow").n                                     # for Prometheus

The agent replaces ``traffic`` whole when the catalogue changes. Per request the board only
counts (outcome, latency bucket, and the reply kept for its output class, counted CLASS_BATCH
replies at a time); the totals are the taken windows plus the current one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.rollouts.compare import Comparison
from modelport.rollouts.shadow import ShadowProcess, ShadowThread
from modelport.rollouts.tally import ROLES, Tally

if TYPE_CHECKING:
    from modelport.serving.loaded import LoadedModel

log = logging.getLogger("modelport.rollouts")
SHADOW_QUEUE = 256
CLASS_BATCH = 64  # replies whose output classes are counted together


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
        for role in self._past.roles.values():
            role.classes.clear()  # the totals leave them out: keep them from growing
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
            try:
                counted = self.comparison.count_classes(replies)
            except Exception as exc:  # never a client's error: these replies go unclassified
                log.warning("output classes not counted: %s", exc)
                counted = {}
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
            try:
                taken = runner.offer(inputs, outputs)
            except Exception as exc:  # a copy that cannot be handed over is dropped, not raised
                log.warning("shadow copy dropped: %s", exc)
                taken = False
            if not taken:
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
        """The runner this board was asked for; the loop (None) when it cannot be had."""
        try:
            if self.runner == "process" and self.spec is not None:
                return ShadowProcess(self.spec, self.comparison, self.merge, self.queue_size)
            if self.runner == "thread":
                return ShadowThread(candidate.runtime, self.comparison, self.merge,
                                    self.queue_size)  # fmt: skip
        except Exception as exc:  # e.g. the candidate unloaded meanwhile
            log.warning("shadow copies run on the event loop: %s", exc)
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
