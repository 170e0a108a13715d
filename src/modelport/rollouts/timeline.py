"""A PNG timeline of one rollout: candidate weight, error rates, p99 latency and agreement per
window, with the decisions marked.

    path = timeline(registry, "digits", "digits-rollout.png")     # the latest rollout
    path = timeline(registry, "digits", "r3.png", rollout_id=3)

matplotlib is imported here only (``pip install 'modelport[rollouts]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidInput, MissingDependency, NotFound
from modelport.rollouts.plan import Plan
from modelport.rollouts.tally import Tally

if TYPE_CHECKING:
    from modelport.registry import Registry


def series(registry: Registry, rollout_id: int) -> dict[str, list[Any]]:
    """Per window (merged over replicas): seconds since the start, weight, error rates, p99s,
    agreement. Plain lists, for the plot and for tests."""
    store = registry.rollouts
    rollout = store.get(rollout_id)
    plan = Plan.from_dict(rollout.plan)
    decisions = store.decisions(rollout_id)
    by_window: dict[int, Tally] = {}
    for window, _replica, tally in store.windows(rollout_id):
        by_window.setdefault(window, Tally()).add(Tally.from_dict(tally))
    t0 = rollout.created_at.timestamp()
    steps = [(d.at.timestamp(), d.action) for d in decisions if d.action == "advance"]
    out: dict[str, list[Any]] = {k: [] for k in ("t", "weight", "stable_errors",
                                                 "candidate_errors", "stable_p99_ms",
                                                 "candidate_p99_ms", "agreement")}  # fmt: skip
    for window in sorted(by_window):
        tally = by_window[window]
        at = window / 1000
        step = min(sum(1 for when, _ in steps if when <= at), len(plan.steps) - 1)
        stable, runs = tally.role("stable"), tally.candidate()
        out["t"].append(at - t0)
        out["weight"].append(plan.steps[step].weight)
        out["stable_errors"].append(stable.errors / stable.n if stable.n else None)
        out["candidate_errors"].append(runs.errors / runs.n if runs.n else None)
        for role, key in (("stable", "stable_p99_ms"), ("candidate", "candidate_p99_ms")):
            p99 = (
                tally.role(role).p99()
                or tally.role("shadow" if role == "candidate" else role).p99()
            )
            out[key].append(None if p99 is None else p99 * 1000)
        out["agreement"].append(tally.agreed / tally.compared if tally.compared else None)
    out["decisions"] = [(d.at.timestamp() - t0, d.action) for d in decisions]
    return out


def timeline(registry: Registry, name: str, path: str | Path,
             rollout_id: int | None = None) -> Path:  # fmt: skip
    """Draw the rollout (the model's latest unless ``rollout_id``) into a PNG at ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("matplotlib", "rollouts") from None
    rollout = (
        registry.rollouts.latest(name) if rollout_id is None else registry.rollouts.get(rollout_id)
    )
    if rollout.name != name:
        raise NotFound(f"rollout #{rollout.id} is of {rollout.name!r}, not {name!r}")
    data = series(registry, rollout.id)
    if not data["t"]:
        raise InvalidInput(f"rollout #{rollout.id} of {name!r} has no traffic reported yet")
    path = Path(path)
    fig, axes = plt.subplots(4, 1, figsize=(9, 8), sharex=True)
    t = data["t"]
    panels = [
        ("candidate weight %", [("weight", "weight")]),
        ("error rate", [("stable_errors", "stable"), ("candidate_errors", "candidate")]),
        ("p99 ms", [("stable_p99_ms", "stable"), ("candidate_p99_ms", "candidate")]),
        ("shadow agreement", [("agreement", "agreement")]),
    ]
    for ax, (label, lines) in zip(axes, panels, strict=True):
        for key, legend in lines:
            points = [(x, y) for x, y in zip(t, data[key], strict=True) if y is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=legend, drawstyle="steps-post")
        ax.set_ylabel(label)
        for at, action in data["decisions"]:
            if action != "breach":
                ax.axvline(at, color="grey", linestyle=":", linewidth=0.8)
        if len(lines) > 1:
            ax.legend(loc="upper right", fontsize=8)
    for at, action in data["decisions"]:
        if action != "breach":
            axes[0].annotate(action, (at, 100), fontsize=7, rotation=90, va="top")
    axes[-1].set_xlabel("seconds since the start")
    fig.suptitle(f"{name}: rollout #{rollout.id}, {rollout.stable} -> {rollout.candidate} "
                 f"({rollout.state.replace('_', ' ')})")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
