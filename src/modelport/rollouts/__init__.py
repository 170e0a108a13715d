"""Safe model updates: shadow traffic compared online, sticky canaries, gates, rollback.

    from modelport import rollouts
    rollouts.start(registry, "digits", "digits@staging", plan="shadow 20% 60s; canary 5,25 60s")
    rollouts.status(registry, "digits")
    rollouts.timeline(registry, "digits", "rollout.png")

Pure parts (``plan``, ``gates``, ``tally``, ``compare``, ``decide``) hold no state and touch
nothing; ``controller`` is the only code that changes a rollout; ``split`` and ``agent`` are
what a serving replica runs. Names import on first use (a replica that only splits traffic
never loads the controller); matplotlib loads only when a timeline is drawn.
"""

from modelport._lazy import lazy

_LAZY = {
    **{
        name: "modelport.rollouts.api"
        for name in ("abort", "get", "history", "pause", "promote", "resume", "start", "status")
    },
    "Gates": "modelport.rollouts.gates",
    "Plan": "modelport.rollouts.plan",
    "parse_plan": "modelport.rollouts.plan",
    "timeline": "modelport.rollouts.timeline",
}
__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy(__name__, _LAZY)
