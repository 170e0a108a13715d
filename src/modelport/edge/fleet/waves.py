"""Staged waves as plain data and pure functions; the store applies what they decide.

members = wave_members(device_ids, waves=[10, 50, 100], salt="deployment-7")
decide(Wave(index=0, size=2, ok=1, failed=1, pending=0), elapsed=5, wait=60,
       threshold=0.2, last=False)  ->  Decision("halt", "wave 1: 1 of 2 devices failed ...")
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from modelport.errors import InvalidInput


def parse_waves(text: str) -> list[float]:
    """ "10,50,100" -> [10.0, 50.0, 100.0]: increasing cumulative percents ending at 100."""
    try:
        waves = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InvalidInput(f"waves {text!r} are not comma-separated percents") from None
    if not waves or waves[-1] != 100 or any(b <= a for a, b in zip(waves, waves[1:], strict=False)):
        raise InvalidInput(f"waves {text!r} must increase and end at 100, e.g. 10,50,100")
    if waves[0] <= 0:
        raise InvalidInput("the first wave must be more than 0 percent")
    return waves


def wave_members(devices: Sequence[str], waves: Sequence[float], salt: str) -> list[list[str]]:
    """Devices split into waves, in an order fixed by ``salt`` (stable, not by enrollment)."""
    ordered = sorted(devices, key=lambda d: hashlib.sha256(f"{salt}/{d}".encode()).digest())
    out, start = [], 0
    for percent in waves:
        end = max(start + 1, math.ceil(len(ordered) * percent / 100)) if ordered else 0
        out.append(ordered[start : min(end, len(ordered))])
        start = min(end, len(ordered))
    return out


@dataclass(frozen=True, slots=True)
class Wave:
    index: int
    size: int
    ok: int
    failed: int
    pending: int


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # wait | halt | next | done
    reason: str = ""


def decide(wave: Wave, elapsed: float, wait: float, threshold: float, last: bool) -> Decision:
    """What a running deployment does next, given its current wave."""
    if wave.size and wave.failed / wave.size > threshold:
        return Decision(
            "halt",
            f"wave {wave.index + 1}: {wave.failed} of {wave.size} devices "
            f"failed, over the threshold of {threshold:.0%}",
        )
    if wave.pending or elapsed < wait:
        return Decision("wait")
    return Decision("done" if last else "next")
