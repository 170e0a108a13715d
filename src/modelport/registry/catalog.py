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

from modelport.errors import BackendError

metadata = sa.MetaData()

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


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_engine(url: str) -> Engine:
    try:
        return _create_engine(url)
    except sa.exc.SQLAlchemyError as exc:
        safe = sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BackendError(f"cannot open the catalogue at {safe}: {reason}") from None
    except ImportError as exc:
        raise BackendError(f"cannot open the catalogue at {url}: {exc}") from None


def _create_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})
        _sqlite_immediate_transactions(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if engine.dialect.name == "postgresql":  # replicas starting together create tables once
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727368)")
        metadata.create_all(conn)
    return engine


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
