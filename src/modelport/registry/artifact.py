"""An artifact on disk, ready to be stored: its files, format, entry point and signature."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelport.signature import Signature


@dataclass(frozen=True, slots=True)
class Artifact:
    format: str
    root: Path
    files: tuple[str, ...]
    entrypoint: str
    signature: Signature

    @classmethod
    def single_file(cls, path: Path, format: str, signature: Signature) -> Artifact:
        path = Path(path)
        return cls(format, path.parent, (path.name,), path.name, signature)
