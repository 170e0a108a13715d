"""Any two registered versions compared side by side, each run through its own runtime.

    comparison = compare_versions(registry, registry.resolve("cnn:1"), registry.resolve("cnn:3"))
    comparison.agreement      # top-1 agreement of cnn:3 (say TFLite int8) with cnn:1 (ONNX)

ONNX versions run on a bare ONNX Runtime session (as compression measures them); OpenVINO and
TFLite versions through their ``Runtime``. Sizes count the files a runtime loads (a Keras
version's kept SavedModel copy is left out); parameters are counted in ONNX graphs only.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelport.compression import graph as gx
from modelport.compression.data import Dataset
from modelport.compression.evaluate import Comparison, Measured, compare, evaluation_rows, session
from modelport.errors import BackendError, InvalidInput, ModelportError, first_line
from modelport.registry import ModelVersion, Registry


class RuntimeSession:
    """A ``Runtime`` behind the ``run(None, feed) -> [outputs]`` call that measuring uses."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.names = list(runtime.signature.output_names)

    def run(self, _names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self.runtime.predict(feed)
        return [np.asarray(out[n]) for n in self.names]

    def close(self) -> None:
        self.runtime.close()


def open_session(registry: Registry, version: ModelVersion, threads: int) -> Any:
    if version.format == "onnx":
        return session(registry.path(version), threads)
    from modelport.api import load
    from modelport.runtimes import RuntimeOptions

    return RuntimeSession(load(version, registry=registry, options=RuntimeOptions(threads, 1)))


def measure_version(
    registry: Registry, version: ModelVersion, sess: Any, rows: Dataset
) -> Measured:
    from modelport.importers.keras import SAVED_MODEL

    root = registry.path(version).parent
    loaded = [f for f in version.files if not f.path.startswith(SAVED_MODEL + "/")]
    data = b"".join((root / f.path).read_bytes() for f in sorted(loaded, key=lambda f: f.path))
    parameters = None
    if version.format == "onnx":
        parameters = gx.parameter_count(gx.load(registry.path(version)))
    try:
        outputs = np.concatenate([sess.run(None, batch)[0] for batch in rows.batches(256)])
    except ModelportError:
        raise
    except Exception as exc:  # a backend's own failure on rows that passed the signature check
        raise BackendError(f"{version.ref} failed while evaluating: {first_line(exc)}") from None
    return Measured(len(data), len(gzip.compress(data, compresslevel=6)), parameters, outputs)


def compare_versions(
    registry: Registry,
    a: ModelVersion,
    b: ModelVersion,
    data: Dataset | None = None,
    *,
    batches: Sequence[int] = (1, 32),
    threads: int = 0,
    rounds: int = 15,
) -> Comparison:
    """Measure ``b`` against ``a`` (which plays the parent) through their runtimes."""
    if a.signature.input_names != b.signature.input_names:
        raise InvalidInput(f"{a.ref} and {b.ref} take different inputs; they cannot be compared")
    from modelport.importers.keras import mute_native_stderr

    rows = evaluation_rows(a.signature, data)
    sessions: list[Any] = []
    try:
        with mute_native_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
            sessions.extend(open_session(registry, v, threads) for v in (a, b))
            pairs = zip((a, b), sessions, strict=True)
            measured = [measure_version(registry, v, s, rows) for v, s in pairs]
        return compare(
            registry.path(a), registry.path(b), a.signature, data,
            labels=(a.ref, b.ref), batches=batches, threads=threads, rounds=rounds,
            parent=measured[0], child=measured[1], sessions=sessions,
        )  # fmt: skip
    finally:
        for s in sessions:
            if isinstance(s, RuntimeSession):
                s.close()
