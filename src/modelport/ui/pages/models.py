"""The Models page: every model with its latest version, aliases and last change; search, sort
and paging happen in SQL (``registry.browse.models_page``).

    GET /ui/models?q=dig&sort=updated&order=desc&offset=25
    GET /ui/api/models?q=dig&sort=name&limit=25&offset=0  {"total", "items": [summary, ...]}
"""

from __future__ import annotations

from typing import Any

from modelport.registry.browse import MODEL_SORTS, Page, models_page
from modelport.ui.layout import chip, h, link, model_url, pager, table, url, when
from modelport.ui.page import Nav, Reply, Request, Route, json_reply
from modelport.ui.page import Page as UiPage

PAGE_SIZE = 25
SORT_LABELS = {"name": "Name", "updated": "Last change", "versions": "Versions"}


def _query(request: Request, limit: int | None = None) -> dict[str, Any]:
    sort = request.query.get("sort", "name")
    order = request.query.get("order", "desc" if sort != "name" else "asc")
    return {
        "search": request.query.get("q", "").strip()[:128],
        "sort": sort,
        "descending": order == "desc",
        "limit": limit or request.number("limit", PAGE_SIZE, 1, 500),
        "offset": request.number("offset", 0),
    }


def _found(request: Request, limit: int | None = None) -> tuple[dict[str, Any], Page]:
    query = _query(request, limit)
    return query, models_page(request.registry, **query)


def api(request: Request) -> Reply:
    query, found = _found(request)
    return json_reply(
        {
            "total": found.total,
            "offset": query["offset"],
            "items": [m.to_dict() for m in found.items],
        }
    )


def view(request: Request) -> Reply:
    query, found = _found(request, PAGE_SIZE)
    search, sort, offset = query["search"], query["sort"], query["offset"]
    order = "desc" if query["descending"] else "asc"
    rows = []
    for m in found.items:
        aliases = "".join(
            chip(f"{a} → {v}", model_url(m.name, "versions", v)) for a, v in m.aliases.items()
        )
        latest = link(model_url(m.name, "versions", m.latest), m.latest) if m.latest else ""
        rows.append(
            (
                link(model_url(m.name), m.name),
                latest,
                h(m.versions),
                aliases or '<span class="muted">none</span>',
                when(m.updated_at),
            )
        )
    here = {"q": search, "sort": sort, "order": order}
    prev = url("/ui/models", **here, offset=max(offset - PAGE_SIZE, 0)) if offset else None
    more = offset + PAGE_SIZE < found.total
    nxt = url("/ui/models", **here, offset=offset + PAGE_SIZE) if more else None
    shown = f"{offset + 1}–{offset + len(found.items)} of {found.total}" if found.items else ""
    body = (
        _search_form(search, sort, order)
        + f'<p class="muted" aria-live="polite">{h(shown) or "No model matches."}</p>'
        + table(
            ["Model", "Latest", "Versions", "Aliases", "Last change"],
            rows,
            "Models",
            empty="No model is registered yet: modelport register MODEL NAME",
        )
        + pager([("← Previous", prev), ("Next →", nxt)], "Model pages")
    )
    return request.page("Models", body)


def _search_form(search: str, sort: str, order: str) -> str:
    sorts = "".join(
        f'<option value="{s}"{" selected" if s == sort else ""}>{SORT_LABELS[s]}</option>'
        for s in MODEL_SORTS
    )
    orders = "".join(
        f'<option value="{o}"{" selected" if o == order else ""}>{label}</option>'
        for o, label in (("asc", "Ascending"), ("desc", "Descending"))
    )
    return (
        '<form class="bar" method="get" action="/ui/models" role="search">'
        f'<div><label for="q">Search</label><input id="q" name="q" type="search" '
        f'value="{h(search)}" placeholder="model name"></div>'
        f'<div><label for="sort">Sort by</label><select id="sort" name="sort">{sorts}</select>'
        f'</div><div><label for="order">Order</label><select id="order" name="order">{orders}'
        '</select></div><div><button type="submit">Show</button></div></form>'
    )


PAGE = UiPage(
    "models",
    routes=(Route("GET", "models", view), Route("GET", "api/models", api)),
    nav=Nav("Models", "models"),
)
