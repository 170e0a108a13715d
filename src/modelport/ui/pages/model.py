"""The Model page: aliases (with their actions), versions paged by key, the lineage of the
version in production, the alias timeline and a compare form.

    GET /ui/models/digits?before=951         versions 950 and older (50 a page)
    GET /ui/api/models/digits                {"name", "versions", "latest", "aliases": [...]}
    GET /ui/api/models/digits/versions?before=951&limit=50
        {"total", "items": [version, ...], "older": 901 | null, "newer": 950 | null}
"""

from __future__ import annotations

from typing import Any

from modelport.errors import InvalidReference, NotFound
from modelport.registry import browse
from modelport.registry.records import ModelVersion
from modelport.ui import svg
from modelport.ui.layout import chip, h, link, model_url, pager, pairs, size, table, url, when
from modelport.ui.page import Page, Reply, Request, Route, json_reply
from modelport.uri import validate_name

PAGE_SIZE = 50


def model_name(text: str) -> str:
    """A model name from a URL: one that cannot exist is simply not found."""
    try:
        return validate_name(text)
    except InvalidReference:
        raise NotFound(f"model {text[:80]!r} not found") from None


def version_number(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise NotFound(f"model {name!r} has no version {text[:20]!r}")
    return int(text)


def summary(request: Request, name: str, found: browse.Page | None = None) -> dict[str, Any]:
    """The model's version count, oldest and latest numbers, and aliases (since when)."""
    found = found or browse.versions_page(request.registry, name, limit=1)
    held = browse.aliases(request.registry, name)
    return {
        "name": name,
        "versions": found.total,
        "oldest": found.oldest,
        "latest": found.latest,
        "aliases": [a.to_dict() for a in held],
    }


def _page_of(request: Request, name: str, limit: int) -> browse.Page:
    before, after = request.number("before", None, 1), request.number("after", None, 0)
    return browse.versions_page(request.registry, name, before=before, after=after, limit=limit)


def around(found: browse.Page) -> dict[str, int | None]:
    """The keys of the pages before and after ``found``: older (``before=``), newer
    (``after=``), or None at either end."""
    numbers = [v.version for v in found.items]
    low, high = found.oldest, found.latest
    older = min(numbers) if numbers and low is not None and min(numbers) > low else None
    newer = max(numbers) if numbers and high is not None and max(numbers) < high else None
    return {"older": older, "newer": newer}


def api_summary(request: Request, name: str) -> Reply:
    return json_reply(summary(request, model_name(name)))


def api_versions(request: Request, name: str) -> Reply:
    name = model_name(name)
    found = _page_of(request, name, request.number("limit", PAGE_SIZE, 1, 500))
    return json_reply(
        {"total": found.total, "items": [v.to_dict() for v in found.items], **around(found)}
    )


def from_cell(version: ModelVersion) -> str:
    if not version.parent:
        return '<span class="muted">—</span>'
    parent, _, number = version.parent.rpartition(":")
    return (
        link(model_url(parent, "versions", number), version.parent)
        + f' <span class="muted">{h(svg.transform_label(version))}</span>'
    )


def versions_table(name: str, versions: tuple[ModelVersion, ...]) -> str:
    rows = []
    for v in versions:
        shown = dict(list(sorted(v.metrics.items()))[:3])
        more = f' <span class="muted">+{len(v.metrics) - 3}</span>' if len(v.metrics) > 3 else ""
        tags = {k: val for k, val in v.tags.items() if not k.startswith("attachment.")}
        rows.append(
            (
                link(model_url(name, "versions", v.version), v.version, f"version {v.version}"),
                when(v.created_at),
                h(v.format),
                size(v.size),
                pairs(shown) + more,
                "".join(chip(f"{k}={val}") for k, val in list(tags.items())[:3]),
                "".join(chip(a) for a in v.aliases),
                from_cell(v),
            )
        )
    return table(
        ["Version", "Created", "Format", "Size", "Metrics", "Tags", "Aliases", "From"],
        rows,
        "Versions",
        empty="This model has no versions.",
    )


def _versions_section(name: str, found: browse.Page) -> str:
    base, keys = model_url(name), around(found)
    newer, older, first = keys["newer"], keys["older"], found.oldest
    links = [
        ("« Newest", base if newer else None),
        ("← Newer", url(base, after=newer) if newer else None),
        ("Older →", url(base, before=older) if older else None),
        ("Oldest »", url(base, after=first - 1) if older and first else None),
    ]
    numbers = [v.version for v in found.items]
    shown = f"versions {max(numbers)}–{min(numbers)} of {found.total}" if numbers else ""
    return (
        f'<h2 id="versions">Versions</h2><p class="muted">{h(shown)}, newest first</p>'
        + pager(links, "Version pages")
        + versions_table(name, found.items)
        + pager(links, "Version pages (bottom)")
    )


def _lineage_section(request: Request, name: str, info: dict[str, Any]) -> str:
    held = {a["alias"]: a["version"] for a in info["aliases"]}
    number = held.get("production") or info["latest"]
    if number is None:
        return ""
    from modelport.ui.pages.version import lineage_of

    here = request.registry.get(f"{name}:{number}")  # its aliases: it may be off this page
    where = "production" if "production" in held else "the latest version"
    return f'<h2 id="lineage">Lineage of {h(here.ref)} ({h(where)})</h2>' + lineage_of(
        request, here
    )


def _compare_form(name: str, info: dict[str, Any]) -> str:
    latest = info["latest"] or 1
    return (
        f'<h2 id="compare">Compare two versions</h2><form class="bar" method="get" '
        f'action="{h(model_url(name, "compare"))}"><div><label for="cmp-a">Version A</label>'
        f'<input id="cmp-a" name="a" type="number" min="1" value="{max(latest - 1, 1)}" required>'
        '</div><div><label for="cmp-b">Version B</label><input id="cmp-b" name="b" '
        f'type="number" min="1" value="{latest}" required></div><div><button type="submit">'
        "Compare</button></div></form>"
    )


def view(request: Request, name: str) -> Reply:
    from modelport.ui.pages.aliases import aliases_section, history_section

    name = model_name(name)
    found = _page_of(request, name, PAGE_SIZE)
    info = summary(request, name, found)
    latest = info["latest"]
    head = (
        f'<p class="muted">{info["versions"]} version(s); latest '
        + (link(model_url(name, "versions", latest), f"version {latest}") if latest else "none")
        + f' · <a href="{h(url("/ui/api/models/" + name))}">JSON</a></p>'
    )
    body = (
        head
        + aliases_section(request, name, info)
        + _versions_section(name, found)
        + _lineage_section(request, name, info)
        + history_section(request, name)
        + _compare_form(name, info)
    )
    return request.page(f"Model {name}", body, scripts=("model.js",))


PAGE = Page(
    "model",
    routes=(
        Route("GET", "models/{}", view),
        Route("GET", "api/models/{}", api_summary),
        Route("GET", "api/models/{}/versions", api_versions),
    ),
)
