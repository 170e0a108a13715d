"""Content-addressed files: ``<root>/sha256/ab/cdef...``, written atomically, stored once.

(``shutil`` and ``tempfile`` are imported by the methods that write: a batch job reads its model
through this module, and the two cost it 6 ms of start-up CPU.)
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from modelport.errors import CorruptArtifact, NotFound

CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "sha256"
        self.tmp = self.root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_file(self, source: Path) -> tuple[str, int]:
        """Store a copy of ``source``; return its (sha256, size). Identical content is kept once."""
        digest, size = sha256_file(source)
        target = self.path(digest)
        if target.is_file() and target.stat().st_size == size and sha256_file(target)[0] == digest:
            os.utime(target)  # a fresh mtime keeps a concurrent gc's grace period away from it
            return digest, size
        import tempfile

        # absent, or present but damaged: (re)write it from the good copy
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix=f"{digest[:12]}-", suffix=".part")
        tmp = Path(tmp_name)
        try:
            check = hashlib.sha256()
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(CHUNK):
                    check.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if check.hexdigest() != digest:
                raise CorruptArtifact(f"{source} changed while it was being stored")
            os.chmod(tmp, 0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return digest, size

    def check(self, digest: str) -> str | None:
        """None when the blob is intact, else a sentence saying what is wrong."""
        path = self.path(digest)
        if not path.is_file():
            return f"blob {digest[:12]} is missing ({path})"
        actual, _ = sha256_file(path)
        if actual != digest:
            return f"blob {digest[:12]} is corrupt: its content hashes to {actual[:12]} ({path})"
        return None

    def open_verified(self, digest: str) -> Path:
        problem = self.check(digest)
        if problem is None:
            return self.path(digest)
        if not self.path(digest).is_file():
            raise NotFound(problem)
        raise CorruptArtifact(problem)

    def digests(self) -> Iterator[str]:
        for folder in sorted(self.objects.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for item in sorted(folder.iterdir()):
                    yield folder.name + item.name

    def remove(self, digest: str) -> int:
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def age(self, digest: str) -> float:
        return time.time() - self.path(digest).stat().st_mtime

    def stale_tmp_files(self, grace_seconds: float) -> Iterator[Path]:
        now = time.time()
        for item in self.tmp.iterdir():
            try:
                if now - item.stat().st_mtime >= grace_seconds:
                    yield item
            except FileNotFoundError:
                continue

    def checkout(self, key: str, files: list[tuple[str, str]], dest_root: Path) -> Path:
        """Lay out ``files`` ([(path, digest)]) under ``dest_root/key``, linked or copied."""
        folder = dest_root / key
        if folder.is_dir() and all((folder / rel).is_file() for rel, _ in files):
            return folder
        import shutil
        import tempfile

        dest_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest_root, prefix=f".{key[:12]}-"))
        try:
            for rel, digest in files:
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                source = self.path(digest)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copyfile(source, target)
            try:
                os.rename(staging, folder)
            except OSError:  # another process laid it out first, or a version with the same
                if not folder.is_dir():  # bytes under other file names did: add the missing
                    raise
                for rel, _ in files:
                    if not (folder / rel).is_file():
                        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                        os.replace(staging / rel, folder / rel)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder
