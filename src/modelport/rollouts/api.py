"""Rollouts in the Python API: start one, watch it, steer it. The CLI and admin routes call these.

    from modelport import rollouts
    r = rollouts.start(registry, "digits", "digits@staging",
                       plan="shadow 20% 60s; canary 5,25,50,100 60s",
                       gates=rollouts.Gates(max_error_rate=0.01, max_p99_ratio=1.5))
    rollouts.status(registry, "digits")       # state, step, the last windows' gate values
    rollouts.pause(registry, "digits"); rollouts.resume(registry, "digits")
    rollouts.promote(registry, "digits")      # or abort; history(registry, "digits")

``start`` checks before anything is stored: the candidate is another version of the same model,
its signature takes what stable's takes and answers the same outputs, it loads and answers a
warm-up call, and (given a golden set) it agrees with stable on it. Serving replicas then pick
the rollout up from the catalogue; the controller moves it on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import Conflict, InvalidInput
from modelport.rollouts.controller import Controller, finish
from modelport.rollouts.decide import Progress, operate, state_of
from modelport.rollouts.gates import Gates, evaluate
from modelport.rollouts.plan import DEFAULT_BAKE, DEFAULT_MIN_SAMPLES, Plan, parse_plan
from modelport.rollouts.preflight import check_compatible, preflight
from modelport.rollouts.tally import Tally
from modelport.uri import ModelRef, validate_alias, validate_name

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.registry.rollouts import Rollout, RolloutDecision

DEFAULT_PLAN = "shadow 20% 60s; canary 5,25,50,100 60s"


def start(
    registry: Registry,
    name: str,
    candidate: str,
    *,
    plan: str = DEFAULT_PLAN,
    gates: Gates | None = None,
    alias: str = "production",
    golden: str | Path | None = None,
    bake: float = DEFAULT_BAKE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    memory_budget_mb: float | None = None,
) -> Rollout:
    """Check the candidate and store a new rollout in its first step. The golden set is
    ``golden``, else the evaluation set stored with the candidate or stable (none: no check);
    ``memory_budget_mb``: the most memory the loaded, warm candidate may add."""
    validate_name(name)
    validate_alias(alias)
    parsed = parse_plan(plan, bake, min_samples)
    gates = gates if gates is not None else Gates()
    ref = ModelRef.parse(
        candidate if (":" in candidate or "@" in candidate) else f"{name}:{candidate}"
    )
    if ref.name != name:
        raise InvalidInput(f"the candidate {candidate!r} is not a version of {name!r}")
    stable = registry.resolve(ModelRef(name, alias=alias))
    chosen = registry.resolve(ref)
    if chosen.version == stable.version:
        raise InvalidInput(
            f"the candidate {chosen.ref} is the stable version ({name}@{alias}): "
            "nothing to roll out"
        )
    registry.rollouts.refuse_second(name)  # before the slow checks; create() checks again
    compatibility = check_compatible(stable.signature, chosen.signature)
    evidence = {"stable": stable.version, "candidate": chosen.version, "plan": parsed.text,
                "signature": compatibility,
                **preflight(registry, stable, chosen, gates, golden, memory_budget_mb)}  # fmt: skip
    now = time.time()
    width = int(gates.window * 1000)
    progress = Progress.starting(now, int(now * 1000) // width * width - width)
    rollout = registry.rollouts.create(
        name, alias=alias, stable=stable.version, candidate=chosen.version,
        candidate_alias=ref.alias, plan=parsed.to_dict(), gates=gates.to_dict(),
        state=state_of(parsed, 0), progress=progress.to_dict(), evidence=evidence,
    )  # fmt: skip
    return _audited(registry, "start", rollout, plan=parsed.text)


def get(registry: Registry, name: str) -> Rollout:
    """The model's active rollout, else its latest."""
    return registry.rollouts.latest(validate_name(name))


def _active(registry: Registry, name: str) -> Rollout:
    rollout = get(registry, name)
    if not rollout.active:
        raise Conflict(f"model {name!r} has no active rollout (the last one, #{rollout.id}, was "
                       f"{rollout.state.replace('_', ' ')})")  # fmt: skip
    return rollout


def pause(registry: Registry, name: str, reason: str = "paused by an operator") -> Rollout:
    rollout = _active(registry, name)
    operate(rollout.state, "pause")
    decision = ("pause", registry.settings.user, {"reason": reason})
    rollout = registry.rollouts.update(rollout, state="paused", reason=reason, decision=decision)
    return _audited(registry, "pause", rollout, reason=reason)


def resume(registry: Registry, name: str) -> Rollout:
    """Go on from the step it was paused in; the step's bake time starts again."""
    rollout = _active(registry, name)
    operate(rollout.state, "resume")
    problem = Controller(registry).problem(rollout)
    if problem is not None:
        raise Conflict(f"cannot resume rollout #{rollout.id}: {problem}")
    plan, gates = Plan.from_dict(rollout.plan), Gates.from_dict(rollout.gates)
    now, width = time.time(), int(gates.window * 1000)
    progress = Progress.starting(now, int(now * 1000) // width * width - width)
    rollout = registry.rollouts.update(
        rollout, state=state_of(plan, rollout.step), progress=progress.to_dict(), reason="",
        decision=("resume", registry.settings.user, {"step": plan.describe(rollout.step)}),
    )  # fmt: skip
    return _audited(registry, "resume", rollout)


def promote(registry: Registry, name: str) -> Rollout:
    """Move the serving alias to the candidate now, skipping the remaining steps."""
    rollout = _active(registry, name)
    operate(rollout.state, "promote")
    done = finish(registry, rollout, "promote", registry.settings.user,
                  {"reason": "promoted by an operator"})  # fmt: skip
    return _audited(registry, "promote", done)


def abort(registry: Registry, name: str, reason: str = "aborted by an operator") -> Rollout:
    """End the rollout; stable keeps serving."""
    rollout = _active(registry, name)
    operate(rollout.state, "abort")
    done = finish(registry, rollout, "abort", registry.settings.user, {"reason": reason})
    return _audited(registry, "abort", done, reason=reason)


def _audited(registry: Registry, verb: str, rollout: Rollout, **detail: Any) -> Rollout:
    registry.audit.append(f"rollout_{verb}", rollout.name, f"rollout #{rollout.id}",
                          stable=rollout.stable, candidate=rollout.candidate,
                          alias=rollout.alias, **detail)  # fmt: skip
    return rollout


def describe(rollout: Rollout) -> str:
    """``canary 2/4 (25%)``, ``paused in shadow (20%)``, ``rolled back``..."""
    plan = Plan.from_dict(rollout.plan)
    if rollout.state in ("shadow", "canary"):
        return plan.describe(rollout.step)
    if rollout.state == "paused":
        return f"paused in {plan.describe(rollout.step)}"
    return rollout.state.replace("_", " ")


def status(registry: Registry, name: str, windows: int = 5) -> dict[str, Any]:
    """The rollout, and its gates evaluated on the last ``windows`` reported windows."""
    rollout = get(registry, name)
    gates = Gates.from_dict(rollout.gates)
    width = int(gates.window * 1000)
    since = int(time.time() * 1000) // width * width - windows * width
    rows = registry.rollouts.windows(rollout.id, since)
    tally = Tally.merged(Tally.from_dict(t) for _, _, t in rows)
    return {
        "rollout": rollout.to_dict(), "step": describe(rollout),
        "replicas": sorted({replica for _, replica, _ in rows}),
        "gates": [r.to_dict() for r in evaluate(gates, tally)],
        "requests": {role: tally.role(role).n for role in ("stable", "candidate", "shadow")},
        "shadow_dropped": tally.dropped,
        "leader": registry.rollouts.holder("rollouts"),
    }  # fmt: skip


def history(registry: Registry, name: str) -> list[tuple[Rollout, list[RolloutDecision]]]:
    """Every rollout of ``name``, newest first, each with its decision log."""
    validate_name(name)
    store = registry.rollouts
    rollouts = store.list(name)
    if not rollouts:
        store.latest(name)  # NotFound, with a hint for unknown model names
    return [(r, store.decisions(r.id)) for r in rollouts]
