"""Release signing keys and the TUF root that lists them.

    store = KeyStore(home / "keys")
    key = store.generate()            # first key: root version 1 lists it for every role
    store.rotate()                    # new key; root version 2, signed by the old and the new
    store.signer(key.keyid)           # a securesystemslib signer for one release

Every release signs timestamp, snapshot and targets metadata with the active key; a device that
trusts root version N accepts only keys listed in the newest root it can chain to. Rotating
removes the old key from the root, so anything it signs afterwards is refused (revoked).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelport.errors import Conflict, InvalidInput, NotFound

ROLES = ("root", "timestamp", "snapshot", "targets")
ROOT_LIFETIME = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    keyid: str
    created: str
    status: str  # active | revoked

    def to_dict(self) -> dict[str, str]:
        return {"keyid": self.keyid, "created": self.created, "status": self.status}


class KeyStore:
    """A folder of Ed25519 release keys (PKCS8 PEM, mode 0600) and the signed root history."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root)

    # -- reading -------------------------------------------------------------------------------

    def keys(self) -> list[KeyInfo]:
        return [KeyInfo(**k) for k in self._state().get("keys", [])]

    def active(self) -> KeyInfo:
        for key in self.keys():
            if key.status == "active":
                return key
        raise NotFound(f"no signing key in {self.dir}; make one with: modelport keys generate")

    def find(self, keyid: str) -> KeyInfo:
        hits = [k for k in self.keys() if k.keyid.startswith(keyid)] if keyid else []
        if len(hits) != 1:
            known = ", ".join(k.keyid[:12] for k in self.keys()) or "none"
            raise NotFound(f"no single key matches {keyid!r} (keys: {known})")
        return hits[0]

    def root_versions(self) -> list[Path]:
        files = (self.dir / "root").glob("*.root.json")
        return sorted(files, key=lambda p: int(p.name.split(".")[0]))

    def root_bytes(self, version: int | None = None) -> bytes:
        roots = self.root_versions()
        if not roots:
            raise NotFound(f"no root metadata in {self.dir}; run: modelport keys generate")
        return (
            roots[-1] if version is None else self.dir / "root" / f"{version}.root.json"
        ).read_bytes()

    def signer(self, keyid: str):  # -> CryptoSigner
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner

        pem = (self.dir / "keys" / f"{keyid}.pem").read_bytes()
        return CryptoSigner(load_pem_private_key(pem, password=None))

    # -- writing -------------------------------------------------------------------------------

    def generate(self) -> KeyInfo:
        """The first key and root version 1; refused when the store already has keys."""
        with self._locked() as state:
            if state.get("keys"):
                raise Conflict(f"{self.dir} already has keys; use: modelport keys rotate")
            key = self._new_key(state)
            self._write_root(state, version=1, signers=[key.keyid])
            return key

    def rotate(self) -> KeyInfo:
        """A new active key; the next root lists only it, signed by the old and the new key."""
        with self._locked() as state:
            old = next((k for k in state.get("keys", []) if k["status"] == "active"), None)
            if old is None:
                raise NotFound(f"no active key in {self.dir}; run: modelport keys generate")
            key = self._new_key(state)
            old["status"] = "revoked"
            version = len(self.root_versions()) + 1
            self._write_root(state, version=version, signers=[old["keyid"], key.keyid])
            return key

    def next_release(self) -> int:
        """A number larger than any release signed from this store (the metadata version)."""
        with self._locked() as state:
            state["release"] = int(state.get("release", 0)) + 1
            return state["release"]

    # -- internals -----------------------------------------------------------------------------

    def _new_key(self, state: dict) -> KeyInfo:
        from securesystemslib.signer import CryptoSigner

        signer = CryptoSigner.generate_ed25519()
        keyid = signer.public_key.keyid
        path = self.dir / "keys" / f"{keyid}.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signer.private_bytes)
            f.flush()
            os.fsync(f.fileno())
        info = KeyInfo(keyid, datetime.now(UTC).isoformat(timespec="seconds"), "active")
        state.setdefault("keys", []).append(info.to_dict())
        return info

    def _write_root(self, state: dict, version: int, signers: list[str]) -> None:
        from tuf.api.metadata import Metadata, Role, Root

        active = signers[-1]
        public = self.signer(active).public_key
        root = Root(
            version=version, expires=datetime.now(UTC) + ROOT_LIFETIME, consistent_snapshot=False
        )
        root.keys = {active: public}
        root.roles = {name: Role([active], threshold=1) for name in ROLES}
        meta = Metadata(root)
        for keyid in signers:
            meta.sign(self.signer(keyid), append=True)
        atomic_write(self.dir / "root" / f"{version}.root.json", meta.to_bytes())

    def _state(self) -> dict:
        path = self.dir / "keystore.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @contextmanager
    def _locked(self) -> Iterator[dict]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._state()
            yield state
            atomic_write(self.dir / "keystore.json", json.dumps(state, indent=2).encode())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one (fsync+rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder: so the names in it survive a power cut)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_keyid(value: str) -> str:
    if not value or not all(c in "0123456789abcdef" for c in value.lower()):
        raise InvalidInput(f"key id {value!r} is not hexadecimal")
    return value.lower()
