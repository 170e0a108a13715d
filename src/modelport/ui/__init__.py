"""The web dashboard: pages over the same Python API the CLI uses, served under ``/ui``.

    modelport ui                      # registry only, http://127.0.0.1:8090/ui
    modelport serve ...               # the same pages at /ui beside the model APIs

    from modelport.ui import UiApp
    app = UiApp(registry, keys)       # an ASGI app; ``serving=`` the ServingApp under serve

Adding a page
-------------
1. Write ``modelport/ui/pages/<name>.py`` with handlers and a module-level ``PAGE``::

       from modelport.ui.layout import h, table
       from modelport.ui.page import Nav, Page, Reply, Request, Route, json_reply

       def api(request: Request) -> Reply:                 # GET /ui/api/serving
           return json_reply({"models": ...})
       def view(request: Request) -> Reply:                # GET /ui/serving
           return request.page("Serving", "<p>" + h(...) + "</p>", scripts=("serving.js",))
       def act(request: Request, name: str) -> Reply:      # POST /ui/api/serving/{}/unload
           request.data()                                  # JSON object or form fields
           return json_reply({"message": "unloaded"})

       PAGE = Page("serving", routes=(Route("GET", "serving", view),
                                      Route("GET", "api/serving", api),
                                      Route("POST", "api/serving/{}/unload", act)),
                   nav=Nav("Serving", "serving"), needs_serving=True)

2. Add ``"modelport.ui.pages.<name>"`` to ``PAGES`` in ``modelport/ui/pages/__init__.py`` (the
   navigation follows that order). Nothing else changes.

The contract:

- Paths are below ``/ui/`` without the prefix; ``{}`` is one path segment, handed to the
  handler positionally (URL-decoded by the server, so validate it: ``validate_name``).
  ``api/...`` routes answer JSON, errors too (``{"error": ...}``); others answer HTML.
- Handlers are plain functions ``(request, *params) -> Reply`` run on a worker thread; raise
  from ``modelport.errors`` (NotFound -> 404 page, InvalidInput -> 400, Conflict -> 409...),
  never return a traceback. ``request.query`` (dict), ``request.number(...)`` (bounded int),
  ``request.data()``, ``request.user`` (``name``, ``role``, ``can_act``), ``request.registry``,
  ``request.ctx.serving`` (the ServingApp under ``modelport serve``, else None: set
  ``needs_serving=True`` and the page exists only there).
- Roles: GET routes need a viewer (any valid API key: ``infer`` or ``admin``); every other
  method needs ``admin`` (``Route(..., role=...)`` overrides). The server checks the role, the
  Origin / Sec-Fetch-Site headers and the CSRF token before the handler runs; a registry write
  inside a handler is audit-logged as the caller's key from the caller's address.
- HTML: ``request.page(title, body, scripts=(...))`` wraps ``body`` in the shared layout
  (``ui/layout.py``: navigation, header, CSS, ``app.js``). Escape every value with ``h``; no
  inline ``<script>`` or ``style=`` (the Content-Security-Policy refuses them): put a page's
  script in ``ui/static/<name>.js`` and list it in ``scripts``.
- Actions: a ``<form method="post" action="/ui/api/..." data-action data-confirm="...">`` with
  ``layout.hidden(request, next=...)`` is confirmed in a dialog and sent by ``app.js`` as JSON
  with the CSRF header; without JavaScript it posts the form and is redirected to ``next``.
- ``app.js`` gives pages ``MP.api(method, url, body)``, ``MP.live(url, ms, render)`` (polls
  while visible), ``MP.lineChart(svg, series, {unit})`` (live charts) and ``MP.toast(text)``;
  ``ui/svg.py`` draws static SVG charts on the server.
- Tests: ``tests/ui/conftest.py`` gives a module-scoped real server (``ui_server``) and a
  headless Chromium page (``page``).

Security: see ``ui/security.py`` (sessions, CSRF) and ``docs/dashboard.md``.
"""

from modelport._lazy import lazy

__all__ = ["UiApp"]
__getattr__, __dir__ = lazy(__name__, {"UiApp": "modelport.ui.app"}, __all__)
