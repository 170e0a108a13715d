"""The controller: the only code that changes a rollout. It reads the window tallies replicas
report, runs ``decide`` on each closed window, and applies what it says.

    controller = Controller(registry)
    controller.tick()          # every active rollout: check, evaluate new windows, act

Promotion moves the serving alias to the candidate (every replica's model set hot-swaps on it),
then marks the rollout promoted; a controller killed in between finds the alias already moved
and finishes the promotion. A candidate deleted, or an alias moved by hand, pauses the rollout
and says why. Several replicas run one each; ``agent.py`` lets only the lease holder tick.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from modelport.errors import NotFound
from modelport.registry.audit import acting_as
from modelport.rollouts.decide import Decision, Progress, Window, decide, state_of
from modelport.rollouts.gates import Gates
from modelport.rollouts.plan import Plan
from modelport.rollouts.tally import Tally

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.registry.rollouts import Rollout

log = logging.getLogger("modelport.rollouts")
GRACE = 0.3  # seconds after a window's end before it counts as closed (replicas report late)
CATCH_UP = 120  # windows at most evaluated in one tick after a long outage


class Controller:
    def __init__(self, registry: Registry, actor: str = "controller") -> None:
        self.registry = registry
        self.store = registry.rollouts
        self.actor = actor

    def tick(self, now: float | None = None) -> list[str]:
        """Act on every running rollout; returns what was done ("#3 advance", ...)."""
        now = time.time() if now is None else now
        done = []
        for rollout in self.store.list(active_only=True):
            if rollout.state == "paused":
                continue
            action = self.step(rollout, now)
            if action != "hold":
                done.append(f"#{rollout.id} {action}")
        return done

    def step(self, rollout: Rollout, now: float) -> str:
        problem = self.problem(rollout)
        if problem == "promoted":
            finish(self.registry, rollout, "promote", self.actor,
                   {"reason": "the serving alias already points at the candidate"})  # fmt: skip
            return "promote"
        if problem is not None:
            self.store.update(rollout, state="paused", reason=problem,
                              decision=("pause", self.actor, {"reason": problem}))  # fmt: skip
            log.warning("%s: rollout #%d paused: %s", rollout.name, rollout.id, problem)
            return "pause"
        decision = self._evaluate(rollout, now)
        if decision is None:
            return "hold"
        return self._apply(rollout, decision)

    def problem(self, rollout: Rollout) -> str | None:
        """Why the rollout cannot go on (None: it can; "promoted": the alias already moved)."""
        name, reg = rollout.name, self.registry
        try:
            serving = reg.resolve(f"{name}@{rollout.alias}").version
        except NotFound:
            return f"alias {rollout.alias!r} of {name!r} was removed by hand"
        if serving == rollout.candidate:
            return "promoted"
        if serving != rollout.stable:
            return (f"alias {rollout.alias!r} of {name!r} was moved by hand to version "
                    f"{serving} (stable is {rollout.stable})")  # fmt: skip
        try:
            reg.resolve(f"{name}:{rollout.candidate}")
        except NotFound:
            return f"the candidate {name}:{rollout.candidate} was deleted"
        if rollout.candidate_alias:
            try:
                target = reg.resolve(f"{name}@{rollout.candidate_alias}").version
            except NotFound:
                target = None
            if target != rollout.candidate:
                where = "removed" if target is None else f"moved to version {target}"
                return (f"alias {rollout.candidate_alias!r} of {name!r} was {where} by hand "
                        f"(the candidate is {rollout.candidate})")  # fmt: skip
        return None

    def _evaluate(self, rollout: Rollout, now: float) -> Decision | None:
        plan, gates = Plan.from_dict(rollout.plan), Gates.from_dict(rollout.gates)
        progress = Progress(**rollout.progress)
        width = int(gates.window * 1000)
        closed = int((now - GRACE) * 1000)
        start = max(progress.last_window + width, (closed // width - CATCH_UP) * width)
        if start + width > closed:  # no window has closed since the last evaluation
            return None
        rows = self.store.windows(rollout.id, since=start - (gates.span - 1) * width)
        by_window: dict[int, list[Tally]] = {}
        for window, _replica, tally in rows:
            by_window.setdefault(window, []).append(Tally.from_dict(tally))
        decision = None
        k = start
        while k + width <= closed:
            spanned = [t for j in range(k - (gates.span - 1) * width, k + width, width)
                       for t in by_window.get(j, ())]  # fmt: skip
            window = Window(k, k + width, Tally.merged(spanned), Tally.merged(by_window.get(k, ())))
            decision = decide(plan, gates, rollout.step, progress, window)
            progress = decision.progress
            if decision.action != "hold" or progress.breaches:
                return decision
            k += width
        if decision is not None:  # only holds: keep the counters
            self.store.update(rollout, progress=progress.to_dict())
        return None

    def _apply(self, rollout: Rollout, decision: Decision) -> str:
        plan = Plan.from_dict(rollout.plan)
        evidence = decision.evidence()
        if decision.action == "hold":  # a breach not yet sustained: logged as evidence
            self.store.update(rollout, progress=decision.progress.to_dict(),
                              decision=("breach", self.actor, evidence))  # fmt: skip
            return "hold"
        if decision.action == "advance":
            step = rollout.step + 1
            evidence["from"], evidence["to"] = plan.describe(rollout.step), plan.describe(step)
            end = decision.window.end / 1000
            progress = replace(Progress.starting(end), last_window=decision.window.start)
            self.store.update(rollout, state=state_of(plan, step), step=step,
                              progress=progress.to_dict(),
                              decision=("advance", self.actor, evidence))  # fmt: skip
            log.info("%s: rollout #%d advanced to %s", rollout.name, rollout.id,
                     plan.describe(step))  # fmt: skip
            return "advance"
        rollout = self.store.update(rollout, progress=decision.progress.to_dict())
        with acting_as(self.actor, "rollout controller"):  # the audit log's alias move is ours
            finish(self.registry, rollout, decision.action, self.actor, evidence)
        return decision.action


def finish(registry: Registry, rollout: Rollout, action: str, actor: str,
           evidence: dict[str, Any]) -> Rollout:  # fmt: skip
    """End a rollout: ``promote`` (alias to the candidate first), ``rollback`` or ``abort``."""
    state = {"promote": "promoted", "rollback": "rolled_back", "abort": "aborted"}[action]
    if action == "promote":
        current = registry.resolve(f"{rollout.name}@{rollout.alias}").version
        if current != rollout.candidate:
            registry.set_alias(rollout.name, rollout.alias, rollout.candidate)
    reason = str(evidence.get("reason", action))
    done = registry.rollouts.update(rollout, state=state, reason=reason,
                                    decision=(action, actor, evidence))  # fmt: skip
    log.info("%s: rollout #%d %s: %s", rollout.name, rollout.id, state, reason)
    return done
