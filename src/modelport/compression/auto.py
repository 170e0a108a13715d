"""``--auto``: try a set of candidates (quantization variants, pruning levels, a distilled student),
measure each side by side with the parent, register the best one within the accuracy budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.compression import api
from modelport.compression import graph as gx
from modelport.compression.pipeline import Candidate, Outcome, Step
from modelport.compression.quantize import QuantizeConfig, quantize
from modelport.compression.training import TrainConfig
from modelport.errors import InvalidInput, ModelportError
from modelport.registry import Registry

OBJECTIVES = ("latency", "size")


@dataclass
class AutoResult:
    candidates: list[Candidate]
    chosen: Candidate | None
    outcome: Outcome | None
    skipped: list[str] = field(default_factory=list)


def _student_hidden(parent_path: Any) -> tuple[int, ...]:
    try:
        from modelport.compression.mlp import chain

        _, layers, _ = chain(gx.load(parent_path))
        widths = [d.units for d in layers[:-1]]
    except InvalidInput:
        widths = []
    return tuple(max(8, w // 4) for w in widths[:1]) or (32,)


def plan(step: Step, data: Any, labels: Any, train: TrainConfig) -> list[tuple[str, str, Any]]:
    """(label, transform, build) for every candidate worth trying on this model and data."""
    dataset = None if data is None else step.dataset(data, labels)
    builds: list[tuple[str, str, Any]] = []
    variants = [QuantizeConfig(8), QuantizeConfig(16), QuantizeConfig(4)]
    for config in variants:
        label = api.quantization_label(config, False)
        builds.append((label, "quantize", lambda s, d, c=config: quantize(s, d, c, None)))
    if dataset is not None:
        unlabeled = step.dataset(dataset.inputs)
        statics = (
            QuantizeConfig(8, format="qdq"),
            QuantizeConfig(8, per_channel=False, format="qoperator"),
        )
        for static in statics:
            builds.append(
                (
                    api.quantization_label(static, True),
                    "quantize",
                    lambda s, d, c=static: quantize(s, d, c, unlabeled),
                )
            )
    for fraction in (0.25, 0.5):
        builds.append(
            (
                f"prune-structured-{fraction:g}",
                "prune",
                api.structured_build(fraction, step, dataset, train),
            )
        )
    if dataset is not None:
        hidden = _student_hidden(step.parent_path)
        label = "distill-" + "x".join(map(str, hidden))
        builds.append((label, "distill", api.distill_build(step, dataset, hidden, None, train)))
    return builds


def choose(candidates: Sequence[Candidate], objective: str) -> Candidate | None:
    ok = [c for c in candidates if c.within]
    if not ok:
        return None
    if objective == "size":
        return min(
            ok,
            key=lambda c: (
                c.comparison.child.size,
                -c.comparison.speedup(max(c.comparison.child.latency_ms)),
            ),
        )
    # by speed-up at the largest batch: each candidate ran interleaved with the parent, so the
    # ratio compares fairly across candidates measured one after the other on a noisy machine
    return min(
        ok,
        key=lambda c: (
            -c.comparison.speedup(max(c.comparison.child.latency_ms)),
            c.comparison.child.size,
        ),
    )


def auto_compress(
    ref: Any,
    *,
    data: Any = None,
    labels: Any = None,
    objective: str = "latency",
    train: TrainConfig | None = None,
    promote: str | None = None,
    registry: Registry | None = None,
    name: str | None = None,
    **evaluation: Any,
) -> AutoResult:
    if objective not in OBJECTIVES:
        raise InvalidInput(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    train = (train or TrainConfig(epochs=20)).check()
    step = api.make_step(ref, registry, evaluation)
    with step:
        candidates, skipped = [], []
        for label, transform, build in plan(step, data, labels, train):
            try:
                candidates.append(step.build(label, transform, build))
            except ModelportError as exc:  # a variant this model cannot take; say so and go on
                skipped.append(f"{label}: {exc.message}")
        chosen = choose(candidates, objective)
        outcome = None if chosen is None else step.register(chosen, name=name, alias=promote)
        return AutoResult(candidates, chosen, outcome, skipped)
