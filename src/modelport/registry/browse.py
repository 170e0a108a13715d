"""Paged reads of the catalogue for pages and APIs that must not load everything at once.

    page = models_page(registry, search="dig", sort="updated", descending=True, limit=25)
    page.total, [m.name for m in page.items]
    older = versions_page(registry, "digits", before=951, limit=50)   # 950, 949, ... (keyset)
    older.total, older.oldest, older.latest                            # of the whole model
    ancestors(registry, registry.get("digits:3"), limit=3)  # it, its parent... (bounded)
    aliases(registry, "digits")        # [AliasState("production", 3, since), ...]
    children(registry, "digits", 3)    # versions made from digits:3, any model
    children_of(registry, [("digits", 1), ("digits", 2)])   # a lineage level in two queries
    alias_events(registry, "digits", limit=200)

Versions are paged by key (``version < before`` / ``version > after`` on the unique
(model_id, version) index), so the thousandth page costs what the first does on SQLite and
PostgreSQL alike; models are paged by offset (one row per model, few of them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelport.errors import InvalidInput, NotFound
from modelport.registry import catalog as c
from modelport.registry.records import (
    Event,
    ModelSummary,
    ModelVersion,
    as_utc,
    version_from_row,
)
from modelport.uri import validate_name

if TYPE_CHECKING:
    from modelport.registry import Registry

MAX_LIMIT = 500
MODEL_SORTS = ("name", "updated", "versions")
ALIAS_ACTIONS = ("alias_set", "alias_remove", "rollback")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a longer list: ``total`` counts every item that matched."""

    items: tuple[Any, ...]
    total: int
    oldest: int | None = None  # versions pages: the oldest and newest version numbers
    latest: int | None = None


@dataclass(frozen=True, slots=True)
class AliasState:
    alias: str
    version: int
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "version": self.version, "since": self.since.isoformat()}


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def models_page(
    registry: Registry,
    search: str = "",
    sort: str = "name",
    descending: bool = False,
    limit: int = 25,
    offset: int = 0,
) -> Page:
    """Models whose name contains ``search`` (any case), sorted by name, last change (the
    newest event: a registration, an alias move...) or version count; a page of ModelSummary
    whose ``updated_at`` is that last change."""
    if sort not in MODEL_SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(MODEL_SORTS)}, got {sort!r}")
    if offset < 0:
        raise InvalidInput(f"offset must be 0 or more, got {offset}")
    m, v, e = c.models, c.versions, c.events
    stats = (
        sa.select(v.c.model_id, sa.func.count().label("n"), sa.func.max(v.c.version).label("top"))
        .group_by(v.c.model_id)
        .subquery()
    )
    changed = sa.select(e.c.model_id, sa.func.max(e.c.at).label("at")).group_by(e.c.model_id)
    changed = changed.subquery()
    last = sa.func.coalesce(changed.c.at, m.c.created_at).label("last")
    count = sa.func.coalesce(stats.c.n, 0).label("n")
    query = (
        sa.select(m.c.id, m.c.name, count, stats.c.top, last)
        .outerjoin(stats, stats.c.model_id == m.c.id)
        .outerjoin(changed, changed.c.model_id == m.c.id)
    )
    where = sa.true()
    if search:
        where = sa.func.lower(m.c.name).like(_like(search), escape="\\")
    key = {"name": m.c.name, "updated": last, "versions": count}[sort]
    order = key.desc() if descending else key.asc()
    tie = m.c.name.desc() if descending else m.c.name.asc()
    query = query.where(where).order_by(order, tie).limit(_limit(limit)).offset(offset)
    with registry.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(m).where(where)).scalar_one()
        rows = conn.execute(query).all()
        held = _aliases_of(conn, [r.id for r in rows])
    items = tuple(
        ModelSummary(r.name, r.n, r.top, held.get(r.id, {}), as_utc(r.last)) for r in rows
    )
    return Page(items, total)


def _aliases_of(conn: Any, model_ids: list[int]) -> dict[int, dict[str, int]]:
    if not model_ids:
        return {}
    a, v = c.aliases, c.versions
    rows = conn.execute(
        sa.select(a.c.model_id, a.c.alias, v.c.version)
        .join(v, v.c.id == a.c.version_id)
        .where(a.c.model_id.in_(model_ids))
        .order_by(a.c.alias)
    )
    found: dict[int, dict[str, int]] = {}
    for model_id, alias, version in rows:
        found.setdefault(model_id, {})[alias] = version
    return found


def _model_id(registry: Registry, conn: Any, name: str) -> int:
    return registry._model_id(conn, validate_name(name))


def versions_page(
    registry: Registry,
    name: str,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Page:
    """Versions of ``name``, newest first: those below ``before``, else the ``limit`` just
    above ``after``, else the newest; each with its aliases; with the count, oldest and newest
    version numbers of the whole model."""
    if before is not None and after is not None:
        raise InvalidInput("page by 'before' or by 'after', not both")
    v = c.versions
    with registry.engine.connect() as conn:
        model_id = _model_id(registry, conn, name)
        query = sa.select(v).where(v.c.model_id == model_id)
        if after is not None:
            query = query.where(v.c.version > after).order_by(v.c.version.asc())
        else:
            if before is not None:
                query = query.where(v.c.version < before)
            query = query.order_by(v.c.version.desc())
        rows = conn.execute(query.limit(_limit(limit))).all()
        total, low, high = conn.execute(
            sa.select(sa.func.count(), sa.func.min(v.c.version), sa.func.max(v.c.version)).where(
                v.c.model_id == model_id
            )
        ).one()
        held = registry._aliases_by_version(conn, model_id)
    rows = sorted(rows, key=lambda r: -r.version)
    items = tuple(version_from_row(name, r, held.get(r.version, ())) for r in rows)
    return Page(items, total, low, high)


def ancestors(registry: Registry, version: ModelVersion, limit: int = 3) -> list[ModelVersion]:
    """``version``, then up to ``limit`` of its ancestors that still exist (newest first):
    ``Registry.lineage`` bounded, for chains thousands of versions long."""
    chain = [version]
    while (
        len(chain) <= limit and chain[-1].parent and chain[-1].parent not in {v.ref for v in chain}
    ):
        try:
            chain.append(registry.resolve(chain[-1].parent))
        except NotFound:
            break
    return chain


def aliases(registry: Registry, name: str) -> list[AliasState]:
    """The aliases of ``name`` with the version each names and when it last moved there."""
    a, v = c.aliases, c.versions
    with registry.engine.connect() as conn:
        model_id = _model_id(registry, conn, name)
        rows = conn.execute(
            sa.select(a.c.alias, v.c.version, a.c.updated_at)
            .join(v, v.c.id == a.c.version_id)
            .where(a.c.model_id == model_id)
            .order_by(a.c.alias)
        ).all()
    return [AliasState(alias, version, as_utc(at)) for alias, version, at in rows]


def children(registry: Registry, name: str, version: int, limit: int = 50) -> Page:
    """Versions (of any model) whose parent is ``name:version``, oldest first."""
    v, m = c.versions, c.models
    where = (v.c.parent_name == validate_name(name)) & (v.c.parent_version == version)
    query = (
        sa.select(v, m.c.name.label("model_name"))
        .join(m, m.c.id == v.c.model_id)
        .where(where)
        .order_by(v.c.id)
        .limit(_limit(limit))
    )
    with registry.engine.connect() as conn:
        rows = conn.execute(query).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(v).where(where)).scalar_one()
    return Page(tuple(version_from_row(r.model_name, r, ()) for r in rows), total)


@functools.cache
def _children_queries() -> tuple[Any, Any]:
    """The children and counts statements, built once (a windowed subquery costs
    milliseconds to build; SQLAlchemy caches the compiled form of a statement it sees again)."""
    v, m = c.versions, c.models
    pairs = sa.bindparam("pairs", expanding=True)
    where = sa.tuple_(v.c.parent_name, v.c.parent_version).in_(pairs)
    rank = sa.func.row_number().over(
        partition_by=(v.c.parent_name, v.c.parent_version), order_by=v.c.id
    )
    ranked = (
        sa.select(v, m.c.name.label("model_name"), rank.label("rank"))
        .join(m, m.c.id == v.c.model_id)
        .where(where)
        .subquery()
    )
    rows = (
        sa.select(ranked).where(ranked.c.rank <= sa.bindparam("per_parent")).order_by(ranked.c.id)
    )
    counts = sa.select(v.c.parent_name, v.c.parent_version, sa.func.count()).where(where)
    return rows, counts.group_by(v.c.parent_name, v.c.parent_version)


def children_of(
    registry: Registry, parents: Sequence[tuple[str, int]], per_parent: int = 8
) -> tuple[dict[str, list[ModelVersion]], dict[str, int]]:
    """The first ``per_parent`` children of each ``(name, version)`` parent, by parent ref, and
    how many children each has in all: two indexed queries for any number of parents."""
    if not parents:
        return {}, {}
    rows_query, counts_query = _children_queries()
    pairs = [tuple(p) for p in parents]
    with registry.engine.connect() as conn:
        rows = conn.execute(rows_query, {"pairs": pairs, "per_parent": per_parent}).all()
        totals = conn.execute(counts_query, {"pairs": pairs}).all()
    kids: dict[str, list[ModelVersion]] = {}
    for r in rows:
        kids.setdefault(f"{r.parent_name}:{r.parent_version}", []).append(
            version_from_row(r.model_name, r, ())
        )
    return kids, {f"{n}:{k}": count for n, k, count in totals}


def alias_events(registry: Registry, name: str, limit: int = 200) -> Page:
    """The newest ``limit`` alias moves of ``name`` (set, remove, rollback), oldest first."""
    e = c.events
    with registry.engine.connect() as conn:
        model_id = _model_id(registry, conn, name)
        where = (e.c.model_id == model_id) & e.c.action.in_(ALIAS_ACTIONS)
        rows = conn.execute(
            sa.select(e).where(where).order_by(e.c.id.desc()).limit(_limit(limit))
        ).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(e).where(where)).scalar_one()
    events = tuple(
        Event(as_utc(r.at), r.actor, r.action, name, r.version, r.alias, r.from_version, r.detail)
        for r in reversed(rows)
    )
    return Page(events, total)
