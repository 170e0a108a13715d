"""``modelport audit``: the append-only record of admin actions.

modelport audit --since 1h --action alias_set --model digits
modelport audit --since 2026-12-01 --json
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from modelport.cli.common import console, print_json, registry, when

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def audit(
    since: Annotated[
        str | None,
        typer.Option(
            help="Only entries this recent: 30m, 12h, 7d, or a date/time "
            "(2026-12-01, 2026-12-01T10:00).",
            show_default=False,
        ),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            help="Only this action: alias_set, rollback, delete, load, unload, "
            "rollout_start, admin_request, admin_denied, ...",
            show_default=False,
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(help="Newest entries shown at most.", min=1)] = 200,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Who did which admin action, when, from where (a client address, or 'cli')."""
    entries = registry().audit.entries(
        since=parse_since(since) if since else None, action=action, model=model, limit=limit
    )
    if json_out:
        print_json([e.to_dict() for e in entries])
        return
    from rich.table import Table

    table = Table("when", "who", "from", "action", "model", "what", title="audit log")
    for e in entries:
        table.add_row(when(e.at), e.actor, e.source, e.action, e.model or "", describe(e))
    console.print(table if entries else "no audit entries match")


def describe(entry: object) -> str:
    """One line for an entry: ``production: 2 -> 3``, ``POST /v2/... -> 200``."""
    detail = getattr(entry, "detail", {})
    target = getattr(entry, "target", None) or ""
    if "path" in detail:
        return f"{detail['method']} {detail['path']} -> {detail.get('status', '?')}"
    if "from_version" in detail or "version" in detail:
        moved = f"{detail.get('from_version', '-')} -> {detail.get('version', '-')}"
        return f"{target}: {moved}" if not target.startswith("version") else target
    rest = ", ".join(f"{k}={v}" for k, v in detail.items())
    return f"{target} ({rest})" if rest else target


def parse_since(text: str) -> datetime:
    """``30m``/``12h``/``7d`` ago, or an ISO date/time (local time when it has no zone)."""
    from modelport.errors import InvalidInput

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        return datetime.now(UTC) - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--since {text!r} is not a duration (30m, 12h, 7d) or a date (2026-12-01)"
        ) from None
    return moment.astimezone(UTC) if moment.tzinfo is None else moment
