"""A rollout plan: the steps a candidate goes through, parsed from one line.

    plan = parse_plan("shadow 20% 60s; canary 5,25,50,100 60s min 200")
    plan.steps[1]            # Step(kind="canary", weight=5, bake=60.0, min_samples=200)
    plan.describe(1)         # "canary 1/4 (5%)"

A step is ``shadow P%`` (a copy of P% of the requests runs on the candidate, off the request
path) or ``canary W1,W2,...`` (W% of the requests are answered by the candidate), then an
optional bake time (``90s``, ``2m``, ``500ms``; default 60s), ``min N`` samples the candidate
must see in the step before it may advance, and for a canary ``shadow P%``: P% of the requests
stable answers are also copied to the candidate, so agreement stays measured. Shadow steps come
first; canary weights increase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelport.errors import InvalidInput

DEFAULT_BAKE = 60.0
DEFAULT_MIN_SAMPLES = 100
_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class Step:
    kind: str  # "shadow" or "canary"
    weight: int  # percent of requests copied (shadow) or answered (canary) by the candidate
    bake: float  # seconds every gate must pass before the next step
    min_samples: int  # candidate samples needed in the step before it may advance
    shadow: int = 0  # canary steps: percent of the requests stable answers also shadowed

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "weight": self.weight, "bake": self.bake,
                "min_samples": self.min_samples, "shadow": self.shadow}  # fmt: skip

    @property
    def shadowed(self) -> int:
        """Percent of the requests stable answers that are copied to the candidate."""
        return self.weight if self.kind == "shadow" else self.shadow


@dataclass(frozen=True)
class Plan:
    text: str
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(data["text"], tuple(Step(**s) for s in data["steps"]))

    def describe(self, index: int) -> str:
        """``shadow (20%)`` or ``canary k/n (W%)`` for step ``index``."""
        step = self.steps[index]
        if step.kind == "shadow":
            return f"shadow ({step.weight}%)"
        canaries = [i for i, s in enumerate(self.steps) if s.kind == "canary"]
        also = f", shadow {step.shadow}%" if step.shadow else ""
        return f"canary {canaries.index(index) + 1}/{len(canaries)} ({step.weight}%{also})"


def parse_plan(
    text: str, bake: float = DEFAULT_BAKE, min_samples: int = DEFAULT_MIN_SAMPLES
) -> Plan:
    """Parse and check a plan; every mistake is an InvalidInput naming the part at fault."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("the plan is empty; e.g. 'shadow 20% 60s; canary 5,25,50,100 60s'")
    _check_bake(bake, "the default bake time")
    if not isinstance(min_samples, int) or min_samples < 1:
        raise InvalidInput(f"min samples must be an integer >= 1, got {min_samples!r}")
    steps: list[Step] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            raise InvalidInput(f"the plan {text!r} has an empty step")
        steps.extend(_parse_step(part, bake, min_samples))
    _check_order(steps)
    return Plan(text.strip(), tuple(steps))


def _parse_step(part: str, bake: float, min_samples: int) -> list[Step]:
    words = part.split()
    kind = words[0].lower()
    if kind not in ("shadow", "canary"):
        raise InvalidInput(f"unknown step {words[0]!r} in {part!r}: steps are 'shadow' or 'canary'")
    if len(words) < 2:
        raise InvalidInput(f"step {part!r} needs a weight, e.g. 'shadow 20%' or 'canary 5,25'")
    weights = [_weight(w, part) for w in words[1].rstrip("%").split(",")]
    if kind == "shadow" and len(weights) != 1:
        raise InvalidInput(f"a shadow step takes one percentage, got {words[1]!r}")
    rest = words[2:]
    shadow = 0
    while rest:
        word = rest.pop(0)
        if word.lower() == "min":
            if not rest or not rest[0].isdigit() or int(rest[0]) < 1:
                raise InvalidInput(f"'min' in {part!r} needs a sample count >= 1")
            min_samples = int(rest.pop(0))
        elif word.lower() == "shadow" and kind == "canary":
            if not rest:
                raise InvalidInput(f"'shadow' in {part!r} needs a percentage")
            shadow = _weight(rest.pop(0), part)
        else:
            bake = _duration(word, part)
    return [Step(kind, w, bake, min_samples, shadow) for w in weights]


def _weight(word: str, part: str) -> int:
    word = word.strip().rstrip("%")
    if not word.isdigit():
        raise InvalidInput(f"weight {word!r} in {part!r} is not a whole percentage")
    weight = int(word)
    if not 1 <= weight <= 100:
        raise InvalidInput(f"weight {weight}% in {part!r} is outside 1..100")
    return weight


def _duration(word: str, part: str) -> float:
    match = _DURATION.match(word.lower())
    if match is None:
        raise InvalidInput(
            f"{word!r} in {part!r} is neither a bake time (60s, 2m, 500ms) nor 'min N'"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    _check_bake(seconds, f"the bake time {word!r} in {part!r}")
    return seconds


def _check_bake(seconds: Any, what: str) -> None:
    if not isinstance(seconds, int | float) or not seconds > 0:
        raise InvalidInput(f"{what} must be more than zero seconds, got {seconds!r}")


def _check_order(steps: list[Step]) -> None:
    seen_canary = False
    last = 0
    for step in steps:
        if step.kind == "shadow":
            if seen_canary:
                raise InvalidInput("shadow steps come before the canary steps")
            continue
        seen_canary = True
        if step.weight <= last:
            raise InvalidInput(f"canary weights must increase: {step.weight}% comes after {last}%")
        last = step.weight
