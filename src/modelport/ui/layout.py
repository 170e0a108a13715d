"""The shared layout (head, skip link, header, navigation, footer) and small HTML helpers.

    request.page("Models", table(["Name", "Latest"], rows))   # render() inside the layout
    h("<b>")                      # "&lt;b&gt;": every value from the catalogue goes through h()
    link("/ui/models/digits", "digits"), when(version.created_at), size(1536)  # "1.5 KiB"
    url("/ui/models", q="dig", offset=25)   # "/ui/models?q=dig&offset=25" (empty values dropped)

A page's body is plain HTML; interactive parts are marked with ``data-*`` attributes that
``static/app.js`` gives life to (``data-live``, ``data-confirm``, ``data-action``).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from modelport.ui.page import Request


def h(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def url(path: str, **query: Any) -> str:
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def model_url(name: str, *rest: Any) -> str:
    return "/ui/models/" + "/".join(quote(str(p), safe="") for p in (name, *rest))


def link(href: str, text: Any, label: str | None = None) -> str:
    aria = f' aria-label="{h(label)}"' if label else ""
    return f'<a href="{h(href)}"{aria}>{h(text)}</a>'


def when(at: datetime | None) -> str:
    if at is None:
        return ""
    iso = at.isoformat(timespec="seconds")
    return f'<time datetime="{h(iso)}">{h(at.strftime("%Y-%m-%d %H:%M:%S"))} UTC</time>'


def size(n: int | None) -> str:
    from modelport.cli.common import human_size

    return "" if n is None else human_size(n)


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return h(value)


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    caption: str = "",
    empty: str = "Nothing here yet.",
) -> str:
    """A table; cells are HTML (escape values with ``h``)."""
    labels = [h(col) for col in head]
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-label="{label}">{cell}</td>'
            for label, cell in zip(labels, row, strict=False)
        )
        + "</tr>"
        for row in rows
    )
    if not body:
        return f'<p class="empty">{h(empty)}</p>'
    cap = f"<caption>{h(caption)}</caption>" if caption else ""
    heads = "".join(f'<th scope="col">{h(col)}</th>' for col in head)
    return (
        f'<div class="scroll" tabindex="0" role="region" aria-label="{h(caption or head[0])}">'
        f'<table class="stack">{cap}<thead><tr>{heads}</tr></thead><tbody>{body}</tbody>'
        "</table></div>"
    )


def pairs(items: dict[str, Any], empty: str = "none") -> str:
    if not items:
        return f'<span class="muted">{h(empty)}</span>'
    return (
        '<dl class="pairs">'
        + "".join(f"<dt>{h(k)}</dt><dd>{number(v)}</dd>" for k, v in sorted(items.items()))
        + "</dl>"
    )


def chip(text: str, href: str | None = None) -> str:
    inner = link(href, text) if href else h(text)
    return f'<span class="chip">{inner}</span>'


def pager(links: Sequence[tuple[str, str | None]], label: str = "Pages") -> str:
    """Previous/next style links; a None href is shown disabled."""
    items = "".join(
        f"<li>{link(href, text)}</li>"
        if href
        else f'<li><span class="disabled" aria-disabled="true">{h(text)}</span></li>'
        for text, href in links
    )
    return f'<nav class="pager" aria-label="{h(label)}"><ul>{items}</ul></nav>'


def hidden(request: Request, **fields: Any) -> str:
    """The CSRF token and other hidden fields of a form."""
    values = {"csrf": request.csrf, **fields}
    return "".join(
        f'<input type="hidden" name="{h(k)}" value="{h(v)}">'
        for k, v in values.items()
        if v is not None
    )


def render(request: Request, title: str, body: str, scripts: tuple[str, ...] = ()) -> str:
    ctx, user = request.ctx, request.user
    here = "/ui" + request.path
    nav = "".join(
        f'<li><a href="/ui/{h(n.path)}"'
        + (' aria-current="page"' if here.startswith(f"/ui/{n.path}") else "")
        + f">{h(n.label)}</a></li>"
        for n in ctx.nav
    )
    who = _who(request)
    css, js = ctx.assets.get("app.css", ""), ctx.assets.get("app.js", "")
    extra = "".join(f'<script src="{h(ctx.assets[name])}" defer></script>' for name in scripts)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{h(request.csrf)}">'
        f'<meta name="can-act" content="{"yes" if user.can_act else "no"}">'
        f"<title>{h(title)} · modelport</title>"
        f'<link rel="stylesheet" href="{h(css)}"><link rel="icon" href="data:,">'
        f'<script src="{h(js)}" defer></script>{extra}</head><body>'
        '<a class="skip" href="#main">Skip to content</a>'
        '<header class="top"><a class="brand" href="/ui/models">modelport</a>'
        f'<nav aria-label="Main"><ul>{nav}</ul></nav>{who}</header>'
        f'<main id="main" tabindex="-1"><h1>{h(title)}</h1>{body}</main>'
        '<div id="toast" class="toast" role="status" aria-live="polite"></div>'
        "</body></html>"
    )


def _who(request: Request) -> str:
    user = request.user
    if not request.ctx.keys.required:
        role = "admin" if user.can_act else "read-only"
        return f'<p class="who">no API keys · {role}</p>'
    if user.name is None:
        return f'<p class="who">{link(url("/ui/login", next="/ui" + request.path), "Sign in")}</p>'
    out = ""
    if user.signed_in:
        out = (
            '<form method="post" action="/ui/logout" class="inline">'
            f'{hidden(request)}<button type="submit" class="link">Sign out</button></form>'
        )
    return f'<div class="who"><span>{h(user.name)} · {h(user.role)}</span>{out}</div>'
