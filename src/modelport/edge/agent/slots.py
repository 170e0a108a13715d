"""Two model slots (A/B) and the pointer that names the active one.

    slots = Slots(data_dir)
    slots.active()                  # Slot A or B, or None before the first install
    staging = slots.inactive()      # downloads go here, never into the active slot
    staging.mark_verified(release_id, release.number, hashes)
    slots.switch(staging)           # pointer file written with fsync + rename: atomic

A slot is usable only with its ``state.json`` (written after every file was verified); a crash
at any moment leaves the pointer on a slot that was complete and verified when it was set.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.edge.keys import atomic_write, fsync_path
from modelport.edge.trust import hash_file

NAMES = ("a", "b")


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    dir: Path

    @property
    def metadata(self) -> Path:
        return self.dir / "metadata"

    @property
    def targets(self) -> Path:
        return self.dir / "targets"

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def prepare(self, release_id: int) -> None:
        """Make the slot ready to receive ``release_id``: keep partial files of the same release
        (a resumed download), wipe anything else. The verified mark goes first."""
        marker = self.dir / "wanted.json"
        state = self.dir / "state.json"
        if state.exists():
            state.unlink()
            fsync_path(self.dir)
        try:
            wanted = json.loads(marker.read_text()).get("release_id")
        except (OSError, ValueError):
            wanted = None
        if wanted != release_id:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.metadata.mkdir(parents=True)
            self.targets.mkdir(parents=True)
            atomic_write(marker, json.dumps({"release_id": release_id}).encode())

    def mark_verified(self, release_id: int, number: int, manifest: dict, files: dict) -> None:
        for path in self.dir.rglob("*"):
            if path.is_file():
                fsync_path(path)
        for path in [*(p for p in self.dir.rglob("*") if p.is_dir()), self.dir]:
            fsync_path(path)
        body = {"release_id": release_id, "number": number, "manifest": manifest, "files": files}
        atomic_write(self.dir / "state.json", json.dumps(body).encode())

    def check(self) -> str | None:
        """None when every file matches the hashes recorded at verification, else the reason."""
        state = self.state()
        if state is None:
            return f"slot {self.name} has no verified release"
        for path, (digest, size) in state["files"].items():
            try:
                if hash_file(self.targets / path) != (digest, size):
                    return f"slot {self.name}: {path} changed since it was verified"
            except Exception:
                return f"slot {self.name}: {path} is missing"
        return None


class Slots:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.all = {n: Slot(n, self.root / "slots" / n) for n in NAMES}
        self.pointer = self.root / "current.json"

    def active(self) -> Slot | None:
        try:
            name = json.loads(self.pointer.read_text())["slot"]
        except (OSError, ValueError, KeyError):
            return None
        return self.all.get(name)

    def inactive(self) -> Slot:
        current = self.active()
        return self.all["b" if current is not None and current.name == "a" else "a"]

    def switch(self, slot: Slot) -> None:
        state = slot.state()
        assert state is not None, "only a verified slot can become active"
        body = {"slot": slot.name, "release_id": state["release_id"]}
        atomic_write(self.pointer, json.dumps(body).encode())
