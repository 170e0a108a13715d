"""Model-repository folders: a Triton / TF Serving / OVMS tree served without a catalogue.

    repo = FolderRepository("models", settle=2.0)    # models/<name>/<version>/model.onnx
    await serve(repo, ServeConfig(version_policy="latest:2"), ServerOptions())
    repo = FolderRepository("/mnt/models", name="digits", single=True)   # KServe's model folder

The folder stands where the registry stands: it answers the few read calls serving makes
(``list_models``, ``list_versions``, ``get``, ``resolve``, ``path``, ``settings``), so the model
set, its version policies, batching, metrics and the OpenAI routes work on it unchanged, and every
poll of the model set is a fresh scan of the tree.

A version folder is a positive integer holding exactly one model: ``*.onnx``, ``*.xml`` with its
``.bin`` (OpenVINO IR), ``*.tflite`` or ``*.gguf``. It is taken once complete: no file in it ends
in ``.tmp``, ``.part``, ``.partial`` or ``.download``, and its listing (names, sizes, modification
times) has not changed for ``settle`` seconds (at start-up, files untouched that long are taken at
once). A folder with no model or two, a name that is not a
valid model name and a version that is not a positive integer are logged once and skipped; the
other models and versions serve on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput, ModelportError, NotFound
from modelport.registry.records import FileEntry, ModelSummary, ModelVersion
from modelport.uri import ModelRef, parse_version, validate_name

log = logging.getLogger("modelport.serving")

FORMATS = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite", ".gguf": "gguf"}
PARTIAL = (".tmp", ".part", ".partial", ".download")
_TASKS = {"gguf": {"task": "text-generation"}}  # how the OpenAI routes recognise a model


@dataclass(frozen=True, slots=True)
class _Seen:
    listing: tuple[tuple[str, int, int], ...]  # (relative path, size, mtime_ns)
    since: float  # wall-clock time the listing was last seen changing


class FolderRepository:
    """The read side of a registry, over a folder of ``<name>/<version>/<model file>``;
    ``single=True`` reads one model folder (``<version>/<file>``, or the file itself as
    version 1) served under ``name``."""

    folder = True  # no catalogue: no rollouts, no aliases

    def __init__(
        self, root: str | Path, settle: float = 2.0, name: str | None = None,
        single: bool = False, settings: Any = None,
    ) -> None:  # fmt: skip
        self.root = Path(root)
        if not self.root.is_dir():
            raise InvalidInput(f"model repository {self.root} is not a folder")
        self.settle = settle
        self.single = single
        self.name = validate_name(name or self.root.resolve().name) if single else None
        if settings is None:
            from modelport.settings import Settings

            settings = Settings()
        self.settings = settings
        self.rollouts = _NoRollouts()
        self._seen: dict[Path, _Seen] = {}
        self._reported: set[tuple[Path, str]] = set()
        self._models: dict[str, dict[int, ModelVersion]] = {}
        self._lock = threading.Lock()
        self._first = True

    # -- the registry's read calls -------------------------------------------------------------

    def list_models(self) -> list[ModelSummary]:
        """Scan the tree: every model with at least one complete version."""
        models = self.scan()
        return [
            ModelSummary(name, len(found), max(found), {}, _updated(found))
            for name, found in sorted(models.items())
        ]

    def list_versions(self, name: str) -> list[ModelVersion]:
        found = self._models.get(validate_name(name))
        if not found:
            raise NotFound(f"model {name!r} is not in the model repository {self.root}")
        return [found[v] for v in sorted(found)]

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        ref = ModelRef.parse(ref)
        if ref.alias is not None:
            raise NotFound(f"model {ref.name!r} has no alias {ref.alias!r}: folders carry none")
        found = self._models.get(ref.name) or self.scan().get(ref.name)
        if not found:
            raise NotFound(f"model {ref.name!r} is not in the model repository {self.root}")
        number = ref.version or max(found)
        if number not in found:
            raise NotFound(f"model {ref.name!r} has no complete version {number} in {self.root}")
        return found[number]

    get = resolve

    def path(self, ref: str | ModelRef | ModelVersion, verify: bool | None = None) -> Path:
        version = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        return Path(version.description) / version.entrypoint

    def close(self) -> None:
        pass

    # -- scanning ------------------------------------------------------------------------------

    def scan(self) -> dict[str, dict[int, ModelVersion]]:
        """Every complete version by model name; remembers listings to judge completeness."""
        with self._lock:
            now = time.time()
            models: dict[str, dict[int, ModelVersion]] = {}
            seen: dict[Path, _Seen] = {}
            for name, folder in self._model_folders():
                for number, where in self._version_folders(folder):
                    record = self._version(name, number, where, now, seen)
                    if record is not None:
                        models.setdefault(name, {})[number] = record
            self._seen = seen
            self._models = models
            self._first = False
            return models

    def _model_folders(self) -> list[tuple[str, Path]]:
        if self.single:
            return [(self.name, self.root)]
        folders = []
        for entry in sorted(self.root.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            try:
                folders.append((validate_name(entry.name), entry))
            except ModelportError as exc:
                self._report(entry, f"skipped: {exc}")
        return folders

    def _version_folders(self, folder: Path) -> list[tuple[int, Path]]:
        if self.single and any(p.suffix in FORMATS for p in folder.iterdir() if p.is_file()):
            return [(1, folder)]  # the model file itself, as KServe's storage initializer leaves it
        versions = []
        for entry in sorted(folder.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                continue  # config.pbtxt, labels and hidden folders beside the versions
            try:
                versions.append((parse_version(entry.name), entry))
            except ModelportError:
                self._report(entry, "skipped: a version folder is named by a positive integer")
        return versions

    def _version(
        self, name: str, number: int, where: Path, now: float, seen: dict[Path, _Seen]
    ) -> ModelVersion | None:
        """The record of one version folder, or None while incomplete or when it is unusable."""
        try:
            listing = _listing(where)
        except OSError:  # removed while we looked: the next scan decides
            return None
        before = self._seen.get(where)
        if before is None or before.listing != listing:
            since = now
            if self._first:  # at start-up, files untouched for a while count as settled
                since = min(now, max((m / 1e9 for _, _, m in listing), default=now))
            before = _Seen(listing, since)
        seen[where] = before
        if any(path.endswith(PARTIAL) for path, _, _ in listing):
            return None
        if now - before.since < self.settle:
            return None  # still changing: taken once it has settled
        models = [p for p, _, _ in listing if Path(p).suffix in FORMATS and "/" not in p]
        if len(models) != 1:
            what = "no model file" if not models else f"{len(models)} model files ({models})"
            kinds = ", ".join(f"*{suffix}" for suffix in FORMATS)
            self._report(where, f"skipped: {what}; a version folder holds exactly one of {kinds}")
            return None
        entry = models[0]
        format = FORMATS[Path(entry).suffix]
        if format == "openvino" and not (where / entry).with_suffix(".bin").is_file():
            self._report(where, f"skipped: {entry} has no {Path(entry).stem}.bin beside it")
            return None
        files = tuple(FileEntry(path, "", size) for path, size, _ in listing)
        created = datetime.fromtimestamp(max(m for _, _, m in listing) / 1e9, UTC)
        return ModelVersion(
            name, number, format, "", sum(f.size for f in files), entry, files,
            None, {}, dict(_TASKS.get(format, {})), str(where), created, "folder",
        )  # type: ignore[arg-type]  # fmt: skip  # the runtime reads the signature from the model

    def _report(self, where: Path, message: str) -> None:
        if (where, message) not in self._reported:
            self._reported.add((where, message))
            log.warning("model repository %s: %s", where, message)


def _updated(found: dict[int, ModelVersion]) -> datetime:
    return max(v.created_at for v in found.values())


def _listing(folder: Path) -> tuple[tuple[str, int, int], ...]:
    rows = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            rows.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(rows)


class _NoRollouts:
    """A folder has no catalogue to keep rollouts in: nothing is active, nothing can start."""

    def list(self, name: str | None = None, active_only: bool = False) -> list:
        return []

    def __getattr__(self, attr: str) -> Any:
        raise InvalidInput("rollouts need a catalogue; a model repository folder has none")


def open_folder(
    repository: str | None, model_dir: str | None, name: str | None, settle: float
) -> FolderRepository | None:
    """What ``--model-repository`` / ``--model-dir`` ask for; None: serve the catalogue."""
    if repository and model_dir:
        raise InvalidInput("give --model-repository or --model-dir, not both")
    if name and not model_dir:
        raise InvalidInput("--model-name names the model of --model-dir")
    if repository:
        return FolderRepository(repository, settle)
    if model_dir:
        return FolderRepository(model_dir, settle, name=name, single=True)
    return None
