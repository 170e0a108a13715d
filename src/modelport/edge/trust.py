"""TUF verification of one release: freshness, consistency and per-file hashes.

    verifier = Verifier(trust_dir, bootstrap=root_bytes)   # root bytes only on first use
    release = verifier.refresh(metadata_dir)                # signatures, versions, expiry
    info = verifier.target("model/model.onnx")              # length and sha256, signed
    verifier.check_file(path, info)

python-tuf does the checks: a root chain from the trusted root (keys rotated out are refused),
timestamp/snapshot/targets versions never lower than the ones already trusted (rollback), no
expired metadata (freeze), snapshot naming the exact targets version (no mixed releases).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from modelport.errors import CorruptArtifact, InvalidInput, ModelportError

PREFIX = "release:///"


class Rejected(ModelportError):
    """A release that fails verification; ``reason`` is a short word for reports."""

    status = 422

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def _fetcher(metadata_dir: Path):
    from tuf.api.exceptions import DownloadHTTPError
    from tuf.ngclient import FetcherInterface

    class DirectoryFetcher(FetcherInterface):
        """Reads ``release:///name`` from a folder: the metadata a device already downloaded."""

        def _fetch(self, url: str) -> Iterator[bytes]:
            name = unquote(url.removeprefix(PREFIX))
            path = metadata_dir / name
            if "/" in name or not path.is_file():
                raise DownloadHTTPError(f"{name} not in the release", 404)
            return iter([path.read_bytes()])

    return DirectoryFetcher()


class Verifier:
    """A device's trusted metadata (``trust_dir``), advanced by each verified release."""

    def __init__(self, trust_dir: Path, bootstrap: bytes | None = None) -> None:
        self.trust_dir = Path(trust_dir)
        self.trust_dir.mkdir(parents=True, exist_ok=True)
        history = sorted(
            (self.trust_dir / "root_history").glob("*.root.json"),
            key=lambda p: int(p.name.split(".")[0]),
        )
        # the newest root already trusted wins over the provisioned one (a crash may have left
        # the root.json link missing; the history is written first)
        self.bootstrap = history[-1].read_bytes() if history else bootstrap
        if self.bootstrap is None:
            raise InvalidInput(f"no trusted root in {self.trust_dir}: give the device one")
        self._updater = None

    def refresh(self, metadata_dir: Path) -> int:
        """Verify the release metadata in ``metadata_dir``; returns its targets version."""
        from tuf.api import exceptions as tuf_errors
        from tuf.ngclient import Updater

        try:
            self._updater = Updater(
                str(self.trust_dir),
                PREFIX,
                fetcher=_fetcher(Path(metadata_dir)),
                bootstrap=self.bootstrap,
            )
            self._updater.refresh()
            return self.version
        except tuf_errors.ExpiredMetadataError as exc:
            raise Rejected("stale", str(exc)) from None
        except tuf_errors.BadVersionNumberError as exc:  # "Expected ...": pieces disagree
            reason = "mixed-release" if str(exc).startswith("Expected") else "rollback"
            raise Rejected(reason, str(exc)) from None
        except tuf_errors.UnsignedMetadataError as exc:
            raise Rejected("untrusted-key", str(exc)) from None
        except tuf_errors.LengthOrHashMismatchError as exc:
            raise Rejected("mixed-release", str(exc)) from None
        except tuf_errors.RepositoryError as exc:
            raise Rejected("bad-metadata", str(exc)) from None
        except tuf_errors.DownloadError as exc:
            raise Rejected("incomplete", str(exc)) from None
        except ValueError as exc:  # unparsable metadata
            raise Rejected("bad-metadata", str(exc)) from None

    @property
    def version(self) -> int:
        """The targets version (the release number) of the last refresh."""
        if self._updater is None:
            raise InvalidInput("refresh the release metadata first")
        return self._updater._trusted_set.targets.version  # no public accessor in ngclient

    def target(self, path: str):  # -> tuf TargetFile
        if self._updater is None:
            raise InvalidInput("refresh the release metadata before asking for files")
        info = self._updater.get_targetinfo(path)
        if info is None:
            raise Rejected("unsigned-file", f"{path} is not listed in the signed targets")
        return info

    @staticmethod
    def check_file(path: Path, info) -> None:  # info: tuf TargetFile
        digest, size = hash_file(path)
        if size != info.length or digest != info.hashes.get("sha256"):
            raise Rejected("tampered", f"{info.path} does not match its signed length and sha256")


def hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise CorruptArtifact(f"{path} is missing") from None
    return h.hexdigest(), size
