from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import BackendError, InvalidInput
from modelport.runtimes import Runtime, backends, for_format, open_artifact
from modelport.signature import Signature

assert importlib.util.find_spec("openvino"), "needs the 'openvino' extra"

from modelport.conversion.openvino import from_onnx  # noqa: E402
from modelport.importers.onnx import from_path  # noqa: E402
from modelport.runtimes.openvino import OpenVinoRuntime  # noqa: E402
from tests.runtimes.threads import assert_thread_safe  # noqa: E402


@pytest.fixture
def ir(mlp_path: Path, tmp_path: Path) -> tuple[Path, Signature]:
    signature = from_path(mlp_path).signature
    out = tmp_path / "ir"
    out.mkdir()
    artifact = from_onnx(mlp_path, out, signature)
    return artifact.root / artifact.entrypoint, signature


def test_ir_runs_like_onnx_runtime(ir: tuple[Path, Signature], mlp_path: Path) -> None:
    path, signature = ir
    assert for_format("openvino") is OpenVinoRuntime
    runtime = open_artifact(path, "openvino", signature)
    assert isinstance(runtime, Runtime)
    reference = open_artifact(mlp_path, "onnx")
    for rows in (1, 7, 32):  # a free batch dimension
        x = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
        got = runtime.predict({"input": x})["probabilities"]
        assert got.shape == (rows, 3)
        np.testing.assert_allclose(got, reference.predict({"input": x})["probabilities"], atol=1e-5)
    runtime.close()


def test_signature_is_read_from_the_ir_when_not_given(ir: tuple[Path, Signature]) -> None:
    path, signature = ir
    runtime = OpenVinoRuntime.load(path)
    assert runtime.signature == signature


def test_openvino_can_run_onnx_on_request(mlp_path: Path) -> None:
    assert "openvino" in backends()
    runtime = open_artifact(mlp_path, "onnx", backend="openvino")
    assert runtime.predict({"input": np.ones((2, 4), np.float32)})["probabilities"].shape == (2, 3)
    assert for_format("onnx") is not OpenVinoRuntime  # ONNX Runtime stays the default


def test_bad_input_is_invalid_input(ir: tuple[Path, Signature]) -> None:
    runtime = OpenVinoRuntime.load(*ir)
    with pytest.raises(InvalidInput, match="dimension 1 is 5"):
        runtime.predict({"input": np.ones((2, 5), np.float32)})
    with pytest.raises(InvalidInput, match="missing input"):
        runtime.predict({})


def test_corrupt_ir_is_a_backend_error(ir: tuple[Path, Signature]) -> None:
    path, signature = ir
    path.write_text("<net><broken")
    with pytest.raises(BackendError, match="OpenVINO could not load"):
        OpenVinoRuntime.load(path, signature)


def test_concurrent_calls_get_their_own_answers(ir: tuple[Path, Signature]) -> None:
    assert_thread_safe(OpenVinoRuntime.load(*ir), n_features=4)
