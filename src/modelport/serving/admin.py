"""Admin routes as their caller: registry writes inside record the key's name and the client's
address, and each use of the route is one audit entry with its reply's status.

    status, payload, extra = await run(registry, handler, body, headers, params, scope, "ops")
    await record(registry, "admin_denied", scope, None, ["digits"], 401)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from modelport.errors import ModelportError
from modelport.registry.audit import acting_as

if TYPE_CHECKING:
    from modelport.registry import Registry

log = logging.getLogger("modelport.serving")
ACTIONS = {"load": "load", "unload": "unload"}  # handler name -> audit action; else admin_request


def client_address(scope: dict) -> str:
    """``host:port`` of the peer (the balancer's, behind one), or ``"unknown"``."""
    peer = scope.get("client")
    return f"{peer[0]}:{peer[1]}" if peer else "unknown"


async def run(
    registry: Registry, handler: Callable[..., Awaitable[Any]], body: bytes,
    headers: dict[bytes, bytes], params: list[str], scope: dict, who: str | None,
) -> Any:  # fmt: skip
    """The handler's reply, run as ``who`` and audited whether it succeeds or raises."""
    action = ACTIONS.get(handler.__name__, "admin_request")
    try:
        with acting_as(who or "unauthenticated", client_address(scope)):
            result = await handler(body, headers, *params)
    except ModelportError as exc:
        await record(registry, action, scope, who, params, exc.status)
        raise
    await record(registry, action, scope, who, params, result[0])
    return result


async def record(registry: Registry, action: str, scope: dict, who: str | None,
                 params: list[str], status: int) -> None:  # fmt: skip
    """One audit entry for an admin route's use, on a worker thread; a failure is logged. A
    model-repository folder has no catalogue and so no audit log: nothing is recorded."""
    if getattr(registry, "audit", None) is None:
        return
    detail = {"method": scope["method"], "path": scope["path"], "status": status}

    def work() -> None:
        with acting_as(who or "unauthenticated", client_address(scope)):
            registry.audit.append(action, params[0] if params else None, None, **detail)

    try:
        await asyncio.get_running_loop().run_in_executor(None, work)
    except Exception:
        log.exception("could not write the audit entry for %s %s (%s)", *detail.values())
