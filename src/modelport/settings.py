"""Settings, read from ``MODELPORT_*`` environment variables once, then passed down."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return f"uid-{os.getuid()}"


class Settings(BaseSettings):
    """Where the registry lives and how models run.

    ``home``: the SQLite catalogue, blobs and checkouts (default ``~/.modelport``).
    ``database_url``: a SQLAlchemy URL for the catalogue; default ``sqlite:///<home>/registry.db``.
    Several hosts can share one catalogue with ``postgresql://...`` and a shared ``blob_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="MODELPORT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".modelport")
    database_url: str | None = None
    blob_dir: Path | None = None
    user: str = Field(default_factory=_default_user)
    verify_on_load: bool = True
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "all"

    @field_validator("home", "blob_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'registry.db'}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.home / "blobs"
