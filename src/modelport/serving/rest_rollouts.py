"""Admin routes for rollouts, over the same Python API as the CLI.

    GET  /v2/rollouts/{model}            status: step, gates on the last windows, replicas
    GET  /v2/rollouts/{model}/history    every rollout with its decision log
    POST /v2/rollouts/{model}            start: {"candidate": "digits@staging", "plan": "...",
                                          "alias": "production", "gates": {"max_error_rate": ..}}
    POST /v2/rollouts/{model}/{command}  pause | resume | promote | abort  ({"reason": ".."})

Catalogue calls (and the candidate's warm load on start) run on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

from modelport.errors import InvalidInput, NotFound
from modelport.serving.rest_v2 import Reply, parse_json, reply

if TYPE_CHECKING:
    from modelport.registry import Registry

COMMANDS = ("pause", "resume", "promote", "abort")
_START_FIELDS = {"candidate", "plan", "alias", "gates", "bake", "min_samples"}


class RestRollouts:
    def __init__(self, models: Any) -> None:
        self.models = models  # the ModelSet; its registry is read per call

    @property
    def registry(self) -> Registry:
        return self.models.registry

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()  # in the caller's context: the audit log's actor
        context = contextvars.copy_context()
        return await loop.run_in_executor(None, lambda: context.run(fn, *args, **kwargs))

    async def status(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        from modelport import rollouts

        return reply(await self._run(rollouts.status, self.registry, name))

    async def history(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        from modelport import rollouts

        found = await self._run(rollouts.history, self.registry, name)
        return reply([{**_plain(r.to_dict()), "decisions": [_plain(d.to_dict()) for d in log]}
                      for r, log in found])  # fmt: skip

    async def start(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        from modelport import rollouts
        from modelport.rollouts.gates import Gates

        request = parse_json(body)
        unknown = sorted(set(request) - _START_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown field(s) {unknown}; fields: {sorted(_START_FIELDS)}")
        candidate = request.get("candidate")
        if not isinstance(candidate, str):
            raise InvalidInput("'candidate' must be a reference such as \"digits@staging\"")
        gates = request.get("gates", {})
        if not isinstance(gates, dict):
            raise InvalidInput("'gates' must be an object of thresholds")
        fields = {k: request[k] for k in ("plan", "alias", "bake", "min_samples") if k in request}
        try:
            parsed = Gates(**gates)
        except TypeError as exc:
            raise InvalidInput(f"bad gates: {exc}") from None
        rollout = await self._run(rollouts.start, self.registry, name, candidate, gates=parsed,
                                  **fields)  # fmt: skip
        return reply(_plain(rollout.to_dict()), 201)

    async def command(
        self, body: bytes, headers: dict[bytes, bytes], name: str, command: str
    ) -> Reply:
        from modelport import rollouts

        if command not in COMMANDS:
            raise NotFound(f"no rollout command {command!r}; commands: {', '.join(COMMANDS)}")
        kwargs = {}
        if body.strip() and command in ("pause", "abort"):
            reason = parse_json(body).get("reason")
            if reason is not None:
                if not isinstance(reason, str):
                    raise InvalidInput("'reason' must be a string")
                kwargs["reason"] = reason
        rollout = await self._run(getattr(rollouts, command), self.registry, name, **kwargs)
        return reply(_plain(rollout.to_dict()))


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data.items()}
