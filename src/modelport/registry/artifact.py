"""An artifact on disk, ready to be stored: its files, format, entry point and signature."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelport.signature import Signature


@dataclass(frozen=True, slots=True)
class Artifact:
    format: str
    root: Path
    files: tuple[str, ...]
    entrypoint: str
    signature: Signature
    # what the importer read from the files (a language model's task, architecture, ...);
    # stored as tags, which the caller's own tags override
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def single_file(cls, path: Path, format: str, signature: Signature) -> Artifact:
        path = Path(path)
        return cls(format, path.parent, (path.name,), path.name, signature)
