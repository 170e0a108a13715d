"""The settings a batch job reads, from the same ``MODELPORT_*`` variables as ``Settings``.

    settings = BatchSettings.read(home="/data/modelport")   # the environment, plus overrides
    settings = BatchSettings.of(registry.settings)          # from a ``Settings`` already made
    settings.resolved_database_url, settings.batch_memory_budget

A job needs eight settings. Building ``Settings`` imports pydantic-settings, about 0.3 s, more
than the rest of a job's start-up; so when every ``MODELPORT_*`` variable set is one of those
eight, in a form with one meaning (a path, a URL, a whole number, a size, a plain yes or no),
``read`` takes them as they are. Anything else (another variable, a value ``Settings`` would
have to interpret) is read by ``Settings`` itself, which validates it and reports its errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from modelport.home import blob_folder, catalogue_url
from modelport.sizes import parse_size

_PREFIX = "modelport_"
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class BatchSettings:
    """What batch reads of ``Settings``; small, frozen and picklable (a Dask worker gets it)."""

    home: Path
    resolved_database_url: str
    resolved_blob_dir: Path
    verify_on_load: bool = True
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    batch_memory_budget: int = 1 << 30

    @classmethod
    def of(cls, settings: Any) -> BatchSettings:
        """The batch part of a ``Settings`` (or of another ``BatchSettings``)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    @classmethod
    def read(cls, **overrides: Any) -> BatchSettings:
        """From the environment, with ``overrides`` on top (as ``Settings(**overrides)``)."""
        plain = _plain_environment()
        if plain is None or not set(overrides) <= {"home"}:
            from modelport.settings import Settings

            return cls.of(Settings(**overrides))
        values = {**plain, **overrides}
        home = Path(values.pop("home", None) or Path.home() / ".modelport")  # Settings' default
        home = home.expanduser().absolute()
        blob_dir = values.pop("blob_dir", None)
        blob_dir = None if blob_dir is None else Path(blob_dir).expanduser().absolute()
        return cls(home, catalogue_url(home, values.pop("database_url", None)),
                   blob_folder(home, blob_dir), **values)  # fmt: skip


def _plain_environment() -> dict[str, Any] | None:
    """The ``MODELPORT_*`` variables as batch settings, or None when ``Settings`` must read
    them (a variable batch does not read, or a value with more than one possible meaning)."""
    values: dict[str, Any] = {}
    for key, raw in os.environ.items():
        name = key.lower()
        if not name.startswith(_PREFIX):
            continue
        name = name.removeprefix(_PREFIX)
        value = _plain(name, raw)
        if value is None or name in values:  # not plain, or set twice in different cases
            return None
        values[name] = value
    return values


def _plain(name: str, raw: str) -> Any:
    if name in ("home", "blob_dir"):
        return raw if raw and raw == raw.strip() else None
    if name in ("database_url", "graph_optimization"):
        return raw
    if name in ("intra_op_threads", "inter_op_threads"):
        return int(raw) if raw.isascii() and raw.isdigit() else None
    if name == "verify_on_load":
        return True if raw in _YES else False if raw in _NO else None
    if name == "batch_memory_budget":
        try:
            return parse_size(raw)
        except Exception:  # Settings reports it as the validation error it is
            return None
    return None
