"""What a device sends the fleet server, checked by hand: enrollment and state reports.

info = parse_enrollment({"id": "cam-1", "hardware": "arm", "runtimes": ["litert"], ...})
report = parse_report({"current": 3, "health": "ok", "metrics": {"p50_ms": 1.2}})
"""

from __future__ import annotations

import re
from typing import Any

from modelport.errors import InvalidInput

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HEALTH = ("ok", "degraded", "failed", "unknown")
_ENROLL = {"id", "hardware", "runtimes", "ram_mb", "cpu_flags", "tags"}
_REPORT = {"current", "staged", "health", "last_error", "metrics", "outcome"}


def device_id(value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"device id {value!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return value


def _strings(body: dict, key: str, limit: int = 64) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or len(value) > limit:
        raise InvalidInput(f"{key!r} must be a list of at most {limit} strings")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > 64:
            raise InvalidInput(f"{key!r} holds {item!r}; each must be a string of 1-64 chars")
    return list(value)


def _unknown(body: dict, allowed: set[str], what: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise InvalidInput(f"unknown {what} field(s): {', '.join(extra)}")


def parse_enrollment(body: dict) -> dict[str, Any]:
    _unknown(body, _ENROLL, "enrollment")
    hardware = body.get("hardware")
    if not isinstance(hardware, str) or not _ID.match(hardware):
        raise InvalidInput(f"hardware class {hardware!r} must be a short name such as 'arm'")
    ram = body.get("ram_mb", 0)
    if not isinstance(ram, int) or isinstance(ram, bool) or ram < 0:
        raise InvalidInput(f"ram_mb must be a non-negative integer, got {ram!r}")
    return {
        "id": device_id(body.get("id")),
        "hardware": hardware,
        "ram_mb": ram,
        "runtimes": _strings(body, "runtimes"),
        "cpu_flags": _strings(body, "cpu_flags", 256),
        "tags": _strings(body, "tags"),
    }


def _release(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput(f"{key!r} must be a release id (a positive integer) or null")
    return value


def parse_report(body: dict) -> dict[str, Any]:
    _unknown(body, _REPORT, "report")
    health = body.get("health", "unknown")
    if health not in HEALTH:
        raise InvalidInput(f"health {health!r} is not one of {', '.join(HEALTH)}")
    error = body.get("last_error")
    if error is not None and (not isinstance(error, str) or len(error) > 4000):
        raise InvalidInput("last_error must be a string of at most 4000 characters or null")
    metrics = body.get("metrics", {})
    if (
        not isinstance(metrics, dict)
        or len(metrics) > 32
        or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in metrics.items()
        )
    ):
        raise InvalidInput("metrics must be an object of at most 32 names to numbers")
    outcome = body.get("outcome")
    if outcome is not None:
        if not isinstance(outcome, dict) or set(outcome) - {"release", "ok", "reason"}:
            raise InvalidInput("outcome must be {release, ok, reason}")
        if not isinstance(outcome.get("ok"), bool):
            raise InvalidInput("outcome.ok must be true or false")
        reason = outcome.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 4000:
            raise InvalidInput("outcome.reason must be a string of at most 4000 characters")
        outcome = {
            "release": _release(outcome.get("release"), "outcome.release"),
            "ok": outcome["ok"],
            "reason": reason,
        }
        if outcome["release"] is None:
            raise InvalidInput("outcome.release is required")
    return {
        "current": _release(body.get("current"), "current"),
        "staged": _release(body.get("staged"), "staged"),
        "health": health,
        "last_error": error,
        "metrics": dict(metrics),
        "outcome": outcome,
    }
