"""Aliases: where each points and since when, the admin actions (move, roll back) and the
alias history as a timeline.

    POST /ui/api/models/digits/aliases/production            {"version": 5, "expected": 3}
    POST /ui/api/models/digits/aliases/production/rollback   {"expected": 5}
    POST /ui/api/models/digits/aliases     {"alias": "staging", "version": 4, "expected": null}
        200 {"message", "alias", "version"}; 409 {"error", "alias", "expected", "current"} when
        the alias no longer names ``expected`` (the version the page showed; null: no alias)
    GET  /ui/api/models/digits/history?limit=200             the newest alias moves, oldest first

Moves go through ``Registry.set_alias`` / ``rollback`` with ``expected``, checked in the same
transaction as the move; each is an event and an audit entry as the caller's key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelport.errors import InvalidInput
from modelport.registry import browse
from modelport.ui import svg
from modelport.ui.layout import h, hidden, link, model_url, table, when
from modelport.ui.page import Page, Reply, Request, Route, json_reply
from modelport.ui.pages.model import model_name
from modelport.uri import validate_alias


def _int(value: Any, what: str, blank_is_none: bool = False) -> int | None:
    if value is None or (blank_is_none and value == ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(f"{what} must be a version number")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{what} must be a version number, got {str(value)[:20]!r}") from None
    if not 1 <= number <= 2**31 - 1:
        raise InvalidInput(f"{what} must be a version number of 1 or more, got {number}")
    return number


def _expected(data: dict[str, Any]) -> int | None:
    if "expected" not in data:
        raise InvalidInput("send 'expected': the alias's version the page showed (null if none)")
    return _int(data["expected"], "'expected'", blank_is_none=True)


def move(request: Request, name: str, alias: str) -> Reply:
    name, alias = model_name(name), validate_alias(alias)
    data = request.data()
    version = _int(data.get("version"), "'version'")
    if version is None:
        raise InvalidInput("send 'version': the version the alias should name")
    moved = request.registry.set_alias(name, alias, version, expected=_expected(data))
    return json_reply(
        {
            "message": f"{alias} of {name} now names version {moved.version}",
            "alias": alias,
            "version": moved.version,
        }
    )


def rollback(request: Request, name: str, alias: str) -> Reply:
    name, alias = model_name(name), validate_alias(alias)
    back = request.registry.rollback(name, alias, expected=_expected(request.data()))
    return json_reply(
        {
            "message": f"{alias} of {name} rolled back to version {back.version}",
            "alias": alias,
            "version": back.version,
        }
    )


def api_history(request: Request, name: str) -> Reply:
    name = model_name(name)
    found = browse.alias_events(request.registry, name, request.number("limit", 200, 1, 500))
    return json_reply({"total": found.total, "items": [e.to_dict() for e in found.items]})


def _actions(request: Request, name: str, alias: str, version: int) -> str:
    base = model_url(name, "aliases", alias)
    api = "/ui/api" + base[3:]
    keep = hidden(request, next=model_url(name), expected=version)
    field = f"mv-{alias}"
    return (
        f'<div class="actions"><form class="inline" method="post" action="{h(api)}" data-action '
        f'data-confirm="Move {h(alias)} of {h(name)} from version {{expected}} to version '
        f'{{version}}?">{keep}<label for="{h(field)}" class="sr">Move {h(alias)} to version'
        f'</label> <input id="{h(field)}" name="version" type="number" min="1" required '
        f'placeholder="version"> <button type="submit">Move {h(alias)}</button></form>'
        f'<form class="inline" method="post" action="{h(api)}/rollback" data-action '
        f'data-confirm="Roll {h(alias)} of {h(name)} back from version {{expected}} to where it '
        f'pointed before?">{keep}<button type="submit" class="secondary">Roll back '
        f"{h(alias)}</button></form></div>"
    )


def _new_alias(request: Request, name: str) -> str:
    return (
        f'<form class="bar" method="post" id="new-alias" data-action data-confirm="Point the new '
        f'alias {{alias}} of {h(name)} at version {{version}}?" '
        f'action="/ui/api/models/{h(name)}/aliases">{hidden(request, next=model_url(name))}'
        '<input type="hidden" name="expected" value=""><div><label for="na-alias">New alias'
        '</label><input id="na-alias" name="alias" required pattern="[A-Za-z][A-Za-z0-9._-]*">'
        '</div><div><label for="na-version">Version</label><input id="na-version" '
        'name="version" type="number" min="1" required></div><div><button type="submit">'
        "Set alias</button></div></form>"
    )


def aliases_section(request: Request, name: str, info: dict[str, Any]) -> str:
    can = request.user.can_act
    rows = []
    for a in info["aliases"]:
        alias, version = a["alias"], a["version"]
        cells = [
            h(alias),
            link(model_url(name, "versions", version), f"version {version}"),
            when(datetime.fromisoformat(a["since"])),
        ]
        if can:
            cells.append(_actions(request, name, alias, version))
        rows.append(cells)
    head = ["Alias", "Names", "Since"] + (["Actions"] if can else [])
    note = (
        ""
        if can
        else (
            '<p class="muted">Read-only: moving an alias needs a key with the '
            "<code>admin</code> role.</p>"
        )
    )
    stale = (
        '<p id="stale" class="banner" role="alert" hidden></p>'
        f'<div id="live" data-url="/ui/api/models/{h(name)}" data-aliases="'
        + h(",".join(f"{a['alias']}={a['version']}" for a in info["aliases"]))
        + '"></div>'
    )
    return (
        f'<h2 id="aliases">Aliases</h2>{stale}{note}'
        + table(head, rows, "Aliases", empty="No alias yet.")
        + (_new_alias(request, name) if can else "")
    )


def history_section(request: Request, name: str) -> str:
    found = browse.alias_events(request.registry, name, 200)
    rows = [
        (
            when(e.at),
            h(e.alias),
            h(e.action),
            h("—" if e.from_version is None else e.from_version),
            h("—" if e.version is None else e.version),
            h(e.actor),
        )
        for e in reversed(found.items[-20:])
    ]
    shown = f"the last {len(found.items)} of {found.total} moves" if found.total else ""
    return (
        f'<h2 id="history">Alias history</h2><p class="muted">{h(shown)}</p>'
        + svg.timeline(found.items, datetime.now(UTC))
        + table(
            ["When", "Alias", "Action", "From", "To", "By"],
            rows,
            "Latest alias moves",
            empty="No alias has moved yet.",
        )
    )


def move_new(request: Request, name: str) -> Reply:
    """The new-alias form: the alias's name is a field, not part of the path."""
    alias = str(request.data().get("alias") or "")
    return move(request, name, alias)


PAGE = Page(
    "aliases",
    routes=(
        Route("POST", "api/models/{}/aliases", move_new),
        Route("POST", "api/models/{}/aliases/{}", move),
        Route("POST", "api/models/{}/aliases/{}/rollback", rollback),
        Route("GET", "api/models/{}/history", api_history),
    ),
)
