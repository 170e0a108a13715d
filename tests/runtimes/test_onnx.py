from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.errors import BackendError, InvalidInput
from modelport.runtimes import RuntimeOptions, backends, for_format, open_artifact
from modelport.runtimes.base import Runtime
from modelport.runtimes.onnx import OnnxRuntime


def test_runtime_follows_the_protocol(mlp_path: Path) -> None:
    runtime = OnnxRuntime.load(mlp_path)
    assert isinstance(runtime, Runtime)
    assert runtime.signature.input_names == ["input"]
    out = runtime.predict({"input": np.ones((2, 4), np.float32)})
    assert out["probabilities"].shape == (2, 3)
    runtime.close()


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_options_give_the_same_answer(mlp_path: Path, level: str) -> None:
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    reference = OnnxRuntime.load(mlp_path).predict({"input": x})["probabilities"]
    tuned = OnnxRuntime.load(mlp_path, options=RuntimeOptions(1, 1, level))
    np.testing.assert_allclose(tuned.predict({"input": x})["probabilities"], reference, rtol=1e-6)


def test_bad_options_and_inputs(mlp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="optimisation level"):
        OnnxRuntime.load(mlp_path, options=RuntimeOptions(graph_optimization="max"))
    runtime = OnnxRuntime.load(mlp_path)
    with pytest.raises(InvalidInput, match="dimension 1 is 3"):
        runtime.predict({"input": np.ones((2, 3), np.float32)})
    with pytest.raises(InvalidInput, match="missing input"):
        runtime.predict({})


def test_unloadable_file_is_a_backend_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01garbage")
    with pytest.raises(BackendError, match="could not load"):
        OnnxRuntime.load(junk)


def test_backend_is_chosen_by_format(mlp_path: Path) -> None:
    assert "onnxruntime" in backends()
    assert for_format("onnx") is OnnxRuntime
    with pytest.raises(InvalidInput, match="no installed runtime"):
        for_format("pickle")
    with pytest.raises(InvalidInput, match="unknown runtime"):
        open_artifact(mlp_path, "onnx", backend="tensorrt")
