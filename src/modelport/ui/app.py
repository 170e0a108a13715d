"""The dashboard's ASGI app: route, authenticate, check CSRF, run the page's handler, answer.

    app = UiApp(registry, ApiKeys.parse(["ops=admin:s3cret-key"]))        # ``modelport ui``
    app = UiApp(registry, keys, serving=serving_app)                      # under ``serve``

Everything lives under ``/ui``: pages, their JSON API under ``/ui/api``, ``/ui/static``
(hashed, cached for a year) and ``/ui/login``. Errors answer an HTML page, or JSON under
``/ui/api``; a form posted without JavaScript is answered with a redirect to its ``next``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from modelport.errors import ModelportError, NotFound, PayloadTooLarge, Unauthorized
from modelport.registry.audit import acting_as
from modelport.serving import admin
from modelport.serving.app import path_params
from modelport.serving.auth import ApiKeys, token_from
from modelport.serving.listener import lifespan
from modelport.ui import assets, errors, login
from modelport.ui.page import Context, Page, Reply, Request, Route, User
from modelport.ui.pages import PAGES
from modelport.ui.security import Guard

if TYPE_CHECKING:
    from modelport.registry import Registry

log = logging.getLogger("modelport.ui")
MAX_BODY = 64 << 10  # forms and JSON actions are small
HOME = "/ui/models"
_SECURITY = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        b"base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class UiApp:
    def __init__(
        self,
        registry: Registry,
        keys: ApiKeys | None = None,
        serving: Any = None,
        pages: tuple[str, ...] = PAGES,
    ) -> None:
        self.ctx = Context(registry, keys or ApiKeys(), serving)
        self.guard = Guard()
        self.static = assets.load()
        self.ctx.assets = {name: asset.url for name, asset in self.static.items()}
        self._fixed: dict[tuple[str, str], Route] = {}
        self._patterns: dict[int, list[tuple[tuple[str, ...], Route]]] = {}
        for route in login.ROUTES:
            self._add(route)
        for module in pages:
            page: Page = import_module(module).PAGE
            if page.needs_serving and serving is None:
                continue
            for route in page.routes:
                self._add(route)
            if page.nav is not None:
                self.ctx.nav.append(page.nav)

    def _add(self, route: Route) -> None:
        parts = tuple(route.path.split("/"))
        if "{}" not in parts:
            self._fixed[(route.method, route.path)] = route
        else:
            self._patterns.setdefault(len(parts), []).append((parts, route))

    def match(self, method: str, path: str) -> tuple[Route, list[str]]:
        """The route for ``path`` (below ``/ui/``) and its parameters, or NotFound."""
        path = path.strip("/")
        fixed = self._fixed.get((method, path))
        if fixed is not None:
            return fixed, []
        parts = path.split("/")
        for pattern, route in self._patterns.get(len(parts), ()):
            if route.method != method:
                continue
            params = path_params(parts, pattern)
            if params is not None:
                return route, params
        raise NotFound(f"there is no page at /ui/{path}")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        path = scope["path"]
        sid, fresh = self.guard.session_of(headers)
        if path in ("/", "/ui", "/ui/"):
            status, payload, extra = 303, b"", [(b"location", HOME.encode())]
        elif path.startswith("/ui/static/"):
            status, payload, extra = assets.serve(self.static, path[len("/ui/static/") :], headers)
        elif path.startswith("/ui/"):
            status, payload, extra = await self._page(scope, receive, headers, sid, fresh)
        else:
            status, payload, extra = errors.plain(404, "not found")
        if fresh and not path.startswith("/ui/static/"):
            extra = [
                *extra,
                (b"set-cookie", self.guard.cookie(sid, scope.get("scheme") == "https")),
            ]
        if scope["method"] == "HEAD":
            payload = b""
        head = [*_SECURITY, *extra, (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": payload})

    async def _page(
        self, scope: dict, receive: Callable, headers: dict[bytes, bytes], sid: str, fresh: bool
    ) -> Reply:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        request = Request(
            method,
            scope["path"][3:],
            query,
            headers,
            b"",
            self.ctx,
            User(None, "infer", False),
            self.guard.token(sid),
            scheme=scope.get("scheme", "http"),
        )
        header_key = token_from(headers.get(b"authorization"), headers.get(b"x-api-key"))
        token = header_key or self.guard.key_of(sid)
        who, params = None, []
        request.user = self._user(token, header_key is None and token is not None)
        try:
            route, params = self.match(method, request.path)
            request.route = route
            if method != "GET":
                self.guard.check_origin(headers, scope.get("scheme", "http"))
                request.body = await _read(receive, headers)
            who = self._check(route, token)
            if method != "GET" and header_key is None:
                form = request.data().get("csrf") if request.is_form else None
                self.guard.check_token(headers, form, sid, fresh)
            return await self._run(route, request, params, who, scope, sid)
        except ModelportError as exc:
            if request.route is not None and request.route.needs == "admin":
                if isinstance(exc, Unauthorized):
                    name = self.ctx.keys.name_of(token) or ("invalid key" if token else None)
                    await admin.record(
                        self.ctx.registry, "admin_denied", scope, name, params, exc.status
                    )
            return errors.reply(request, exc)
        except Exception as exc:  # a bug still answers a page, and the server stays up
            log.exception("unexpected error on %s %s", method, scope["path"])
            return errors.internal(request, exc)

    def _user(self, token: bytes | None, signed_in: bool) -> User:
        keys = self.ctx.keys
        if not keys.required:
            return User(None, "admin" if keys.admin_routes else "infer", keys.admin_routes)
        role = keys.role_of(token)
        name = keys.name_of(token)
        return User(name, role or "none", role == "admin" and keys.admin_routes, signed_in)

    def _check(self, route: Route, token: bytes | None) -> str | None:
        if not self.ctx.keys.enabled or route.needs == "public":
            return None
        return self.ctx.keys.check(token, route.needs)

    async def _run(
        self,
        route: Route,
        request: Request,
        params: list[str],
        who: str | None,
        scope: dict,
        sid: str,
    ) -> Reply:
        source = admin.client_address(scope)
        if route.handler in login.SESSION:  # sign-in and sign-out change the session itself
            return route.handler(self.guard, request, sid)

        def work() -> Reply:
            with acting_as(who or "unauthenticated", source):
                return route.handler(request, *params)

        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, lambda: context.run(work))
        if request.is_form and request.method != "GET" and reply[0] < 400:
            return 303, b"", [(b"location", errors.safe_next(request).encode())]
        return reply


async def _read(receive: Callable, headers: dict[bytes, bytes]) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"the request body is over the limit of {MAX_BODY} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(f"the request body is over the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
