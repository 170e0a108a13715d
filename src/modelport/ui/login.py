"""Signing in with an API key (the browser has no header to send it in) and signing out.

GET  /ui/login?next=/ui/models/digits     the form
POST /ui/login   key=...&csrf=...&next=.. a valid key: a new session id, then ``next``
POST /ui/logout  csrf=...                 the session forgets its key
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from modelport.errors import InvalidInput, Unauthorized
from modelport.ui.page import Reply, Request, Route

if TYPE_CHECKING:
    from modelport.ui.security import Guard


def sign_in_form(request: Request, message: str = "") -> str:
    from modelport.ui.layout import h

    target = request.query.get("next") or ("/ui" + request.path)
    note = f'<p class="error" role="alert">{h(message)}</p>' if message else ""
    return (
        f'{note}<form class="card narrow" method="post" action="/ui/login">'
        f'<input type="hidden" name="csrf" value="{h(request.csrf)}">'
        f'<input type="hidden" name="next" value="{h(target)}">'
        '<label for="key">API key</label>'
        '<input id="key" name="key" type="password" autocomplete="current-password" required>'
        '<p class="hint">A key with the <code>infer</code> role reads; the <code>admin</code> role '
        "also moves aliases.</p>"
        '<button type="submit">Sign in</button></form>'
    )


def form(request: Request) -> Reply:
    if not request.ctx.keys.required:
        return request.page(
            "Sign in",
            "<p>This server has no API keys: nothing to sign in to."
            ' <a href="/ui/models">Models</a></p>',
        )
    return request.page("Sign in", sign_in_form(request))


def sign_in(guard: Guard, request: Request, sid: str) -> Reply:
    from modelport.ui.errors import safe_next

    key = str(request.data().get("key") or "").strip().encode()
    if not key:
        raise InvalidInput("give an API key")
    try:
        request.ctx.keys.check(key, "infer")
    except Unauthorized as exc:
        return request.page("Sign in", sign_in_form(request, exc.message), exc.status)
    new = guard.session_of({})[0]  # a fresh id on sign-in: a planted cookie is worth nothing
    guard.sign_out(sid)
    guard.sign_in(new, key)
    cookie = guard.cookie(new, request.scheme == "https")
    return 303, b"", [(b"location", safe_next(request).encode()), (b"set-cookie", cookie)]


def sign_out(guard: Guard, request: Request, sid: str) -> Reply:
    guard.sign_out(sid)
    return 303, b"", [(b"location", b"/ui/login")]


ROUTES = (
    Route("GET", "login", form, role="public"),
    Route("POST", "login", sign_in, role="public"),
    Route("POST", "logout", sign_out, role="public"),
)
# handlers that change the session itself: called as handler(guard, request, session id)
SESSION: frozenset[Callable[..., Reply]] = frozenset((sign_in, sign_out))
