from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.errors import BackendError, InvalidInput, MissingDependency
from modelport.runtimes import Runtime, for_format, open_artifact
from modelport.signature import Signature, TensorSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is first imported
assert importlib.util.find_spec("ai_edge_litert"), "needs the 'litert' extra"
assert importlib.util.find_spec("onnx2tf"), "the test model is made with the 'tflite' extra"

from modelport.conversion.tflite import convert  # noqa: E402
from modelport.importers.onnx import from_path  # noqa: E402
from modelport.runtimes.litert import LiteRtRuntime  # noqa: E402
from tests.conftest import make_mlp_onnx  # noqa: E402
from tests.runtimes.threads import assert_thread_safe  # noqa: E402


@pytest.fixture(scope="module")
def tflite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Signature]:
    folder = tmp_path_factory.mktemp("litert")
    onnx_path = make_mlp_onnx(folder / "mlp.onnx")
    signature = from_path(onnx_path).signature
    out = folder / "out"
    out.mkdir()
    artifact, route = convert(onnx_path, out, signature)
    assert route == "onnx2tf"
    return artifact.root / artifact.entrypoint, onnx_path, signature


def test_tflite_runs_like_onnx_runtime(tflite: tuple[Path, Path, Signature]) -> None:
    path, onnx_path, signature = tflite
    assert for_format("tflite") is LiteRtRuntime
    runtime = open_artifact(path, "tflite", signature)
    assert isinstance(runtime, Runtime)
    reference = open_artifact(onnx_path, "onnx")
    answers = []
    for rows in (1, 9, 32, 1, 9):  # the batch dimension is resized per call
        x = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
        got = runtime.predict({"input": x})
        assert list(got) == ["probabilities"]  # the file's "output_0" mapped to the registry name
        want = reference.predict({"input": x})["probabilities"]
        np.testing.assert_allclose(got["probabilities"], want, atol=1e-5)
        answers.append((got["probabilities"], want))
    for got, want in answers:  # each answer is the caller's own, not the interpreter's buffer
        np.testing.assert_allclose(got, want, atol=1e-5)
    runtime.close()


def test_signature_read_from_the_file(tflite: tuple[Path, Path, Signature]) -> None:
    runtime = LiteRtRuntime.load(tflite[0])
    assert runtime.signature.inputs == (TensorSpec("input", "float32", (-1, 4)),)
    assert runtime.signature.outputs[0].shape == (-1, 3)


def test_bad_input_and_mismatched_signature(tflite: tuple[Path, Path, Signature]) -> None:
    runtime = LiteRtRuntime.load(tflite[0], tflite[2])
    with pytest.raises(InvalidInput, match="dimension 1 is 6"):
        runtime.predict({"input": np.ones((2, 6), np.float32)})
    two_outputs = Signature(tflite[2].inputs, (TensorSpec("a", "float32", (-1, 3)),) * 2)
    with pytest.raises(BackendError, match="the registry signature expects"):
        LiteRtRuntime.load(tflite[0], two_outputs)


def test_corrupt_file_is_a_backend_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(BackendError, match="LiteRT could not load"):
        LiteRtRuntime.load(bad)


def test_missing_runtime_names_the_extra(
    monkeypatch: Any, tflite: tuple[Path, Path, Signature]
) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(MissingDependency, match=r"pip install 'modelport\[litert\]'"):
        LiteRtRuntime.load(tflite[0])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a),
    )
    with pytest.raises(MissingDependency, match=r"modelport\[litert\]"):
        for_format("tflite")


def test_concurrent_calls_get_their_own_answers(tflite: tuple[Path, Path, Signature]) -> None:
    assert_thread_safe(LiteRtRuntime.load(tflite[0], tflite[2]), n_features=4)
