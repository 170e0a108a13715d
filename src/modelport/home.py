"""What a modelport home folder holds unless told otherwise: the catalogue and the blob folder.

catalogue_url(Path("/data/mp"), None) == "sqlite:////data/mp/registry.db"
blob_folder(Path("/data/mp"), None) == Path("/data/mp/blobs")
"""

from __future__ import annotations

from pathlib import Path


def catalogue_url(home: Path, database_url: str | None) -> str:
    return database_url or f"sqlite:///{home / 'registry.db'}"


def blob_folder(home: Path, blob_dir: Path | None) -> Path:
    return blob_dir or home / "blobs"
