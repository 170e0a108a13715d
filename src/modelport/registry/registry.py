"""The registry facade: names, immutable versions, movable aliases, lineage, blobs."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry import audit
from modelport.registry import catalog as c
from modelport.registry.artifact import Artifact
from modelport.registry.blobs import BlobStore
from modelport.registry.files import ArtifactFiles
from modelport.registry.records import (
    Event,
    FileEntry,
    GcReport,
    ModelSummary,
    ModelVersion,
    Problem,
    as_utc,
    version_from_row,
)
from modelport.registry.validation import check_metrics, check_tags, number_ranges
from modelport.settings import Settings
from modelport.uri import ModelRef, validate_alias, validate_name

if TYPE_CHECKING:
    from modelport.registry.rollouts import RolloutStore


ANY = object()  # ``expected=ANY``: move the alias wherever it is now


class StaleAlias(Conflict):
    """An alias moved after the caller looked: ``current`` is where it is now (None: gone)."""

    def __init__(self, name: str, alias: str, expected: Any, current: int | None) -> None:
        def where(v: Any) -> str:
            return f"version {v}" if v is not None else "nowhere (no such alias)"

        super().__init__(f"alias {alias!r} of {name!r} moved meanwhile: it names "
                         f"{where(current)}, not {where(expected)}")  # fmt: skip
        self.name, self.alias, self.expected, self.current = name, alias, expected, current


class Registry:
    """Open with ``Registry(Settings())`` or ``Registry.open(home)``; thread-safe."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.engine = c.create_engine(self.settings.resolved_database_url)
        self.blobs = BlobStore(self.settings.resolved_blob_dir)
        self.checkouts = self.settings.home / "checkouts"
        self.files = ArtifactFiles(self.blobs, self.checkouts)

    @classmethod
    def open(cls, home: str | Path | None = None, **overrides: Any) -> Registry:
        if home is not None:
            overrides["home"] = Path(home)
        return cls(Settings(**overrides))

    @classmethod
    @contextlib.contextmanager
    def borrow(cls, registry: Registry | None = None) -> Iterator[Registry]:
        """``with Registry.borrow(registry) as reg:`` the caller's registry, left open, or a new
        one from the environment's settings, closed at the end of the block."""
        if registry is not None:
            yield registry
            return
        with cls() as own:
            yield own

    def close(self) -> None:
        self.engine.dispose()

    @property
    def audit(self) -> audit.AuditLog:
        """The append-only record of admin actions (see ``modelport.registry.audit``)."""
        return audit.AuditLog(self)

    @property
    def rollouts(self) -> RolloutStore:
        """The catalogue's rollouts (see ``modelport.rollouts`` for what they mean)."""
        from modelport.registry.rollouts import RolloutStore

        return RolloutStore(self)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def add(
        self,
        artifact: Artifact,
        name: str,
        *,
        alias: str | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        parent: str | ModelRef | None = None,
        transform: str | None = None,
        transform_params: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Store ``artifact`` as the next version of ``name``; blobs first, then one transaction."""
        validate_name(name)
        if alias is not None:
            validate_alias(alias)
        clean_metrics = check_metrics(metrics or {})
        clean_tags = check_tags({**artifact.tags, **(tags or {})})
        parent_version = self.resolve(parent) if parent is not None else None
        if transform is not None and parent_version is None:
            raise InvalidInput("a transform needs the parent version it was applied to")
        entries, sha256 = self._store_files(artifact)
        row = {
            "format": artifact.format,
            "sha256": sha256,
            "size": sum(e.size for e in entries),
            "entrypoint": artifact.entrypoint,
            "files": [e.to_dict() for e in entries],
            "signature": artifact.signature.to_dict(),
            "metrics": clean_metrics,
            "tags": clean_tags,
            "description": description or "",
            "parent_name": parent_version.name if parent_version else None,
            "parent_version": parent_version.version if parent_version else None,
            "transform": transform,
            "transform_params": dict(transform_params) if transform_params else None,
            "created_by": self.settings.user,
        }
        number = c.write(self.engine, lambda conn: self._insert_version(conn, name, row, alias))
        return self.get(ModelRef(name, version=number))

    def _store_files(self, artifact: Artifact) -> tuple[list[FileEntry], str]:
        """The artifact's files put in the blob store, and its digest: the one file's, or that
        of the manifest of (path, digest) lines sorted by path."""
        entries = []
        for rel in artifact.files:
            digest, size = self.blobs.put_file(artifact.root / rel)
            entries.append(FileEntry(rel, digest, size))
        if len(entries) == 1:
            return entries, entries[0].sha256
        manifest = "".join(f"{e.path}\t{e.sha256}\n" for e in sorted(entries, key=lambda e: e.path))
        return entries, hashlib.sha256(manifest.encode()).hexdigest()

    def _insert_version(self, conn: Connection, name: str, row: dict[str, Any],
                        alias: str | None) -> int:  # fmt: skip
        """Insert ``row`` as the next version number of ``name``, logged, ``alias`` moved to it."""
        now = c.utcnow()
        model_id = self._model_id(conn, name, create=True)
        number = (
            conn.execute(
                sa.update(c.models)
                .where(c.models.c.id == model_id)
                .values(next_version=c.models.c.next_version + 1)
                .returning(c.models.c.next_version)
            ).scalar_one()
            - 1
        )
        version_id = conn.execute(
            sa.insert(c.versions).values(model_id=model_id, version=number, created_at=now, **row)
        ).inserted_primary_key[0]
        self._log(conn, model_id, "register", version=number, detail={"sha256": row["sha256"]})
        if alias is not None:
            self._move_alias(conn, model_id, alias, version_id, number, "alias_set")
        return number

    def set_alias(self, name: str, alias: str, version: int,
                  expected: int | None | object = ANY) -> ModelVersion:  # fmt: skip
        """Point ``alias`` at ``version``; with ``expected`` (a version, or None for "no such
        alias yet"), only if the alias is still there, else Conflict (``StaleAlias``)."""
        validate_alias(alias)
        target = self.get(ModelRef(validate_name(name), version=version))

        def work(conn: Connection) -> None:
            model_id = self._model_id(conn, name)
            self._expect(conn, model_id, name, alias, expected)
            version_id = self._version_id(conn, model_id, name, target.version)
            self._move_alias(conn, model_id, alias, version_id, target.version, "alias_set")

        c.write(self.engine, work)
        return self.get(target.ref)

    def set_tag(self, ref: str | ModelRef, key: str, value: str,
                action: str = "tag_set") -> ModelVersion:  # fmt: skip
        """Set one tag of a version (its artifact stays immutable), e.g. the reference of a file
        attached to it (``registry.attachments``: evaluation sets, reference statistics)."""
        target = self.resolve(ref)
        clean = check_tags({key: value})

        def work(conn: Connection) -> None:
            model_id = self._model_id(conn, target.name)
            version_id = self._version_id(conn, model_id, target.name, target.version)
            where = c.versions.c.id == version_id
            tags = conn.execute(sa.select(c.versions.c.tags).where(where)).scalar_one() or {}
            conn.execute(sa.update(c.versions).where(where).values(tags={**tags, **clean}))
            self._log(conn, model_id, action, version=target.version, detail=clean)

        c.write(self.engine, work)
        return self.get(target.ref)

    def remove_alias(self, name: str, alias: str) -> None:
        validate_alias(alias)

        def work(conn: Connection) -> None:
            model_id = self._model_id(conn, validate_name(name))
            current = self._alias_version(conn, model_id, alias)
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            conn.execute(
                sa.delete(c.aliases).where(
                    (c.aliases.c.model_id == model_id) & (c.aliases.c.alias == alias)
                )
            )
            self._log(conn, model_id, "alias_remove", alias=alias, from_version=current)

        c.write(self.engine, work)

    def rollback(self, name: str, alias: str, expected: int | None | object = ANY) -> ModelVersion:
        """Move ``alias`` back to where it pointed before its last move (``expected``: as in
        ``set_alias``)."""
        validate_alias(alias)

        def work(conn: Connection) -> int:
            model_id = self._model_id(conn, validate_name(name))
            self._expect(conn, model_id, name, alias, expected)
            rows = conn.execute(
                sa.select(c.events.c.action, c.events.c.version)
                .where((c.events.c.model_id == model_id) & (c.events.c.alias == alias))
                .order_by(c.events.c.id)
            ).all()
            positions: list[int | None] = []
            for action, version in rows:
                if action == "rollback":
                    positions.pop()
                elif action in ("alias_set", "alias_remove"):
                    positions.append(version)
            if len(positions) < 2:
                raise Conflict(
                    f"alias {alias!r} of {name!r} has no earlier position to roll back to"
                )
            target = positions[-2]
            if target is None:
                raise Conflict(
                    f"before its last move, alias {alias!r} of {name!r} did not exist; "
                    f"use 'alias remove' to remove it"
                )
            version_id = self._version_id(conn, model_id, name, target, deleted_hint=True)
            self._move_alias(conn, model_id, alias, version_id, target, "rollback")
            return target

        target = c.write(self.engine, work)
        return self.get(ModelRef(name, version=target))

    def delete(self, ref: str | ModelRef) -> ModelVersion:
        parsed = ModelRef.parse(ref)
        if parsed.version is None:
            raise InvalidInput(f"say which version to delete, e.g. {parsed.name}:1")
        doomed = self.get(parsed)
        if doomed.aliases:
            raise Conflict(
                f"{doomed.ref} is still the target of alias(es) {', '.join(doomed.aliases)}; "
                "move or remove them first"
            )

        def work(conn: Connection) -> None:
            model_id = self._model_id(conn, doomed.name)
            version_id = self._version_id(conn, model_id, doomed.name, doomed.version)
            held = (
                conn.execute(
                    sa.select(c.aliases.c.alias).where(c.aliases.c.version_id == version_id)
                )
                .scalars()
                .all()
            )
            if held:
                raise Conflict(f"{doomed.ref} is the target of alias(es) {', '.join(held)}")
            conn.execute(sa.delete(c.versions).where(c.versions.c.id == version_id))
            self._log(conn, model_id, "delete", version=doomed.version)

        c.write(self.engine, work)
        return doomed

    # -- reading -------------------------------------------------------------------------------

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference points at (without its alias list: use ``get`` for that)."""
        return self._fetch(ModelRef.parse(ref), with_aliases=False)

    def get(self, ref: str | ModelRef) -> ModelVersion:
        return self._fetch(ModelRef.parse(ref), with_aliases=True)

    def list_models(self) -> list[ModelSummary]:
        with self.engine.connect() as conn:
            counts = {
                row.model_id: row
                for row in conn.execute(
                    sa.select(
                        c.versions.c.model_id,
                        sa.func.count().label("n"),
                        sa.func.max(c.versions.c.version).label("latest"),
                        sa.func.max(c.versions.c.created_at).label("updated"),
                    ).group_by(c.versions.c.model_id)
                )
            }
            alias_rows = conn.execute(
                sa.select(c.aliases.c.model_id, c.aliases.c.alias, c.versions.c.version).join(
                    c.versions, c.versions.c.id == c.aliases.c.version_id
                )
            ).all()
            model_rows = conn.execute(sa.select(c.models).order_by(c.models.c.name)).all()
        by_model: dict[int, dict[str, int]] = {}
        for model_id, alias, version in alias_rows:
            by_model.setdefault(model_id, {})[alias] = version
        summaries = []
        for m in model_rows:
            stats = counts.get(m.id)
            summaries.append(
                ModelSummary(
                    name=m.name,
                    versions=stats.n if stats else 0,
                    latest=stats.latest if stats else None,
                    aliases=dict(sorted(by_model.get(m.id, {}).items())),
                    updated_at=as_utc(stats.updated if stats else m.created_at),
                )
            )
        return summaries

    def list_versions(self, name: str) -> list[ModelVersion]:
        validate_name(name)
        with self.engine.connect() as conn:
            model_id = self._model_id(conn, name)
            rows = conn.execute(
                sa.select(c.versions)
                .where(c.versions.c.model_id == model_id)
                .order_by(c.versions.c.version)
            ).all()
            aliases = self._aliases_by_version(conn, model_id)
        return [version_from_row(name, row, aliases.get(row.version, ())) for row in rows]

    def history(self, name: str, alias: str | None = None) -> list[Event]:
        validate_name(name)
        if alias is not None:
            validate_alias(alias)
        with self.engine.connect() as conn:
            model_id = self._model_id(conn, name)
            query = sa.select(c.events).where(c.events.c.model_id == model_id)
            if alias is not None:
                query = query.where(c.events.c.alias == alias)
            rows = conn.execute(query.order_by(c.events.c.id)).all()
        return [
            Event(
                at=as_utc(r.at),
                actor=r.actor,
                action=r.action,
                name=name,
                version=r.version,
                alias=r.alias,
                from_version=r.from_version,
                detail=r.detail,
            )
            for r in rows
        ]

    def lineage(self, ref: str | ModelRef) -> list[ModelVersion]:
        """The version, then its parent, grandparent... as far as they still exist."""
        chain = [self.resolve(ref)]
        seen = {chain[0].ref}
        while chain[-1].parent and chain[-1].parent not in seen:
            seen.add(chain[-1].parent)
            try:
                chain.append(self.resolve(chain[-1].parent))
            except NotFound:
                break
        return chain

    # -- files ---------------------------------------------------------------------------------

    def path(self, ref: str | ModelRef | ModelVersion, verify: bool | None = None) -> Path:
        """A local path to the artifact's entry point, every file checked against its sha256."""
        version = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        check = self.settings.verify_on_load if verify is None else verify
        return self.files.local_path(version, check)

    def export(self, ref: str | ModelRef, dest: str | Path, only: str | None = None) -> Path:
        """Copy the artifact out: a single file to ``dest`` (a file or folder), else a folder;
        ``only``: just this file of the artifact (its path in the version), as a single file."""
        version = self.resolve(ref)
        if only is not None:
            entries = tuple(f for f in version.files if f.path == only)
            if not entries:
                raise InvalidInput(f"{version.ref} has no file {only!r}")
            version = dataclasses.replace(version, files=entries)
        return self.files.export(version, Path(dest))

    def verify(self, refs: Iterable[str | ModelRef] | None = None) -> list[Problem]:
        """Re-hash every blob the catalogue references; return what is missing or corrupt."""
        if refs is None:
            versions = [v for m in self.list_models() for v in self.list_versions(m.name)]
        else:
            versions = [self.resolve(r) for r in refs]
        return self.files.verify(versions)

    def gc(self, grace_seconds: float = 600.0, dry_run: bool = False) -> GcReport:
        """Remove blobs no version references, stale partial writes and unused checkouts."""
        from modelport.registry.attachments import referenced as attached

        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.versions.c.files, c.versions.c.sha256, c.versions.c.tags)
            ).all()
        referenced = {f["sha256"] for files, _, _ in rows for f in files}
        referenced |= {digest for _, _, tags in rows for digest in attached(tags)}
        return self.files.sweep(referenced, {sha for _, sha, _ in rows}, grace_seconds, dry_run)

    # -- internals -----------------------------------------------------------------------------

    def _fetch(self, ref: ModelRef, with_aliases: bool) -> ModelVersion:
        v, m = c.versions, c.models
        query = sa.select(v).join(m, m.c.id == v.c.model_id).where(m.c.name == ref.name)
        if ref.alias is not None:
            a = c.aliases
            query = query.join(a, a.c.version_id == v.c.id).where(a.c.alias == ref.alias)
        elif ref.version is not None:
            query = query.where(v.c.version == ref.version)
        else:
            query = query.order_by(v.c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                raise self._not_found(conn, ref)
            aliases = (
                self._aliases_by_version(conn, row.model_id).get(row.version, ())
                if with_aliases
                else ()
            )
        return version_from_row(ref.name, row, aliases)

    def _not_found(self, conn: Connection, ref: ModelRef) -> NotFound:
        model_id = conn.execute(
            sa.select(c.models.c.id).where(c.models.c.name == ref.name)
        ).scalar()
        if model_id is None:
            return self._unknown_model(conn, ref.name)
        if ref.alias is not None:
            names = sorted(
                conn.execute(
                    sa.select(c.aliases.c.alias).where(c.aliases.c.model_id == model_id)
                ).scalars()
            )
            known = f" (aliases: {', '.join(names)})" if names else " (it has no aliases)"
            return NotFound(f"model {ref.name!r} has no alias {ref.alias!r}{known}")
        numbers = sorted(
            conn.execute(
                sa.select(c.versions.c.version).where(c.versions.c.model_id == model_id)
            ).scalars()
        )
        if not numbers:
            return NotFound(f"model {ref.name!r} has no versions")
        return NotFound(
            f"model {ref.name!r} has no version {ref.version} (versions: {number_ranges(numbers)})"
        )

    def _unknown_model(self, conn: Connection, name: str) -> NotFound:
        names = conn.execute(sa.select(c.models.c.name)).scalars().all()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return NotFound(f"model {name!r} not found{hint}")

    def _model_id(self, conn: Connection, name: str, create: bool = False) -> int:
        model_id = conn.execute(sa.select(c.models.c.id).where(c.models.c.name == name)).scalar()
        if model_id is not None:
            return model_id
        if not create:
            raise self._unknown_model(conn, name)
        return conn.execute(
            sa.insert(c.models).values(name=name, next_version=1, created_at=c.utcnow())
        ).inserted_primary_key[0]

    def _version_id(
        self, conn: Connection, model_id: int, name: str, version: int, deleted_hint: bool = False
    ) -> int:
        version_id = conn.execute(
            sa.select(c.versions.c.id).where(
                (c.versions.c.model_id == model_id) & (c.versions.c.version == version)
            )
        ).scalar()
        if version_id is None:
            if deleted_hint:
                raise Conflict(f"cannot move back to {name}:{version}: that version was deleted")
            raise NotFound(f"model {name!r} has no version {version}")
        return version_id

    def _expect(self, conn: Connection, model_id: int, name: str, alias: str,
                expected: int | None | object) -> None:  # fmt: skip
        if expected is ANY:
            return
        current = self._alias_version(conn, model_id, alias)
        if current != expected:
            raise StaleAlias(name, alias, expected, current)

    def _alias_version(self, conn: Connection, model_id: int, alias: str) -> int | None:
        return conn.execute(
            sa.select(c.versions.c.version)
            .join(c.aliases, c.aliases.c.version_id == c.versions.c.id)
            .where((c.aliases.c.model_id == model_id) & (c.aliases.c.alias == alias))
        ).scalar()

    def _aliases_by_version(self, conn: Connection, model_id: int) -> dict[int, tuple[str, ...]]:
        found: dict[int, list[str]] = {}
        for alias, version in conn.execute(
            sa.select(c.aliases.c.alias, c.versions.c.version)
            .join(c.versions, c.versions.c.id == c.aliases.c.version_id)
            .where(c.aliases.c.model_id == model_id)
            .order_by(c.aliases.c.alias)
        ):
            found.setdefault(version, []).append(alias)
        return {k: tuple(v) for k, v in found.items()}

    def _move_alias(
        self, conn: Connection, model_id: int, alias: str, version_id: int, number: int, action: str
    ) -> None:
        current = self._alias_version(conn, model_id, alias)
        if current == number and action == "alias_set":
            return
        now = c.utcnow()
        if current is None:
            conn.execute(
                sa.insert(c.aliases).values(
                    model_id=model_id, alias=alias, version_id=version_id, updated_at=now
                )
            )
        else:
            conn.execute(
                sa.update(c.aliases)
                .where((c.aliases.c.model_id == model_id) & (c.aliases.c.alias == alias))
                .values(version_id=version_id, updated_at=now)
            )
        self._log(conn, model_id, action, alias=alias, version=number, from_version=current)

    def _log(self, conn: Connection, model_id: int, action: str, **fields: Any) -> None:
        """The model's event, and the same action in the audit log (one transaction)."""
        actor = self.settings.user
        conn.execute(
            sa.insert(c.events).values(
                model_id=model_id, at=c.utcnow(), actor=actor, action=action, **fields
            )
        )
        name = conn.execute(sa.select(c.models.c.name).where(c.models.c.id == model_id)).scalar()
        alias, version = fields.get("alias"), fields.get("version")
        target = alias if alias is not None else None if version is None else f"version {version}"
        audit.record(conn, actor, action, name, target, version=version,
                     from_version=fields.get("from_version"))  # fmt: skip


def borrowing(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For a function with a ``registry=None`` keyword: called without one, it runs with a
    registry of its own (``Registry.borrow``), closed when it returns.

    @borrowing
    def register(model, name, *, registry=None): ...   # registry is never None inside
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with Registry.borrow(kwargs.pop("registry", None)) as registry:
            return fn(*args, registry=registry, **kwargs)

    return call
