"""Settings, read from ``MODELPORT_*`` environment variables once, then passed down."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelport.home import blob_folder, catalogue_url
from modelport.sizes import parse_size  # noqa: F401  (where it was first defined)


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

    model_config = SettingsConfigDict(env_prefix="MODELPORT_", extra="ignore",
                                      env_nested_delimiter="__")  # fmt: skip

    home: Path = Field(default_factory=lambda: Path.home() / ".modelport")
    database_url: str | None = None
    blob_dir: Path | None = None
    user: str = Field(default_factory=_default_user)
    verify_on_load: bool = True
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    # batch: chunks and model batches are sized from a row's bytes and this budget
    batch_memory_budget: int = 1 << 30
    # serving: API keys (``ROLE:KEY`` or ``NAME=ROLE:KEY``, comma-separated) added to ``--api-key``
    api_keys: str = ""
    # serving limits (0: off): requests per second and burst per API key (or client address),
    # requests in flight per key, and in flight on the whole server (503 above it)
    rate_limit: float = 0.0
    rate_burst: int = 0
    concurrency_limit: int = 0
    max_inflight: int = 0
    # serving: the payload log (a folder, an fsspec URL or an http(s) CloudEvents URL; "" off)
    payload_log: str = ""
    payload_sample: float = Field(default=1.0, ge=0.0, le=1.0)
    # the CLI prints a traceback for unexpected errors
    debug: bool = False
    # defaults for the options of ``modelport serve`` and ``modelport batch``, one variable per
    # option: MODELPORT_SERVE__MAX_BATCH_SIZE=32, MODELPORT_BATCH__CHUNK_ROWS=8192 (a flag on the
    # command line still wins; options given more than once take a comma-separated list)
    serve: dict[str, str] = Field(default_factory=dict)
    batch: dict[str, str] = Field(default_factory=dict)

    @field_validator("debug", mode="before")
    @classmethod
    def _flag(cls, value: object) -> bool:  # any non-empty value but 0/false/no turns it on
        return str(value).strip().lower() not in ("", "0", "false", "no", "off")

    @field_validator("batch_memory_budget", mode="before")
    @classmethod
    def _size(cls, value: int | str) -> int:
        try:
            return parse_size(value)
        except Exception as exc:  # pydantic reports ValueError as a validation error
            raise ValueError(str(exc)) from None

    @field_validator("home", "blob_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @property
    def resolved_database_url(self) -> str:
        return catalogue_url(self.home, self.database_url)

    @property
    def resolved_blob_dir(self) -> Path:
        return blob_folder(self.home, self.blob_dir)
