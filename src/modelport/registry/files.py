"""Artifacts on disk: verified checkouts for runtimes, exports, integrity checks and sweeping.

(``shutil`` is imported by the methods that copy or remove: see ``blobs``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from modelport.errors import Conflict, CorruptArtifact, InvalidInput
from modelport.registry.blobs import BlobStore, sha256_file
from modelport.registry.records import GcReport, ModelVersion, Problem

_STAMPS = ".verified"  # in the checkouts folder: one stamp per file hashed and found intact


def _stamp(path: Path) -> list[int]:
    """What changes whenever a file's content is written: device, inode, size, mtime and ctime
    (setting the mtime back, or linking the file anew, changes the ctime)."""
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class ArtifactFiles:
    def __init__(self, blobs: BlobStore, checkouts: Path) -> None:
        self.blobs = blobs
        self.checkouts = checkouts

    def local_path(self, version: ModelVersion, verify: bool) -> Path:
        """The checked-out entry point. With ``verify``, every file is hashed against its sha256,
        unless it was hashed before and has not been written since (its stamp is unchanged):
        loading a multi-GB model again costs a ``stat``, not a read of every byte."""
        folder = self.blobs.checkout(
            version.sha256, [(f.path, f.sha256) for f in version.files], self.checkouts
        )
        if verify:
            for entry in version.files:
                local = folder / entry.path
                if not local.is_file():
                    raise CorruptArtifact(
                        f"{version.ref}: file {entry.path} is missing from {folder}"
                    )
                if self._stamped(local, entry.sha256):
                    continue
                actual, _ = sha256_file(local)
                if actual != entry.sha256:
                    raise CorruptArtifact(
                        f"{version.ref}: {entry.path} is corrupt (sha256 {actual[:12]}, "
                        f"expected {entry.sha256[:12]}); run 'modelport verify'"
                    )
                self._stamp_intact(local, entry.sha256)
        return folder / version.entrypoint

    def _stamped(self, local: Path, digest: str) -> bool:
        try:
            return json.loads((self.checkouts / _STAMPS / digest).read_text()) == _stamp(local)
        except (OSError, ValueError):
            return False

    def _stamp_intact(self, local: Path, digest: str) -> None:
        folder = self.checkouts / _STAMPS
        tmp = folder / f".{digest}.{os.getpid()}.tmp"
        try:
            folder.mkdir(exist_ok=True)
            tmp.write_text(json.dumps(_stamp(local)))
            os.replace(tmp, folder / digest)
        except OSError:  # a read-only checkouts folder: files are hashed on every load
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def export(self, version: ModelVersion, dest: Path) -> Path:
        import shutil

        sources = [(f, self.blobs.open_verified(f.sha256)) for f in version.files]
        if len(sources) == 1 and not dest.is_dir():
            targets = [(sources[0][1], dest)]
        else:
            targets = [(src, dest / entry.path) for entry, src in sources]
        for _, target in targets:
            if target.exists():
                raise Conflict(f"{target} already exists; not overwriting it")
        for src, target in targets:
            partial = target.with_name(f".{target.name}.part")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, partial)
                partial.chmod(0o644)
                partial.replace(target)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
                raise InvalidInput(f"cannot write {target}: {exc.strerror or exc}") from None
        return targets[0][1] if len(targets) == 1 else dest

    def verify(self, versions: Iterable[ModelVersion]) -> list[Problem]:
        checked: dict[str, str | None] = {}
        problems = []
        for version in versions:
            for entry in version.files:
                if entry.sha256 not in checked:
                    checked[entry.sha256] = self.blobs.check(entry.sha256)
                problem = checked[entry.sha256]
                if problem is not None:
                    problems.append(Problem(version.ref, entry.path, entry.sha256, problem))
        return problems

    def sweep(
        self, referenced: set[str], live_checkouts: set[str], grace_seconds: float, dry_run: bool
    ) -> GcReport:
        import shutil

        removed = freed = kept = 0
        for digest in list(self.blobs.digests()):
            if digest in referenced:
                kept += 1
                continue
            try:
                if self.blobs.age(digest) < grace_seconds:
                    kept += 1
                    continue
            except FileNotFoundError:
                continue
            removed += 1
            freed += (
                self.blobs.path(digest).stat().st_size if dry_run else self.blobs.remove(digest)
            )
            if not dry_run:
                (self.checkouts / _STAMPS / digest).unlink(missing_ok=True)
        tmp = list(self.blobs.stale_tmp_files(grace_seconds))
        checkouts = [
            p
            for p in (self.checkouts.iterdir() if self.checkouts.is_dir() else [])
            if p.name not in live_checkouts
            and p.name != _STAMPS
            and time.time() - p.stat().st_mtime >= grace_seconds
        ]
        if not dry_run:
            for item in tmp:
                if item.is_dir():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)
            for folder in checkouts:
                shutil.rmtree(folder, ignore_errors=True)
        return GcReport(removed, freed, len(tmp), len(checkouts), kept)
