"""The on-device agent: poll, pull into the inactive slot, verify, gate, switch, report.

    agent = Agent(AgentConfig(server="http://fleet:8470", device_id="cam-1", data_dir=path,
                              hardware="arm", enroll_token=token))
    agent.boot()        # serve the active slot again after a restart (re-hashed first)
    agent.step()        # one poll; installs the desired release when there is a new one

Stages of an update, in order: poll, metadata, refresh, download, verify, load, golden, switch,
report. Any failure before ``switch`` leaves the active slot serving and is reported with its
reason; the pointer names a slot only after all of its files were verified and synced.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.edge.agent.gate import Budget, GateFailed, admit
from modelport.edge.agent.slots import Slot, Slots
from modelport.edge.bundle import Release, verify_files
from modelport.edge.client import FleetClient, Offline, Refused
from modelport.edge.keys import atomic_write
from modelport.edge.trust import Rejected, Verifier
from modelport.errors import InvalidInput, ModelportError, PayloadTooLarge

log = logging.getLogger("modelport.edge.agent")
METADATA_CAP = 1 << 20  # bytes: TUF metadata of one release is a few KB


@dataclass(frozen=True)
class AgentConfig:
    server: str
    device_id: str
    data_dir: Path
    hardware: str = "x86"
    enroll_token: str = ""
    root: Path | None = None  # the trusted TUF root; else the one the server gives at enrollment
    tags: tuple[str, ...] = ()
    ram_mb: int = 0
    max_memory_mb: float = 1024.0
    max_latency_ms: float = 1000.0
    max_download_mb: float = 2048.0
    runtimes: tuple[str, ...] = field(default_factory=lambda: _runtimes())


def _runtimes() -> tuple[str, ...]:
    from modelport.runtimes import KNOWN

    return tuple(info.name for info in KNOWN if info.installed)


@dataclass(frozen=True, slots=True)
class Serving:
    runtime: Any
    name: str
    release_id: int
    number: int
    slot: str
    manifest: dict[str, Any]


class Agent:
    def __init__(self, config: AgentConfig, stage: Any = None) -> None:
        self.config = config
        self.dir = Path(config.data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.slots = Slots(self.dir)
        self.serving: Serving | None = None
        self.served = 0
        self.last_error: str | None = None
        self.staged: int | None = None
        self.interval = 15.0
        self.jitter = 0.2
        self._stage = stage or _print_stage
        self._client: FleetClient | None = None
        self._rejected = _load_json(self.dir / "rejected.json", {})
        self.budget = Budget(
            config.hardware, config.runtimes, config.max_memory_mb, config.max_latency_ms
        )

    # -- start-up ------------------------------------------------------------------------------

    def boot(self) -> None:
        """Serve the active slot, re-hashed against what was verified; else the other one."""
        active = self.slots.active()
        for slot in [s for s in (active, self.slots.inactive()) if s is not None]:
            problem = slot.check()
            if problem is None:
                try:
                    self._serve(slot)
                    if slot is not active:
                        self.slots.switch(slot)
                    return
                except ModelportError as exc:
                    problem = exc.message
            if slot is active:
                self.last_error = problem
                log.warning("active slot unusable: %s", problem)

    def _serve(self, slot: Slot) -> None:
        from modelport.runtimes import open_artifact
        from modelport.signature import Signature

        state = slot.state()
        manifest = state["manifest"]
        runtime = open_artifact(
            slot.targets / manifest["entrypoint"],
            manifest["format"],
            Signature.from_dict(manifest["signature"]),
        )
        self._swap(
            Serving(
                runtime, manifest["name"], state["release_id"], state["number"], slot.name, manifest
            )
        )

    def _swap(self, serving: Serving) -> None:
        old, self.serving = self.serving, serving  # one assignment: requests see old or new
        if old is not None:  # requests already inside the old runtime finish first
            threading.Timer(5.0, old.runtime.close).start()

    @property
    def client(self) -> FleetClient:
        if self._client is None:
            self._client = self._enroll()
        return self._client

    def _enroll(self) -> FleetClient:
        saved = _load_json(self.dir / "device.json", None)
        if saved is not None and saved.get("server") == self.config.server:
            return FleetClient(self.config.server, saved["token"])
        if not self.config.enroll_token:
            raise InvalidInput("this device is not enrolled: pass --enroll-token")
        client = FleetClient(self.config.server)
        facts = {
            "id": self.config.device_id,
            "hardware": self.config.hardware,
            "runtimes": list(self.config.runtimes),
            "ram_mb": self.config.ram_mb,
            "cpu_flags": _cpu_flags(),
            "tags": list(self.config.tags),
        }
        reply = client.enroll(self.config.enroll_token, facts)
        root = self.config.root.read_bytes() if self.config.root else reply.get("root", "").encode()
        if not root:
            raise InvalidInput("no trusted root: pass --root (the server offers none)")
        if not (self.dir / "root.json").exists():
            atomic_write(self.dir / "root.json", root)
        atomic_write(
            self.dir / "device.json",
            json.dumps({"server": self.config.server, "token": reply["token"]}).encode(),
        )
        return FleetClient(self.config.server, reply["token"])

    # -- one poll ------------------------------------------------------------------------------

    def step(self) -> str:
        """Poll once; returns what happened: idle, installed, rejected, offline."""
        try:
            self._stage("poll")
            reply = self.client.poll()
            self.interval = float(reply.get("interval", self.interval))
            self.jitter = float(reply.get("jitter", self.jitter))
            desired = reply.get("desired")
            outcome = None
            current = self.serving.release_id if self.serving else None
            if desired is not None and desired["id"] == current:
                outcome = {"release": current, "ok": True, "reason": ""}
            elif desired is not None and str(desired["id"]) in self._rejected:
                outcome = {
                    "release": desired["id"],
                    "ok": False,
                    "reason": self._rejected[str(desired["id"])],
                }
            elif desired is not None:
                outcome = self.install(desired)
            self._stage("report")
            self.client.report({**self.state_report(), "outcome": outcome})
            if outcome is None or desired["id"] == current:
                return "idle"
            return "installed" if outcome["ok"] else "rejected"
        except Offline as exc:
            self.last_error = f"offline: {exc.message}"
            return "offline"

    def install(self, release: dict[str, Any]) -> dict[str, Any]:
        """Pull, verify, gate and switch to ``release``; the outcome to report."""
        release_id = release["id"]
        try:
            runtime, slot, verified = self._pull_and_gate(release)
        except (Rejected, GateFailed, Refused, PayloadTooLarge, InvalidInput) as exc:
            reason = getattr(exc, "reason", None) or (
                "too-large" if isinstance(exc, PayloadTooLarge) else "download-refused"
            )
            message = (
                f"{reason}: {exc.message}" if not exc.message.startswith(reason) else exc.message
            )
            self._rejected[str(release_id)] = message
            atomic_write(self.dir / "rejected.json", json.dumps(self._rejected).encode())
            self.last_error = message
            return {"release": release_id, "ok": False, "reason": message}
        self._stage("switch")
        self.slots.switch(slot)
        self._swap(
            Serving(
                runtime,
                verified.manifest["name"],
                release_id,
                verified.number,
                slot.name,
                verified.manifest,
            )
        )
        self.staged, self.last_error = None, None
        return {"release": release_id, "ok": True, "reason": ""}

    def _pull_and_gate(self, release: dict[str, Any]) -> tuple[Any, Slot, Release]:
        cap = self.config.max_download_mb * 2**20
        if release["size"] > cap:
            raise PayloadTooLarge(
                f"release {release['id']} is {release['size']} bytes; the "
                f"device takes at most {cap:.0f}"
            )
        slot = self.slots.inactive()
        state = slot.state()
        if state is None or state["release_id"] != release["id"]:
            slot.prepare(release["id"])
            self.staged = release["id"]
            self._stage("metadata")
            for name, entry in release["metadata"].items():
                if "/" in name or name.startswith(".") or entry["size"] > METADATA_CAP:
                    raise Rejected("bad-metadata", f"metadata file {name!r}")
                target = slot.metadata / name
                if not target.exists():
                    self.client.download(entry["sha256"], entry["size"], target)
            self._stage("refresh")
            verifier = self._verifier()
            verifier.refresh(slot.metadata)
            self._stage("download")
            self._download_files(release, slot, verifier, cap)
            self._stage("verify")
            verified = verify_files(slot.dir, verifier)
            if verified.number != release["number"]:
                raise Rejected(
                    "mixed-release",
                    f"the server calls it release "
                    f"{release['number']}, the metadata {verified.number}",
                )
            files = {p: list(_hash(slot.targets / p)) for p in _all_files(verified)}
            slot.mark_verified(release["id"], verified.number, verified.manifest, files)
        else:
            verified = Release(slot.dir, state["number"], state["manifest"])
            problem = slot.check()
            if problem is not None:
                slot.prepare(-1)
                raise Rejected("tampered", problem)
        self._stage("load")
        runtime = admit(verified, self.budget, on_golden=lambda: self._stage("golden"))
        return runtime, slot, verified

    def _download_files(self, release: dict, slot: Slot, verifier: Verifier, cap: float) -> None:
        active = self.slots.active()
        known = {}
        if active is not None and active.state() is not None:
            known = {tuple(v)[0]: active.targets / p for p, v in active.state()["files"].items()}
        total = 0
        for entry in release["files"]:
            path = entry["path"]
            info = verifier.target(path)  # signed length and sha256; the server's are hints
            digest, length = info.hashes["sha256"], info.length
            total += length
            if total > cap:
                raise PayloadTooLarge(f"the release passes the device's cap of {cap:.0f} bytes")
            dest = slot.targets / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() and _hash(dest) == (digest, length):
                continue
            if digest in known and _hash(known[digest]) == (digest, length):
                shutil.copyfile(known[digest], dest)  # unchanged since the active release
                continue
            self.client.download(digest, length, dest)

    def _verifier(self) -> Verifier:
        return Verifier(self.dir / "trust", bootstrap=(self.dir / "root.json").read_bytes())

    # -- reports -------------------------------------------------------------------------------

    def state_report(self) -> dict[str, Any]:
        serving = self.serving
        return {
            "current": serving.release_id if serving else None,
            "staged": self.staged,
            "health": "ok" if serving else "degraded",
            "last_error": self.last_error,
            "metrics": {"served": self.served},
        }

    def state(self) -> dict[str, Any]:
        return {
            **self.state_report(),
            "rejected": dict(self._rejected),
            "slot": self.serving.slot if self.serving else None,
        }

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set: every ``interval`` seconds with +-``jitter`` spread, and
        back off (up to the interval) while the server is unreachable."""
        import random

        delay = 1.0
        while not stop.is_set():
            try:
                outcome = self.step()
            except Exception as exc:  # the device keeps serving whatever went wrong here
                log.exception("agent step failed")
                self.last_error, outcome = f"{type(exc).__name__}: {exc}", "offline"
            delay = min(delay * 2, self.interval) if outcome == "offline" else self.interval
            stop.wait(delay * (1 + self.jitter * (2 * random.random() - 1)))


def _print_stage(name: str) -> None:
    print(f"modelport-edge stage {name}", file=sys.stderr, flush=True)


def _hash(path: Path) -> tuple[str, int]:
    from modelport.edge.trust import hash_file

    return hash_file(path)


def _all_files(release: Release) -> list[str]:
    from modelport.edge.bundle import GOLDEN, MANIFEST

    return [MANIFEST, GOLDEN, *release.manifest["files"]]


def _load_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].split()[:256]
    except OSError:
        pass
    return []
