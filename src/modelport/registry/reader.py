"""Reading a SQLite catalogue without SQLAlchemy: resolve a reference, find its files.

    with open_reader(settings) as catalogue:     # settings: a Settings or a BatchSettings
        version = catalogue.resolve("digits@production")
        model_path = catalogue.path(version)

For a process that only reads (a batch job), importing SQLAlchemy and opening an engine cost
more than the rest of its start-up. ``CatalogReader`` reads the same tables with ``sqlite3``,
read-only, and answers like ``Registry.resolve`` and ``Registry.path``. It only reads a catalogue
of the layout it knows: for another URL (PostgreSQL), a missing file or another schema version,
``open_reader`` gives a ``Registry``. A reference it cannot find is asked of a ``Registry`` too,
so what exists and the errors for what does not come from one place.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from modelport.registry.blobs import BlobStore
from modelport.registry.files import ArtifactFiles
from modelport.registry.records import ModelVersion, version_from_row
from modelport.uri import ModelRef

if TYPE_CHECKING:
    from modelport.registry.registry import Registry

# the catalogue layout this reader knows (catalog.SCHEMA_VERSION when it was written; a test
# keeps the two equal, so a new layout is read by the Registry until this reader learns it)
LAYOUT = 5  # 5 only added an index (versions by parent): rows read as in 4
_JSON = ("files", "signature", "metrics", "tags", "transform_params")
_SELECT = "SELECT v.* FROM versions v JOIN models m ON m.id = v.model_id"


def open_reader(settings: Any) -> CatalogReader | Registry:
    """A ``CatalogReader`` where it can read the catalogue, else a ``Registry``."""
    return CatalogReader.open(settings) or _registry(settings)


class CatalogReader:
    """Read-only ``resolve`` and ``path`` over a SQLite catalogue of the current layout."""

    def __init__(self, settings: Any, connection: sqlite3.Connection) -> None:
        self.settings = settings
        self._db = connection
        self.files = ArtifactFiles(BlobStore(settings.resolved_blob_dir),
                                   settings.home / "checkouts")  # fmt: skip

    @classmethod
    def open(cls, settings: Any) -> CatalogReader | None:
        """None when the catalogue is not a SQLite file of the layout this reader knows."""
        url = settings.resolved_database_url
        path = Path(url.removeprefix("sqlite:///"))
        if not url.startswith("sqlite:///") or "?" in url or not path.is_file():
            return None
        try:
            db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=60,
                                 check_same_thread=False)  # fmt: skip
        except sqlite3.Error:
            return None
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error:
            row = None
        if row is None or row[0] != str(LAYOUT):
            db.close()
            return None
        db.row_factory = sqlite3.Row
        return cls(settings, db)

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """As ``Registry.resolve``: the version a reference points at (no alias list)."""
        ref = ModelRef.parse(ref)
        if ref.alias is not None:
            query = (f"{_SELECT} JOIN aliases a ON a.version_id = v.id "
                     "WHERE m.name = ? AND a.alias = ?")  # fmt: skip
            row = self._db.execute(query, (ref.name, ref.alias)).fetchone()
        elif ref.version is not None:
            query = f"{_SELECT} WHERE m.name = ? AND v.version = ?"
            row = self._db.execute(query, (ref.name, ref.version)).fetchone()
        else:
            query = f"{_SELECT} WHERE m.name = ? ORDER BY v.version DESC LIMIT 1"
            row = self._db.execute(query, (ref.name,)).fetchone()
        if row is None:  # the Registry says why (unknown name, alias or version), or finds it
            with _registry(self.settings) as registry:
                return registry.resolve(ref)
        values = dict(row)
        for key in _JSON:
            values[key] = json.loads(values[key]) if values[key] is not None else None
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        return version_from_row(ref.name, SimpleNamespace(**values), ())

    def path(self, ref: str | ModelRef | ModelVersion, verify: bool | None = None) -> Path:
        """As ``Registry.path``: the artifact's entry point, its files checked."""
        version = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        check = self.settings.verify_on_load if verify is None else verify
        return self.files.local_path(version, check)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CatalogReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _registry(settings: Any) -> Registry:
    from modelport.registry.registry import Registry
    from modelport.settings import Settings

    return Registry(Settings(home=settings.home, database_url=settings.resolved_database_url,
                             blob_dir=settings.resolved_blob_dir,
                             verify_on_load=settings.verify_on_load))  # fmt: skip
