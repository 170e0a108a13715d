"""Safe model updates: shadow traffic compared online, sticky canaries, gates, rollback.

    from modelport import rollouts
    rollouts.start(registry, "digits", "digits@staging", plan="shadow 20% 60s; canary 5,25 60s")
    rollouts.status(registry, "digits")

Pure parts (``plan``, ``gates``, ``tally``, ``compare``, ``decide``) hold no state and touch
nothing; ``controller`` is the only code that changes a rollout; ``split`` and ``agent`` are
what a serving replica runs. Names resolve lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Gates": "modelport.rollouts.gates",
    "Plan": "modelport.rollouts.plan",
    "abort": "modelport.rollouts.api",
    "get": "modelport.rollouts.api",
    "history": "modelport.rollouts.api",
    "parse_plan": "modelport.rollouts.plan",
    "pause": "modelport.rollouts.api",
    "promote": "modelport.rollouts.api",
    "resume": "modelport.rollouts.api",
    "start": "modelport.rollouts.api",
    "status": "modelport.rollouts.api",
    "timeline": "modelport.rollouts.timeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelport.rollouts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
