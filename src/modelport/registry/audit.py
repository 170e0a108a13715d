"""The audit log: who did which admin action, when, from where. Append-only (schema version 4).

    with acting_as("ops-key", "10.0.0.7"):     # a server marks the caller of an admin route
        registry.set_alias("digits", "production", 3)
    registry.audit.entries(since=yesterday, action="alias_set", model="digits")

Outside ``acting_as`` an action is the OS user's (``Settings.user``) from ``"cli"``. The database
itself refuses updates and deletes of the table (triggers on SQLite and PostgreSQL), so no API,
ours or a hand-written one, can rewrite the record.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelport.registry.catalog import metadata, utcnow, write
from modelport.registry.records import as_utc

if TYPE_CHECKING:
    from modelport.registry import Registry

table = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("target", sa.String(256)),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_audit_log_at", "at"),
)

_REFUSE = "the audit log is append-only"
_SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{verb} BEFORE {verb.upper()} ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END"
    for verb in ("update", "delete")
]
_POSTGRES = [
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{_REFUSE}'; END $$",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]
for _statement in _SQLITE:
    sa.event.listen(table, "after_create", sa.DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _POSTGRES:
    sa.event.listen(table, "after_create", sa.DDL(_statement).execute_if(dialect="postgresql"))

_ACTOR: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "modelport_audit_actor", default=None
)


@contextlib.contextmanager
def acting_as(actor: str, source: str) -> Iterator[None]:
    """Record the actions in this block (this thread or task) as ``actor`` from ``source``."""
    token = _ACTOR.set((actor, source))
    try:
        yield
    finally:
        _ACTOR.reset(token)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    source: str
    action: str
    model: str | None
    target: str | None
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record(
    conn: Connection, default_actor: str, action: str, model: str | None = None,
    target: str | None = None, **detail: Any,
) -> None:  # fmt: skip
    """Append one entry inside the caller's transaction (the action and its record commit
    together)."""
    actor, source = _ACTOR.get() or (default_actor, "cli")
    conn.execute(sa.insert(table).values(
        at=utcnow(), actor=actor[:128], source=source[:128], action=action, model=model,
        target=target, detail={k: v for k, v in detail.items() if v is not None},
    ))  # fmt: skip


class AuditLog:
    """``registry.audit``: append and read; there is no edit or delete."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def append(self, action: str, model: str | None = None, target: str | None = None,
               **detail: Any) -> None:  # fmt: skip
        """One entry in a transaction of its own (for actions that write nothing else)."""
        user = self.registry.settings.user
        write(self.registry.engine, lambda conn: record(conn, user, action, model, target,
                                                        **detail))  # fmt: skip

    def entries(
        self, since: datetime | None = None, action: str | None = None,
        model: str | None = None, limit: int = 1000,
    ) -> list[AuditEntry]:  # fmt: skip
        """The newest ``limit`` entries matching the filters, oldest first."""
        query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(table.c.at >= as_utc(since))
        if action is not None:
            query = query.where(table.c.action == action)
        if model is not None:
            query = query.where(table.c.model == model)
        with self.registry.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [AuditEntry(r.id, as_utc(r.at), r.actor, r.source, r.action, r.model, r.target,
                           dict(r.detail or {})) for r in reversed(rows)]  # fmt: skip
