"""A registration killed with SIGKILL leaves no half-visible version and no corrupt blob."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelport
from modelport.registry import Registry
from modelport.registry.blobs import sha256_file
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx

BIG = 128 * 1024 * 1024

SCRIPT = """
import sys
from pathlib import Path
import modelport
from modelport.settings import Settings
registry = modelport.Registry(Settings(home=Path(sys.argv[1]), database_url=sys.argv[2] or None))
modelport.register(Path(sys.argv[3]), sys.argv[4], registry=registry)
"""


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mlp_onnx(tmp_path_factory.mktemp("big") / "big.onnx", initializer_bytes=BIG)


def _start(settings: Settings, model: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(settings.home),
            settings.database_url or "",
            str(model),
            name,
        ],  # fmt: skip
        cwd=Path(__file__).parents[2],
    )


def _assert_consistent(registry: Registry, name: str) -> None:
    """Either the version is complete and intact, or it does not exist at all."""
    names = {m.name: m for m in registry.list_models()}
    if name in names and names[name].versions:
        version = registry.get(name)
        assert registry.verify([version.ref]) == []
    for digest in registry.blobs.digests():
        assert sha256_file(registry.blobs.path(digest))[0] == digest


def test_kill_while_the_blob_is_being_written(settings: Settings, big_model: Path) -> None:
    registry = Registry(settings)
    try:
        killed_mid_write = False
        for attempt in range(3):
            proc = _start(settings, big_model, f"big{attempt}")
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if any(registry.blobs.tmp.glob("*.part")):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_mid_write = True
                    break
                time.sleep(0.0005)
            proc.wait()
            if killed_mid_write:
                break
        assert killed_mid_write, "the registration finished before it could be interrupted"
        assert [m for m in registry.list_models() if m.versions] == []
        assert list(registry.blobs.digests()) == []
        _assert_consistent(registry, f"big{attempt}")
        # the next registration works, and gc sweeps the partial file
        small = make_mlp_onnx(settings.home / "small.onnx")
        assert modelport.register(small, "after", registry=registry).version == 1
        assert registry.gc(grace_seconds=0).removed_tmp >= 1
        assert not any(registry.blobs.tmp.glob("*.part"))
    finally:
        registry.close()


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5, 2.5])
def test_kill_at_any_moment_leaves_a_consistent_registry(
    sqlite_registry: Registry, big_model: Path, delay: float
) -> None:
    settings = sqlite_registry.settings
    proc = _start(settings, big_model, "big")
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _assert_consistent(sqlite_registry, "big")
    version = modelport.register(big_model, "big", registry=sqlite_registry)
    assert sqlite_registry.verify([version.ref]) == []
    assert version.version in (1, 2)
