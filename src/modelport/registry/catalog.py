"""Catalogue tables (SQLAlchemy Core): models, versions, aliases and an append-only event log."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from modelport.errors import BackendError, first_line

metadata = sa.MetaData()

# The catalogue's layout. A release that changes it raises SCHEMA_VERSION and adds the step that
# takes a catalogue from the version before to the new one. Steps alter existing tables only:
# tables new to a version are made by ``create_all`` before the steps run.
SCHEMA_VERSION = 5
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("next_version", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("entrypoint", sa.String(512), nullable=False),
    sa.Column("files", sa.JSON, nullable=False),
    sa.Column("signature", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("parent_name", sa.String(128)),
    sa.Column("parent_version", sa.Integer),
    sa.Column("transform", sa.String(64)),
    sa.Column("transform_params", sa.JSON),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
    sa.Index("ix_versions_parent", "parent_name", "parent_version"),  # lineage: children of
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("alias", sa.String(128)),
    sa.Column("version", sa.Integer),
    sa.Column("from_version", sa.Integer),
    sa.Column("detail", sa.JSON),
    sa.Index("ix_events_model_alias", "model_id", "alias", "id"),
)

# Rollouts (schema 2): one row per rollout, an append-only decision log, the traffic tallies
# replicas report per window, and leases (one controller decides at a time).
rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("active_model_id", sa.Integer, unique=True),  # set while active: one per model
    sa.Column("alias", sa.String(128), nullable=False),
    sa.Column("stable", sa.Integer, nullable=False),
    sa.Column("candidate", sa.Integer, nullable=False),
    sa.Column("candidate_alias", sa.String(128)),
    sa.Column("plan", sa.JSON, nullable=False),
    sa.Column("gates", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("progress", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
)

rollout_decisions = sa.Table(
    "rollout_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("from_state", sa.String(32), nullable=False),
    sa.Column("to_state", sa.String(32), nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Index("ix_rollout_decisions", "rollout_id", "id"),
)

rollout_windows = sa.Table(
    "rollout_windows",
    metadata,
    sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),  # window start, ms since the epoch
    sa.Column("replica", sa.String(128), primary_key=True),
    sa.Column("tally", sa.JSON, nullable=False),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # seconds since the epoch
)


def _add_rollouts(conn: Connection) -> None:
    for table in (rollouts, rollout_decisions, rollout_windows, leases):
        table.create(conn, checkfirst=True)


MIGRATIONS[2] = _add_rollouts


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_engine(url: str) -> Engine:
    try:
        return _create_engine(url)
    except sa.exc.SQLAlchemyError as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)
    except (ImportError, _SchemaError) as exc:
        reason = str(exc)
    safe = sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
    raise BackendError(f"cannot open the catalogue at {safe}: {reason}") from None


def _create_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})
        _sqlite_immediate_transactions(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            if engine.dialect.name == "postgresql":  # replicas starting together agree once
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727368)")
            _create_or_upgrade(conn)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _create_or_upgrade(conn: Connection) -> None:
    """Make a fresh catalogue, or bring an older one up to SCHEMA_VERSION in this transaction.

    A catalogue written by a newer release is refused before anything is touched: an older
    release could otherwise write rows the newer layout does not expect."""
    tables = set(sa.inspect(conn).get_table_names())
    stored: int | None = None
    if "meta" in tables:
        value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version"))
        raw = value.scalar_one_or_none()
        stored = None if raw is None else int(raw)
    if stored is not None and stored > SCHEMA_VERSION:
        raise _SchemaError(
            f"schema version {stored}, written by a newer modelport; this one reads up to "
            f"{SCHEMA_VERSION}: upgrade modelport to use it"
        )
    metadata.create_all(conn)
    if stored is None:  # fresh, or made before the version was recorded (that layout is 1)
        stored = 1 if "versions" in tables else SCHEMA_VERSION
        conn.execute(sa.insert(meta).values(key="schema_version", value=str(stored)))
    for step in range(stored + 1, SCHEMA_VERSION + 1):
        try:
            MIGRATIONS[step](conn)
        except Exception as exc:  # the transaction rolls back: the catalogue stays as it was
            raise _SchemaError(
                f"upgrading the schema from version {step - 1} to {step} failed, nothing was "
                f"changed: {first_line(exc)}"
            ) from exc
    if stored != SCHEMA_VERSION:
        conn.execute(
            sa.update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
        )


class _SchemaError(Exception):
    """The catalogue's layout is one this release cannot use."""


def _sqlite_immediate_transactions(engine: Engine) -> None:
    """WAL journal, and take the write lock when a transaction starts (no upgrade deadlocks)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


T = TypeVar("T")


def write(engine: Engine, work: Callable[[Connection], T], attempts: int = 30) -> T:
    """Run ``work`` in one write transaction, retrying on lock conflicts and unique-key races."""
    delay = 0.005
    for attempt in range(attempts):
        try:
            with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
                with conn.begin():
                    return work(conn)
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts - 1 or not _retryable(exc):
                raise BackendError(f"catalogue write failed: {exc.orig}") from None
        except DBAPIError as exc:
            if attempt == attempts - 1 or not _retryable(exc):
                raise BackendError(f"catalogue write failed: {exc.orig}") from None
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    text = str(exc.orig).lower()
    return any(
        word in text for word in ("locked", "busy", "deadlock", "serializ", "could not obtain")
    )


def _fleet_tables(conn: Connection) -> None:
    """Version 3: the edge fleet's tables (registry/fleet.py); ``create_all`` made them."""
    from modelport.registry import fleet

    for table in fleet.TABLES:
        table.create(conn, checkfirst=True)


MIGRATIONS[3] = _fleet_tables


def _audit_log(conn: Connection) -> None:
    """Version 4: the append-only audit log (registry/audit.py), with its refusing triggers."""
    from modelport.registry import audit

    audit.table.create(conn, checkfirst=True)


MIGRATIONS[4] = _audit_log


def _parent_index(conn: Connection) -> None:
    """Version 5: an index of versions by parent, so a lineage finds children without a scan."""
    (index,) = (i for i in versions.indexes if i.name == "ix_versions_parent")
    index.create(conn, checkfirst=True)


MIGRATIONS[5] = _parent_index
from modelport.registry import audit as _audit  # noqa: E402,F401  (its table joins ``metadata``)
from modelport.registry import fleet as _fleet  # noqa: E402,F401  (its tables join ``metadata``)
