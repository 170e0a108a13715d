"""The rollout state machine as pure functions: what the controller does after each window.

    decision = decide(plan, gates, step=1, progress=progress, window=window)
    decision.action            # "hold", "advance", "promote" or "rollback"
    decision.progress          # the counters to store (breaches in a row, samples in the step)
    decision.evidence()        # gate values, thresholds, samples and window, for the log

States: ``shadow`` and ``canary`` (the step index says which), ``paused``, and the terminal
``promoted``, ``rolled_back`` and ``aborted``. ``operate`` checks an operator's command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from modelport.errors import Conflict
from modelport.rollouts.gates import GateResult, Gates, evaluate
from modelport.rollouts.plan import Plan, Step
from modelport.rollouts.tally import Tally

RUNNING = ("shadow", "canary")
ACTIVE = (*RUNNING, "paused")
TERMINAL = ("promoted", "rolled_back", "aborted")


@dataclass(frozen=True)
class Progress:
    step_started: float  # epoch seconds the current step began
    passing_since: float  # epoch seconds since when no evaluation breached
    last_window: int = 0  # start (ms) of the last window evaluated
    breaches: int = 0  # breached evaluations in a row
    step_samples: int = 0  # candidate samples seen in the current step
    step_tally: dict | None = None  # the current step's windows so far (Tally.to_dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def starting(cls, now: float, last_window: int = 0) -> Progress:
        return cls(now, now, last_window)


@dataclass(frozen=True)
class Window:
    start: int  # ms since the epoch
    end: int
    rolling: Tally  # the last ``gates.span`` windows, every replica
    latest: Tally  # this window alone


@dataclass(frozen=True)
class Decision:
    action: str
    progress: Progress
    results: tuple[GateResult, ...]
    reason: str
    window: Window

    def evidence(self) -> dict[str, Any]:
        w = self.window
        return {
            "gates": [r.to_dict() for r in self.results],
            "window": {"start_ms": w.start, "end_ms": w.end},
            "breaches_in_a_row": self.progress.breaches,
            "step_samples": self.progress.step_samples,
            "stable_requests": w.rolling.role("stable").n,
            "candidate_requests": w.rolling.role("candidate").n,
            "shadow_runs": w.rolling.role("shadow").n,
            "shadow_dropped": w.rolling.dropped,
            "reason": self.reason,
        }


def decide(plan: Plan, gates: Gates, step: int, progress: Progress, window: Window) -> Decision:
    so_far = Tally.from_dict(progress.step_tally) if progress.step_tally else Tally()
    so_far.add(window.latest)
    results = _results(gates, window.rolling, so_far)
    now = window.end / 1000
    samples = progress.step_samples + window.latest.candidate().n
    breached = [r for r in results if r.ok is False]
    progress = replace(progress, step_tally=so_far.to_dict())
    if breached:
        count = progress.breaches + 1
        p = replace(progress, last_window=window.start, breaches=count, step_samples=samples,
                    passing_since=now)  # fmt: skip
        why = "; ".join(_describe(r) for r in breached)
        if count >= gates.consecutive:
            reason = f"{why} for {count} windows in a row"
            return Decision("rollback", p, results, reason, window)
        return Decision("hold", p, results, f"{why} ({count}/{gates.consecutive})", window)
    p = replace(progress, last_window=window.start, breaches=0, step_samples=samples)
    current = plan.steps[step]
    passed = now - max(p.step_started, p.passing_since)
    if passed >= current.bake and samples >= current.min_samples:
        unjudged = _unjudged(current, results)
        if unjudged:
            return Decision("hold", p, results, f"too few samples to judge {unjudged}", window)
        last = step == len(plan.steps) - 1
        reason = (
            f"every gate passed for {passed:.1f}s (bake {current.bake:g}s) with {samples} "
            f"candidate samples (min {current.min_samples}) in {plan.describe(step)}"
        )
        return Decision("promote" if last else "advance", p, results, reason, window)
    return Decision("hold", p, results, "baking", window)


def _results(gates: Gates, rolling: Tally, so_far: Tally) -> tuple[GateResult, ...]:
    """The gates on the rolling window; a gate with too few samples there is taken over the
    step so far instead (scope "step"): at a low canary weight the rolling window may never
    hold enough of the candidate's requests, and the step must not advance unjudged."""
    results = evaluate(gates, rolling)
    if all(r.ok is not None for r in results):
        return tuple(results)
    longer = {r.gate: r for r in evaluate(gates, so_far)}
    return tuple(
        replace(longer[r.gate], scope="step")
        if r.ok is None and r.gate in longer and longer[r.gate].ok is not None
        else r
        for r in results
    )


def _unjudged(step: Step, results: tuple[GateResult, ...]) -> str:
    """The gates ``step`` needs known before it may advance, that are not yet: the error rate,
    and agreement in a shadow step or latency in a canary step that leaves stable some traffic
    to compare with (at 100% stable answers nothing)."""
    needed = ["error_rate"]
    if step.kind == "shadow":
        needed.append("agreement")
    elif step.weight < 100:
        needed += ["p99_ratio", "p50_ratio"]
    known = {r.gate for r in results if r.ok is not None}
    return ", ".join(g for g in needed if g not in known)


def _describe(result: GateResult) -> str:
    op = ">=" if result.gate == "agreement" else "<="
    within = " in the step so far" if result.scope == "step" else ""
    return (
        f"{result.gate} {result.value:.4g} breaks {op} {result.threshold:g} "
        f"({result.samples} samples{within})"
    )


def state_of(plan: Plan, step: int) -> str:
    return plan.steps[step].kind


def operate(state: str, command: str) -> str:
    """The state after an operator's ``pause``, ``resume``, ``promote`` or ``abort``;
    Conflict when the rollout's state does not allow it (``resume`` returns "running")."""
    if state in TERMINAL:
        raise Conflict(f"the rollout is already {state.replace('_', ' ')}")
    if command == "pause":
        if state == "paused":
            raise Conflict("the rollout is already paused")
        return "paused"
    if command == "resume":
        if state != "paused":
            raise Conflict(f"the rollout is not paused (it is in {state})")
        return "running"
    if command == "promote":
        return "promoted"
    if command == "abort":
        return "aborted"
    raise Conflict(f"unknown rollout command {command!r}")
