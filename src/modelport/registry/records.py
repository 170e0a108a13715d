"""Immutable records the registry hands out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelport.signature import Signature


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    format: str
    sha256: str
    size: int
    entrypoint: str
    files: tuple[FileEntry, ...]
    signature: Signature
    metrics: dict[str, float]
    tags: dict[str, str]
    description: str
    created_at: datetime
    created_by: str
    parent: str | None = None
    transform: str | None = None
    transform_params: dict[str, Any] | None = None
    aliases: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "entrypoint": self.entrypoint,
            "files": [f.to_dict() for f in self.files],
            "signature": self.signature.to_dict(),
            "metrics": dict(self.metrics),
            "tags": dict(self.tags),
            "description": self.description,
            "aliases": list(self.aliases),
            "parent": self.parent,
            "transform": self.transform,
            "transform_params": self.transform_params,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    versions: int
    latest: int | None
    aliases: dict[str, int]
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "latest": self.latest,
            "aliases": dict(self.aliases),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    actor: str
    action: str
    name: str
    version: int | None
    alias: str | None = None
    from_version: int | None = None
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "from_version": self.from_version,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    ref: str
    path: str
    sha256: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "path": self.path, "sha256": self.sha256, "message": self.message}


@dataclass(frozen=True, slots=True)
class GcReport:
    removed_blobs: int
    freed_bytes: int
    removed_tmp: int
    removed_checkouts: int
    kept_blobs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed_blobs": self.removed_blobs,
            "freed_bytes": self.freed_bytes,
            "removed_tmp": self.removed_tmp,
            "removed_checkouts": self.removed_checkouts,
            "kept_blobs": self.kept_blobs,
        }


def version_from_row(name: str, row: Any, aliases: Iterable[str]) -> ModelVersion:
    """A record from a ``versions`` table row."""
    parent = f"{row.parent_name}:{row.parent_version}" if row.parent_name else None
    return ModelVersion(
        name=name,
        version=row.version,
        format=row.format,
        sha256=row.sha256,
        size=row.size,
        entrypoint=row.entrypoint,
        files=tuple(FileEntry(f["path"], f["sha256"], f["size"]) for f in row.files),
        signature=Signature.from_dict(row.signature),
        metrics=dict(row.metrics),
        tags=dict(row.tags),
        description=row.description,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        parent=parent,
        transform=row.transform,
        transform_params=row.transform_params,
        aliases=tuple(aliases),
    )


def as_utc(value: datetime) -> datetime:
    """A timestamp from the catalogue as aware UTC (SQLite hands back naive ones)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
