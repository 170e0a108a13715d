"""Signed model bundles: pack a registered version for devices, and open one again.

    info = pack_ref(registry, "digits@production", "onnx", store=KeyStore(home / "keys"),
                    output=Path("digits.bundle"))
    release = open_bundle(Path("digits.bundle"), workdir, Verifier(trust_dir, bootstrap=root))

A bundle is a tar of ``metadata/`` (TUF root history, timestamp, snapshot, targets, all signed by
the release key) and ``targets/``: the model files under ``model/``, ``golden.npz`` (inputs and
expected outputs) and ``bundle.json`` (format, entry point, signature, runtime requirements,
lineage, tolerances, hardware classes). The targets metadata holds every file's length and
sha256, so nothing in ``targets/`` is trusted until it matches.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from modelport.edge.keys import KeyStore
from modelport.edge.trust import Rejected, Verifier
from modelport.errors import InvalidInput

TARGETS = ("onnx", "tflite", "openvino")
RUNTIME_FOR = {"onnx": "onnxruntime", "tflite": "litert", "openvino": "openvino"}
DEFAULT_LIFETIME = timedelta(days=7)
GOLDEN = "golden.npz"
GOLDEN_ROWS = 256  # golden requests taken from a stored evaluation set
MANIFEST = "bundle.json"


@dataclass(frozen=True, slots=True)
class BundleInfo:
    path: Path
    release: int
    keyid: str
    files: dict[str, tuple[str, int]]  # target path -> (sha256, length)
    manifest: dict[str, Any]

    @property
    def size(self) -> int:
        return sum(length for _, length in self.files.values())


def pack_ref(
    registry: Any,
    ref: str,
    target: str,
    *,
    store: KeyStore,
    output: Path,
    precision: str = "fp32",
    keyid: str | None = None,
    golden: Mapping[str, Any] | None = None,
    hardware: Sequence[str] = (),
    expires: timedelta = DEFAULT_LIFETIME,
) -> BundleInfo:
    """Bundle ``ref`` for ``target``, converting it first when it is in another format. The
    golden requests are ``golden``, else the version's stored evaluation set (its first
    ``GOLDEN_ROWS`` rows), else inputs drawn from the signature."""
    from modelport.conversion.parity import random_inputs, tolerance
    from modelport.registry import evalset

    if target not in TARGETS:
        raise InvalidInput(f"bundle target {target!r} is not one of {', '.join(TARGETS)}")
    version = registry.resolve(ref)
    if golden is None and (stored := evalset.stored(registry, version)) is not None:
        golden = {k: v[:GOLDEN_ROWS] for k, v in stored.items() if k != evalset.LABEL}
    if version.format != target:
        from modelport.conversion import convert

        calibration = dict(golden) if golden is not None and precision == "int8" else None
        version = convert(
            version.ref,
            target,
            registry=registry,
            precision=precision,
            calibration=calibration,
            sample=golden,
        ).version
    entry = registry.path(version)
    root = Path(str(entry)[: -len(version.entrypoint)])
    inputs = (
        version.signature.coerce_inputs(golden)
        if golden is not None
        else random_inputs(version.signature, rows=8)
    )
    lineage = [v.ref for v in registry.lineage(version.ref)]
    return pack_files(
        root,
        [f.path for f in version.files],
        version.entrypoint,
        target,
        name=version.name,
        model=version.ref,
        signature=version.signature.to_dict(),
        inputs=inputs,
        atol=tolerance(precision).rtol,  # the conversion bound for this precision, as atol
        precision=precision,
        store=store,
        output=output,
        keyid=keyid,
        hardware=hardware,
        lineage=lineage,
        expires=expires,
    )


def pack_files(
    root: Path,
    files: Sequence[str],
    entrypoint: str,
    format: str,
    *,
    name: str,
    model: str,
    signature: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    atol: float,
    store: KeyStore,
    output: Path,
    precision: str = "fp32",
    keyid: str | None = None,
    hardware: Sequence[str] = (),
    lineage: Sequence[str] = (),
    rtol: float = 1e-3,
    expires: timedelta = DEFAULT_LIFETIME,
    expected: Mapping[str, np.ndarray] | None = None,
) -> BundleInfo:
    """Sign and write a bundle of ``files`` (relative to ``root``); golden outputs are computed
    by running the model on ``inputs`` unless ``expected`` is given."""
    from modelport.runtimes import open_artifact
    from modelport.signature import Signature

    key = store.find(keyid) if keyid else store.active()
    if expected is None:
        runtime = open_artifact(root / entrypoint, format, Signature.from_dict(signature))
        try:
            expected = runtime.predict(inputs)
        finally:
            runtime.close()
    golden = io.BytesIO()
    np.savez(
        golden,
        **{f"in/{k}": np.asarray(v) for k, v in inputs.items()},
        **{f"out/{k}": np.asarray(v) for k, v in expected.items()},
    )
    release = store.next_release()
    manifest = {
        "name": name,
        "model": model,
        "release": release,
        "format": format,
        "precision": precision,
        "entrypoint": f"model/{entrypoint}",
        "signature": dict(signature),
        "requirements": {
            "runtime": RUNTIME_FOR[format],
            "hardware": sorted(hardware),
            "model_bytes": sum((root / f).stat().st_size for f in files),
        },
        "lineage": list(lineage),
        "golden": {"file": GOLDEN, "atol": atol, "rtol": rtol},
        "files": [f"model/{f}" for f in files],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    blobs = {MANIFEST: json.dumps(manifest, indent=1).encode(), GOLDEN: golden.getvalue()}
    sources = {f"model/{f}": root / f for f in files}
    return _write(output, store, key.keyid, release, expires, blobs, sources, manifest)


def _write(
    output: Path,
    store: KeyStore,
    keyid: str,
    release: int,
    expires: timedelta,
    blobs: dict[str, bytes],
    sources: dict[str, Path],
    manifest: dict[str, Any],
) -> BundleInfo:
    from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

    from modelport.edge.trust import hash_file

    until = datetime.now(UTC).replace(microsecond=0) + expires
    targets = Targets(version=release, expires=until)
    files: dict[str, tuple[str, int]] = {}
    for path, data in blobs.items():
        targets.targets[path] = TargetFile.from_data(path, data, ["sha256"])
        files[path] = (targets.targets[path].hashes["sha256"], len(data))
    for path, source in sources.items():
        digest, size = hash_file(source)
        targets.targets[path] = TargetFile(size, {"sha256": digest}, path)
        files[path] = (digest, size)
    signer = store.signer(keyid)
    signed: dict[str, bytes] = {}
    meta = Metadata(targets)
    meta.sign(signer)
    signed["targets.json"] = meta.to_bytes()
    snapshot = Metadata(
        Snapshot(version=release, expires=until, meta={"targets.json": MetaFile(release)})
    )
    snapshot.sign(signer)
    signed["snapshot.json"] = snapshot.to_bytes()
    stamp = Metadata(Timestamp(version=release, expires=until, snapshot_meta=MetaFile(release)))
    stamp.sign(signer)
    signed["timestamp.json"] = stamp.to_bytes()
    for root in store.root_versions():
        signed[root.name] = root.read_bytes()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    with tarfile.open(tmp, "w") as tar:
        for name, data in {
            **{f"metadata/{k}": v for k, v in signed.items()},
            **{f"targets/{k}": v for k, v in blobs.items()},
        }.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
        for path, source in sources.items():
            tar.add(source, arcname=f"targets/{path}", recursive=False)
    tmp.replace(output)
    return BundleInfo(output, release, keyid, files, manifest)


@dataclass(frozen=True, slots=True)
class Release:
    """A verified release in a folder: ``metadata/`` and ``targets/``, every file checked."""

    dir: Path
    number: int
    manifest: dict[str, Any]

    @property
    def targets(self) -> Path:
        return self.dir / "targets"

    @property
    def entrypoint(self) -> Path:
        return self.targets / self.manifest["entrypoint"]

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        with np.load(self.targets / GOLDEN, allow_pickle=False) as data:
            inputs = {k[3:]: data[k] for k in data.files if k.startswith("in/")}
            outputs = {k[4:]: data[k] for k in data.files if k.startswith("out/")}
        return inputs, outputs


def verify_dir(folder: Path, verifier: Verifier) -> Release:
    """Check the metadata in ``folder/metadata`` and every file in ``folder/targets``."""
    verifier.refresh(folder / "metadata")
    return verify_files(folder, verifier)


def verify_files(folder: Path, verifier: Verifier) -> Release:
    """Every file in ``folder/targets`` against metadata ``verifier`` has refreshed."""
    number = verifier.version
    manifest_path = folder / "targets" / MANIFEST
    verifier.check_file(manifest_path, verifier.target(MANIFEST))
    manifest = json.loads(manifest_path.read_text())
    for path in [GOLDEN, *manifest["files"]]:
        verifier.check_file(folder / "targets" / path, verifier.target(path))
    if manifest.get("release") != number:
        raise Rejected(
            "mixed-release",
            f"bundle.json is release {manifest.get('release')}, the metadata release {number}",
        )
    return Release(folder, number, manifest)


def unpack(bundle: Path, dest: Path) -> Path:
    """Extract a bundle file into ``dest`` (plain files only, no links, no paths outside)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(bundle, "r") as tar:
            for member in tar.getmembers():
                top = member.name.split("/")[0]
                if not member.isfile() or top not in ("metadata", "targets"):
                    raise Rejected("bad-bundle", f"unexpected entry {member.name!r}")
                tar.extract(member, dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise Rejected("bad-bundle", f"{bundle} is not a readable bundle: {exc}") from None
    return dest


def open_bundle(bundle: Path, dest: Path, verifier: Verifier) -> Release:
    return verify_dir(unpack(bundle, dest), verifier)


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The unverified bundle.json of a bundle file, for listing it."""
    with tarfile.open(bundle, "r") as tar:
        member = tar.extractfile(f"targets/{MANIFEST}")
        if member is None:
            raise InvalidInput(f"{bundle} has no {MANIFEST}")
        return json.loads(member.read())
