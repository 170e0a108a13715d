"""Crash consistency: agents SIGKILLed at every stage of updates, over and over; after each
restart the device serves exactly the old or the new release, every file as signed."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from modelport.runtimes.onnx import OnnxRuntime
from tests.edge.conftest import make_bundle
from tests.edge.fleetkit import fleet_server
from tests.edge.models import sample

STAGES = ("poll", "metadata", "refresh", "download", "verify", "load", "golden", "switch", "report")
KILLS_PER_DEVICE = int(os.environ.get("EDGE_KILLS", 26))
DEVICES = int(os.environ.get("EDGE_DEVICES", 4))
RELEASES = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Device:
    """One agent process (``modelport edge agent``) and its stage lines."""

    def __init__(self, url: str, token: str, folder: Path, name: str) -> None:
        self.url, self.token, self.folder, self.name = url, token, folder, name
        self.port = free_port()
        self.lines: queue.Queue[str] = queue.Queue()
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []  # what the agents printed besides stage lines

    def start(self) -> float:
        src = Path(__file__).resolve().parents[2] / "src"
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelport",
                "edge",
                "agent",
                "--server",
                self.url,
                "--device-id",
                self.name,
                "--data-dir",
                str(self.folder),
                "--enroll-token",
                self.token,
                "--tag",
                self.name,
                "--port",
                str(self.port),
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, self.lines), daemon=True).start()
        return time.monotonic()

    def _read(self, process: subprocess.Popen, lines: queue.Queue) -> None:
        for line in process.stderr:
            if line.startswith("modelport-edge stage "):
                lines.put(line.split()[-1])
            else:
                self.output.append(line)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def serving(self, timeout: float = 60.0) -> tuple[int, np.ndarray]:
        """(release id, answer) from the local endpoint, as soon as it answers."""
        x = sample()["x"]
        body = json.dumps(
            {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [8, 4], "data": x.ravel().tolist()}
                ]
            }
        ).encode()
        deadline = time.monotonic() + timeout
        base = f"http://127.0.0.1:{self.port}"
        while True:
            try:
                with urllib.request.urlopen(f"{base}/v2/models/mlp", timeout=2) as r:
                    meta = json.loads(r.read())
                request = urllib.request.Request(
                    f"{base}/v2/models/mlp/infer",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=2) as r:
                    reply = json.loads(r.read())
                assert meta["parameters"]["verified"] is True
                y = np.array(reply["outputs"][0]["data"], np.float32).reshape(8, 3)
                return int(reply["model_version"]), y
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def pointed_release(folder: Path) -> tuple[int, dict[str, str]]:
    """The release the pointer names and the files of the slot it points to."""
    pointer = json.loads((folder / "current.json").read_text())
    targets = folder / "slots" / pointer["slot"] / "targets"
    return pointer["release_id"], {
        p.relative_to(targets).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in targets.rglob("*")
        if p.is_file()
    }


def crash_loop(
    device: Device,
    fleet,
    releases: list[dict],
    expected: dict,
    seen: Counter,
    timings: list[float],
    errors: list[str],
) -> None:
    try:
        _crash_loop(device, fleet, releases, expected, seen, timings)
    except BaseException as exc:  # reported by the test thread
        tail = "".join(device.output[-15:])
        errors.append(f"{device.name}: {type(exc).__name__}: {exc}\n{tail}")
        if device.process and device.process.poll() is None:
            device.kill()


def _crash_loop(device, fleet, releases, expected, seen, timings) -> None:
    device.start()
    deadline = time.monotonic() + 120
    while not any(d["id"] == device.name for d in fleet.devices()):  # enrolled
        assert time.monotonic() < deadline, "the agent never enrolled"
        time.sleep(0.05)
    fleet.deploy("mlp", [device.name], [100.0], 0.0, {"x86": releases[0]["id"]})
    good, _ = device.serving(timeout=60)
    assert good == releases[0]["id"]
    target_index = 0
    for kill in range(KILLS_PER_DEVICE):
        if good == releases[target_index]["id"]:  # up to date: offer the next release
            assert target_index + 1 < len(releases), "ran out of releases to update to"
            target_index += 1
            fleet.deploy("mlp", [device.name], [100.0], 0.0, {"x86": releases[target_index]["id"]})
        stage = STAGES[kill % len(STAGES)]
        deadline = time.monotonic() + 10
        last = None
        while time.monotonic() < deadline:
            try:
                last = device.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if last == stage:
                break
        waited = time.monotonic() - deadline + 10
        time.sleep(np.random.default_rng(kill).uniform(0, 0.004))
        device.kill()
        seen[last] += 1
        started = device.start()
        release_id, y = device.serving()
        timings.append(time.monotonic() - started)
        if os.environ.get("EDGE_TRACE"):
            print(
                f"{device.name} kill {kill} at {last} (wanted {stage}) after {waited:.2f}s, "
                f"serving again in {timings[-1]:.2f}s",
                flush=True,
            )
        allowed = {good, releases[target_index]["id"]}
        assert release_id in allowed, f"serves {release_id}, expected one of {allowed}"
        np.testing.assert_allclose(y, expected[release_id], rtol=1e-6)
        pointed, files = pointed_release(device.folder)  # the agent may have moved on since
        allowed.add(release_id)
        assert pointed in allowed, f"the pointer names {pointed}, expected one of {allowed}"
        signed = {f["path"]: f["sha256"] for f in fleet.release(pointed)["files"]}
        assert files == signed, "the active slot is not exactly one release"
        good = max(release_id, pointed)
    device.kill()


@pytest.mark.slow
@pytest.mark.timeout(1500)  # 104 process restarts; minutes on a loaded machine
def test_sigkill_at_every_stage_leaves_the_old_or_the_new_release(store, tmp_path):
    bundles = [make_bundle(store, tmp_path, seed=i % 3, out=f"{i}.bundle") for i in range(RELEASES)]
    expected = {}
    with fleet_server(tmp_path / "home", interval=0.05, root=store.root_bytes(1)) as (fleet, url):
        releases = [fleet.add_release(b.path) for b in bundles]
        for release, bundle in zip(releases, bundles, strict=True):
            model = OnnxRuntime.load(tmp_path / f"model-{bundle.path.name}" / "model.onnx")
            expected[release["id"]] = model.predict(sample())["y"]
        token = fleet.create_token("crash")
        devices = [Device(url, token, tmp_path / f"dev-{i}", f"crash-{i}") for i in range(DEVICES)]
        seen: Counter = Counter()
        timings: list[float] = []
        errors: list[str] = []
        threads = [
            threading.Thread(
                target=crash_loop, args=(d, fleet, releases, expected, seen, timings, errors)
            )
            for d in devices
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    assert not errors, errors
    assert sum(seen.values()) == KILLS_PER_DEVICE * len(devices) >= 100
    assert set(STAGES) <= set(seen), f"stages never hit: {set(STAGES) - set(seen)}"
    print(
        f"\n{sum(seen.values())} kills by stage: {dict(seen)}; restart to serving: "
        f"median {np.median(timings):.2f}s, max {max(timings):.2f}s"
    )
