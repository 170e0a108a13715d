"""Each attack on a bundle is built here and must be refused with its reason."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from modelport.edge.bundle import open_bundle, read_manifest, unpack, verify_dir
from modelport.edge.keys import KeyStore
from modelport.edge.trust import Rejected, Verifier
from tests.edge.conftest import make_bundle


def device(store: KeyStore, tmp_path: Path, name: str = "trust") -> Verifier:
    return Verifier(tmp_path / name, bootstrap=store.root_bytes(1))


def test_good_bundle_verifies_and_lists_every_file(store, tmp_path):
    info = make_bundle(store, tmp_path)
    release = open_bundle(info.path, tmp_path / "x", device(store, tmp_path))
    assert release.number == info.release == 1
    assert read_manifest(info.path)["files"] == release.manifest["files"]
    assert set(info.files) == {"bundle.json", "golden.npz", *release.manifest["files"]}
    inputs, outputs = release.golden()
    assert inputs["x"].shape == (8, 4) and outputs["y"].shape == (8, 3)


def test_tampered_file_is_refused(store, tmp_path):
    info = make_bundle(store, tmp_path)
    folder = unpack(info.path, tmp_path / "x")
    weights = folder / "targets/model/w2.bin"
    data = bytearray(weights.read_bytes())
    data[0] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(Rejected) as caught:
        verify_dir(folder, device(store, tmp_path))
    assert caught.value.reason == "tampered" and "w2.bin" in str(caught.value)


def test_tampered_manifest_is_refused(store, tmp_path):
    folder = unpack(make_bundle(store, tmp_path).path, tmp_path / "x")
    manifest = folder / "targets/bundle.json"
    manifest.write_text(manifest.read_text().replace('"onnx"', '"tflite"'))
    with pytest.raises(Rejected, match="tampered"):
        verify_dir(folder, device(store, tmp_path))


def test_unknown_key_is_refused(store, tmp_path):
    stranger = KeyStore(tmp_path / "stranger")
    stranger.generate()
    info = make_bundle(stranger, tmp_path, out="evil.bundle")
    with pytest.raises(Rejected) as caught:
        open_bundle(info.path, tmp_path / "x", device(store, tmp_path))
    assert caught.value.reason == "untrusted-key"


def test_revoked_key_is_refused_after_rotation(store, tmp_path):
    old = store.active()
    verifier = device(store, tmp_path)
    new = store.rotate()
    assert {k.keyid: k.status for k in store.keys()} == {old.keyid: "revoked", new.keyid: "active"}
    good = make_bundle(store, tmp_path, out="new.bundle")
    assert open_bundle(good.path, tmp_path / "x", verifier).number == good.release
    revoked = make_bundle(store, tmp_path, out="old-key.bundle", keyid=old.keyid)
    with pytest.raises(Rejected) as caught:
        open_bundle(revoked.path, tmp_path / "y", Verifier(tmp_path / "trust"))
    assert caught.value.reason == "untrusted-key"


def test_older_release_offered_again_is_refused(store, tmp_path):
    first = make_bundle(store, tmp_path, seed=1, out="1.bundle")
    second = make_bundle(store, tmp_path, seed=2, out="2.bundle")
    assert open_bundle(second.path, tmp_path / "x", device(store, tmp_path)).number == 2
    with pytest.raises(Rejected) as caught:
        open_bundle(first.path, tmp_path / "y", Verifier(tmp_path / "trust"))
    assert caught.value.reason == "rollback"


def test_stale_metadata_is_refused(store, tmp_path):
    info = make_bundle(store, tmp_path, expires=timedelta(seconds=-60))
    with pytest.raises(Rejected) as caught:
        open_bundle(info.path, tmp_path / "x", device(store, tmp_path))
    assert caught.value.reason == "stale"


def test_files_from_two_releases_are_refused(store, tmp_path):
    first = unpack(make_bundle(store, tmp_path, seed=1, out="1.bundle").path, tmp_path / "a")
    second = unpack(make_bundle(store, tmp_path, seed=2, out="2.bundle").path, tmp_path / "b")
    mixed = tmp_path / "mixed"
    shutil.copytree(second, mixed)
    shutil.copy(first / "targets/model/w2.bin", mixed / "targets/model/w2.bin")
    with pytest.raises(Rejected, match="w2.bin"):
        verify_dir(mixed, device(store, tmp_path, "t1"))
    # metadata from two releases: the newer targets under the older timestamp and snapshot
    shutil.copytree(first, tmp_path / "mixed-meta")
    shutil.copy(second / "metadata/targets.json", tmp_path / "mixed-meta/metadata/targets.json")
    with pytest.raises(Rejected) as caught:
        verify_dir(tmp_path / "mixed-meta", device(store, tmp_path, "t2"))
    assert caught.value.reason == "mixed-release"
    # a manifest from the other release, its hash re-signed nowhere: refused as tampered
    shutil.copy(second / "targets/bundle.json", first / "targets/bundle.json")
    with pytest.raises(Rejected, match="bundle.json"):
        verify_dir(first, device(store, tmp_path, "t3"))
    assert json.loads((second / "targets/bundle.json").read_text())["release"] == 2


def test_a_bundle_with_foreign_entries_is_refused(store, tmp_path):
    import tarfile

    evil = tmp_path / "evil.bundle"
    with tarfile.open(evil, "w") as tar:
        link = tarfile.TarInfo("targets/model/../../../etc/passwd")
        link.type = tarfile.SYMTYPE
        tar.addfile(link)
    with pytest.raises(Rejected, match="unexpected entry"):
        unpack(evil, tmp_path / "x")
