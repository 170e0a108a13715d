from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.errors import CorruptArtifact
from modelport.registry import Registry
from tests.conftest import make_mlp_onnx


def _tamper(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_altered_blob_is_caught_on_load_and_by_verify(registry: Registry, tmp_path: Path) -> None:
    version = modelport.register(make_mlp_onnx(tmp_path / "m.onnx"), "m", registry=registry)
    runtime = modelport.load("m", registry=registry)  # first load checks out the artifact
    runtime.predict({"input": np.zeros((1, 4), np.float32)})
    _tamper(registry.blobs.path(version.sha256))
    with pytest.raises(CorruptArtifact, match="m:1: .*corrupt"):
        modelport.load("m", registry=registry)
    problems = registry.verify()
    assert len(problems) == 1
    assert problems[0].ref == "m:1" and "corrupt" in problems[0].message
    with pytest.raises(CorruptArtifact):
        registry.export("m", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_missing_blob_is_reported(registry: Registry, tmp_path: Path) -> None:
    version = modelport.register(make_mlp_onnx(tmp_path / "m.onnx"), "m", registry=registry)
    registry.blobs.path(version.sha256).unlink()
    problems = registry.verify()
    assert [p.ref for p in problems] == ["m:1"] and "missing" in problems[0].message


def test_blobs_are_read_only(sqlite_registry: Registry, tmp_path: Path) -> None:
    version = modelport.register(make_mlp_onnx(tmp_path / "m.onnx"), "m", registry=sqlite_registry)
    mode = sqlite_registry.blobs.path(version.sha256).stat().st_mode
    assert mode & 0o222 == 0


def test_registering_good_content_again_repairs_a_damaged_blob(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    path = make_mlp_onnx(tmp_path / "m.onnx")
    version = modelport.register(path, "m", registry=sqlite_registry)
    _tamper(sqlite_registry.blobs.path(version.sha256))
    assert len(sqlite_registry.verify()) == 1
    modelport.register(path, "m", registry=sqlite_registry)
    assert sqlite_registry.verify() == []


def test_registry_is_usable_from_threads(sqlite_registry: Registry, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    modelport.register(make_mlp_onnx(tmp_path / "m.onnx"), "m", registry=sqlite_registry,
                       alias="production")  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(lambda _: sqlite_registry.resolve("m@production").ref, range(200)))
    assert refs == ["m:1"] * 200


def test_a_file_hashed_once_is_not_read_again_until_it_is_written(
    registry: Registry, tmp_path: Path, monkeypatch
) -> None:
    from modelport.registry import files

    version = modelport.register(make_mlp_onnx(tmp_path / "m.onnx"), "m", registry=registry)
    hashed = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda path: hashed.append(path) or real(path))
    registry.path("m")
    registry.path("m")
    modelport.load("m", registry=registry)
    assert len(hashed) == 1  # the first load hashes; the stamp spares the next ones
    # the same bytes written in place, the modification time set back: still read again
    blob = registry.blobs.path(version.sha256)
    before = blob.stat()
    _tamper(blob)
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert blob.stat().st_size == before.st_size and blob.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(CorruptArtifact, match="corrupt"):
        registry.path("m")
    assert len(hashed) == 2
    _tamper(blob)  # flipped back: intact again, hashed again, then stamped
    registry.path("m")
    registry.path("m")
    assert len(hashed) == 3


def test_the_same_bytes_under_another_file_name_check_out(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    first = make_mlp_onnx(tmp_path / "first.onnx")
    second = tmp_path / "second.onnx"
    second.write_bytes(first.read_bytes())
    one = modelport.register(first, "mlp", registry=sqlite_registry)
    two = modelport.register(second, "mlp", registry=sqlite_registry)
    assert one.sha256 == two.sha256
    assert sqlite_registry.path("mlp:1").name == "first.onnx"
    path = sqlite_registry.path("mlp:2")
    assert path.name == "second.onnx" and path.read_bytes() == first.read_bytes()
    assert sqlite_registry.path("mlp:1").is_file()
