"""Safe model updates: shadow traffic compared online, sticky canaries, gates, rollback.

    from modelport import rollouts
    rollouts.start(registry, "digits", "digits@staging", plan="shadow 20% 60s; canary 5,25 60s")
    rollouts.status(registry, "digits")
    rollouts.timeline(registry, "digits", "rollout.png")

Pure parts (``plan``, ``gates``, ``tally``, ``compare``, ``decide``) hold no state and touch
nothing; ``controller`` is the only code that changes a rollout; ``split`` and ``agent`` are
what a serving replica runs. matplotlib loads only when a timeline is drawn.
"""

from modelport.rollouts.api import abort, get, history, pause, promote, resume, start, status
from modelport.rollouts.gates import Gates
from modelport.rollouts.plan import Plan, parse_plan
from modelport.rollouts.timeline import timeline

__all__ = ["Gates", "Plan", "abort", "get", "history", "parse_plan", "pause", "promote",
           "resume", "start", "status", "timeline"]  # fmt: skip
