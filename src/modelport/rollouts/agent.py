"""What each server runs for rollouts: follow the catalogue, report tallies, lead when elected.

    agent = RolloutAgent(models, registry, tick=0.25)
    await agent.start()        # from ModelSet.start
    await agent.stop()

Every ``tick`` the agent reads the active rollouts: a new one gets a Board (traffic, tally,
shadow queue) and the model set reconciles (loading the candidate, serving a Split); a changed
one gets its new traffic in one assignment; an ended one routes to whoever won, then the model
set reconciles it away. At each window's end the agent stores its tally. The replica holding the
``rollouts`` lease in the catalogue also runs the Controller; a dead holder's lease expires after
``LEASE_TTL`` and another replica takes over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from modelport.rollouts.board import Board, Traffic
from modelport.rollouts.compare import Comparison
from modelport.rollouts.controller import GRACE, Controller
from modelport.rollouts.gates import Gates
from modelport.rollouts.plan import Plan

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.registry.rollouts import Rollout

log = logging.getLogger("modelport.rollouts")
LEASE = "rollouts"
LEASE_TTL = 2.0  # seconds; the leader renews every LEASE_EVERY
LEASE_EVERY = LEASE_TTL / 4
CONTROL_EVERY = 1.0  # seconds at most between controller ticks while no window closes


def traffic_of(rollout: Rollout) -> Traffic:
    plan = Plan.from_dict(rollout.plan)
    mode, weight = {"promoted": ("candidate", 100)}.get(rollout.state, ("stable", 0))
    shadow = 0
    if rollout.state in ("shadow", "canary"):
        step = plan.steps[rollout.step]
        mode, shadow = rollout.state, step.shadowed
        weight = step.weight if step.kind == "canary" else 0
    return Traffic(rollout.id, rollout.stable, rollout.candidate, mode, weight, shadow)


class RolloutAgent:
    def __init__(self, models: Any, registry: Registry, tick: float = 0.25,
                 key_field: str | None = None, replica: str = "") -> None:  # fmt: skip
        self.models = models  # the ModelSet: .boards, .refresh(), .get()
        self.registry = registry
        self.tick = tick
        self.key_field = key_field
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.controller = Controller(registry, actor=f"controller@{self.replica}")
        self.leading = False
        self._db = ThreadPoolExecutor(1, thread_name_prefix="modelport-rollouts")
        self._task: asyncio.Task | None = None
        self._windows: dict[int, int] = {}  # rollout id -> start (ms) of the window being tallied
        self._leased = 0.0  # monotonic time of the last lease call
        self._controlled: tuple[float, tuple] = (0.0, ())  # the last controller tick: time, marks
        models.metrics.collectors.append(self.metric_lines)

    async def start(self) -> None:
        await self._follow()
        self._task = asyncio.create_task(self._loop(), name="modelport-rollouts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._flush(force=True)
        for board in self.models.boards.values():
            board.close()
            await board.closed()
        if self.leading:
            await self._run(self.registry.rollouts.release, LEASE, self.replica)
        self._db.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self._follow()
                await self._flush()
                await self._lead()
            except Exception as exc:  # the catalogue may be briefly unreachable: keep serving
                log.warning("rollout check failed, traffic unchanged: %s", exc)

    async def _follow(self) -> None:
        active = await self._run(self.registry.rollouts.list, None, True)
        boards = self.models.boards
        changed = False
        for rollout in active:
            board = boards.get(rollout.name)
            traffic = traffic_of(rollout)
            if board is None or board.traffic.rollout_id != rollout.id:
                if board is not None:
                    board.close()
                boards[rollout.name] = self._board(rollout, traffic)
                self._windows[rollout.id] = _window_start(rollout)
                changed = True
            elif board.traffic != traffic:
                board.traffic = traffic
        live = {r.name for r in active}
        for name in [n for n in boards if n not in live]:
            board = boards[name]
            ended = await self._run(self.registry.rollouts.get, board.traffic.rollout_id)
            board.traffic = traffic_of(ended)  # who won serves until the model set reconciles
            await self._flush_board(board, force=True)
            board.close()
            await board.closed()  # no copy runs on the candidate once the model set retires it
            del boards[name]
            changed = True
        if changed:
            await self.models.refresh()

    def _board(self, rollout: Rollout, traffic: Traffic) -> Board:
        record = self.registry.resolve(f"{rollout.name}:{rollout.stable}")
        config = self.models.config
        spec = partial(shadow_spec, self.registry, f"{rollout.name}:{rollout.candidate}",
                       config.runtime)  # fmt: skip
        board = Board(traffic, Comparison.for_signature(record.signature), self.key_field,
                      timeout=config.request_timeout, runner=config.shadow_runner,
                      spec=spec)  # fmt: skip
        board.window_ms = int(Gates.from_dict(rollout.gates).window * 1000)
        return board

    async def _flush(self, force: bool = False) -> None:
        for board in list(self.models.boards.values()):
            await self._flush_board(board, force)

    async def _flush_board(self, board: Board, force: bool = False) -> None:
        """Store the tally of a window that has ended (or, with ``force``, of the current one)."""
        rollout_id = board.traffic.rollout_id
        started = self._windows.get(rollout_id)
        if started is None:
            return
        width = board.window_ms
        now = int(time.time() * 1000)
        if not force and now < started + width:
            return
        tally = board.take_tally()
        self._windows[rollout_id] = now // width * width
        if not tally.empty:
            await self._run(self.registry.rollouts.report, rollout_id, started, self.replica,
                            tally.to_dict())  # fmt: skip

    async def _lead(self) -> None:
        store = self.registry.rollouts
        if not self.models.boards and not self.leading:
            return
        now = time.monotonic()
        if now - self._leased >= LEASE_EVERY:
            self._leased = now
            self.leading = await self._run(store.lease, LEASE, self.replica, LEASE_TTL)
        if self.leading and self._control_due():
            done = await self._run(self.controller.tick)
            if done:
                await self._follow()

    def _control_due(self) -> bool:
        """Whether the controller has something to look at: a window closed on some rollout
        since its last tick (as it counts them: GRACE after the end), or CONTROL_EVERY passed
        (hand-made changes, operator commands)."""
        now = time.time()
        closed = int((now - GRACE) * 1000)
        boards = self.models.boards.values()
        marks = tuple(sorted((b.traffic.rollout_id, closed // b.window_ms) for b in boards))
        last, seen = self._controlled
        if marks == seen and now - last < CONTROL_EVERY:
            return False
        self._controlled = (now, marks)
        return True

    def metric_lines(self) -> list[str]:
        """Prometheus families of the rollouts this replica follows (totals since it began)."""
        out = [
            "# HELP modelport_rollout_requests_total Requests of a rollout by version role.",
            "# TYPE modelport_rollout_requests_total counter",
        ]
        boards = list(self.models.boards.items())
        totals = {name: board.totals for name, board in boards}
        for name, board in boards:
            for role in ("stable", "candidate", "shadow"):
                tally = totals[name].role(role)
                base = f'model="{name}",rollout="{board.traffic.rollout_id}",role="{role}"'
                out.append(f'modelport_rollout_requests_total{{{base},outcome="success"}} '
                           f"{tally.n - tally.errors}")  # fmt: skip
                out.append(f'modelport_rollout_requests_total{{{base},outcome="error"}} '
                           f"{tally.errors}")  # fmt: skip
        for metric, attr, text in (
            ("shadow_compared_rows_total", "compared", "Rows compared with the shadow's reply."),
            ("shadow_agreed_rows_total", "agreed", "Compared rows on which both agreed."),
            ("shadow_dropped_total", "dropped", "Shadow copies dropped by the full queue."),
        ):
            out += [f"# HELP modelport_rollout_{metric} {text}",
                    f"# TYPE modelport_rollout_{metric} counter"]  # fmt: skip
            for name, board in boards:
                labels = f'model="{name}",rollout="{board.traffic.rollout_id}"'
                out.append(f"modelport_rollout_{metric}{{{labels}}} {getattr(totals[name], attr)}")
        for metric, attr, text in (
            ("weight", "weight", "Percent of requests the candidate answers."),
            ("shadow_weight", "shadow", "Percent of stable's requests copied to the candidate."),
        ):
            out += [f"# HELP modelport_rollout_{metric} {text}",
                    f"# TYPE modelport_rollout_{metric} gauge"]  # fmt: skip
            for name, board in boards:
                t = board.traffic
                labels = f'model="{name}",rollout="{t.rollout_id}",mode="{t.mode}"'
                out.append(f"modelport_rollout_{metric}{{{labels}}} {getattr(t, attr)}")
        return out


def shadow_spec(registry: Registry, ref: str, options: Any) -> dict[str, Any]:
    """What a shadow process needs to open the candidate as this server does (in a thread)."""
    from modelport.runtimes import RuntimeOptions

    record = registry.resolve(ref)
    options = options if options is not None else RuntimeOptions.from_settings(registry.settings)
    return {"record": record, "path": str(registry.path(record)), "options": options}


def _window_start(rollout: Rollout) -> int:
    width = int(Gates.from_dict(rollout.gates).window * 1000)
    return int(time.time() * 1000) // width * width
