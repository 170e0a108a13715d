"""Errors as the dashboard answers them: an HTML page, or JSON under ``/ui/api``.

return reply(request, NotFound("model 'x' not found"))   # 404 page in the layout
# StaleAlias (409) adds where the alias is now: {"error", "alias", "expected", "current"}
# 401 on a page: the sign-in form, coming back to the page afterwards
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.errors import ModelportError, Unauthorized
from modelport.registry.registry import StaleAlias
from modelport.ui.page import HTML, JSON, Reply, Request

TITLES = {
    400: "Bad request",
    401: "Sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    500: "Internal error",
}


def body_of(exc: ModelportError) -> dict[str, Any]:
    data: dict[str, Any] = {"error": exc.message}
    if isinstance(exc, StaleAlias):
        data.update(alias=exc.alias, expected=exc.expected, current=exc.current)
    return data


def reply(request: Request, exc: ModelportError) -> Reply:
    status = exc.status
    if wants_json(request):
        return status, orjson.dumps(body_of(exc)), JSON
    from modelport.ui.layout import h
    from modelport.ui.login import sign_in_form

    if type(exc) is Unauthorized:
        body = f'<p class="error" role="alert">{h(exc.message)}</p>' + sign_in_form(request)
        return request.page("Sign in", body, status)
    body = f'<p class="error" role="alert">{h(exc.message)}</p>'
    if isinstance(exc, StaleAlias):
        now = "nowhere" if exc.current is None else f"version {exc.current}"
        body += (
            f"<p>It names <strong>{now}</strong> now. Reload the page to see the current "
            "state before acting again.</p>"
        )
    body += '<p><a href="/ui/models">All models</a></p>'
    return request.page(TITLES.get(status, "Error"), body, status)


def internal(request: Request, exc: Exception) -> Reply:
    message = f"internal error: {type(exc).__name__} (the server log has the details)"
    if wants_json(request):
        return 500, orjson.dumps({"error": message}), JSON
    from modelport.ui.layout import h

    return request.page("Internal error", f'<p class="error">{h(message)}</p>', 500)


def wants_json(request: Request) -> bool:
    """API routes answer JSON, except to a form posted without JavaScript (a page for it)."""
    return request.path.startswith("/api/") and not (request.is_form and request.method != "GET")


def plain(status: int, message: str) -> Reply:
    return status, f"<!doctype html><title>{status}</title><p>{message}</p>".encode(), HTML


def safe_next(request: Request) -> str:
    """Where a form sends the browser after it succeeds: its ``next`` field, if it is a path
    of the dashboard, else the models page."""
    target = str(request.data().get("next") or "")
    if target.startswith("/ui/") and not target.startswith("/ui//") and "\\" not in target:
        return target
    return "/ui/models"
