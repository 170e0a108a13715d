"""What a page module declares, and what its handlers get and give back.

    def view(request: Request, name: str) -> Reply:
        return request.page(f"Model {name}", "<p>...</p>")

    PAGE = Page("models", routes=(Route("GET", "models/{}", view),), nav=Nav("Models", "models"))

Handlers are plain functions, run on a worker thread (registry calls block), with the caller
as the audit log's actor. A ``{}`` in a route's path is one path segment, passed positionally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from modelport.errors import InvalidInput
from modelport.serving.rest_v2 import parse_json

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.serving.auth import ApiKeys

Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]
Handler = Callable[..., Reply]
JSON = [(b"content-type", b"application/json")]
HTML = [(b"content-type", b"text/html; charset=utf-8")]


@dataclass(frozen=True)
class Route:
    """``path`` below ``/ui/``; ``api/...`` paths answer JSON, errors included. ``role``:
    ``infer`` (any valid key: viewers), ``admin`` or ``public`` (no key); default: ``infer``
    to read (GET), ``admin`` for anything else. Every non-GET request passes the CSRF check."""

    method: str
    path: str
    handler: Handler
    role: str | None = None

    @property
    def needs(self) -> str:
        return self.role or ("infer" if self.method == "GET" else "admin")

    @property
    def is_api(self) -> bool:
        return self.path.startswith("api/")


@dataclass(frozen=True)
class Nav:
    """An entry of the top navigation: its label and the route path it links to."""

    label: str
    path: str


@dataclass(frozen=True)
class Page:
    """A page module's ``PAGE``. ``needs_serving``: only under ``modelport serve`` (the
    routes answer a 404 page under ``modelport ui``, and the nav entry is hidden)."""

    name: str
    routes: tuple[Route, ...]
    nav: Nav | None = None
    needs_serving: bool = False


@dataclass(frozen=True)
class User:
    """Who is asking: the key's name (None without keys) and what it may do."""

    name: str | None
    role: str
    can_act: bool  # the admin role, and admin actions are on
    signed_in: bool = False


@dataclass
class Context:
    """What every handler can reach: the registry, the API keys and, under ``modelport
    serve``, the serving app (``serving.plane``, ``serving.metrics``, ``serving.llm``...)."""

    registry: Registry
    keys: ApiKeys
    serving: Any = None
    nav: list[Nav] = field(default_factory=list)
    assets: dict[str, str] = field(default_factory=dict)  # file name -> URL with its hash


@dataclass
class Request:
    method: str
    path: str  # below /ui, e.g. "/models/digits"
    query: dict[str, str]
    headers: dict[bytes, bytes]
    body: bytes
    ctx: Context
    user: User
    csrf: str  # the token forms and fetch calls send back
    route: Route | None = None
    scheme: str = "http"

    @property
    def registry(self) -> Registry:
        return self.ctx.registry

    def data(self) -> dict[str, Any]:
        """The body: a JSON object or an HTML form (form values are strings)."""
        if not self.body.strip():
            return {}
        if self.is_form:
            return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))
        return parse_json(self.body)

    @property
    def is_form(self) -> bool:
        kind = self.headers.get(b"content-type", b"")
        return kind.startswith(b"application/x-www-form-urlencoded")

    def number(
        self, key: str, default: int | None = None, low: int = 0, high: int = 2**31 - 1
    ) -> int | None:
        """An integer query parameter within [low, high], or ``default`` when absent."""
        text = self.query.get(key, "")
        if text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise InvalidInput(f"{key!r} must be a whole number, got {text[:20]!r}") from None
        if not low <= value <= high:
            raise InvalidInput(f"{key!r} must be between {low} and {high}, got {value}")
        return value

    def page(
        self, title: str, body: str, status: int = 200, scripts: tuple[str, ...] = ()
    ) -> Reply:
        """``body`` (HTML, already escaped) inside the shared layout; ``scripts``: the page's
        own files in ``ui/static`` (inline scripts are refused by the CSP), after app.js."""
        from modelport.ui.layout import render

        return status, render(self, title, body, scripts).encode(), HTML


def json_reply(data: Any, status: int = 200) -> Reply:
    return status, orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), JSON
