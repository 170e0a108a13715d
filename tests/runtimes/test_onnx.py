from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.errors import BackendError, InvalidInput
from modelport.runtimes import RuntimeOptions, backends, for_format, open_artifact
from modelport.runtimes.base import Runtime
from modelport.runtimes.onnx import OnnxRuntime
from tests.conftest import make_mlp_onnx


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


def _gemm_model(path: Path, n_in: int = 4, n_out: int = 3) -> Path:
    """input -> Gemm(transB) -> Relu: the shape of a torch Linear layer after export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.standard_normal((n_out, n_in)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(n_out).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "w", "b"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["output"])],
        "gemm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])],
        [weight, bias],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("first_op", ["MatMul", "Gemm"])
def test_feature_major_input_gives_identical_results(tmp_path: Path, first_op: str) -> None:
    path = make_mlp_onnx(tmp_path / "m.onnx") if first_op == "MatMul" \
        else _gemm_model(tmp_path / "m.onnx")  # fmt: skip
    rows = OnnxRuntime.load(path, options=RuntimeOptions(1))
    columns = OnnxRuntime.load(path, options=RuntimeOptions(1, feature_major=("input",)))
    assert rows.feature_major == frozenset() and columns.feature_major == {"input"}
    assert columns.signature.input("input").shape == (4, -1)
    assert columns.signature.outputs == rows.signature.outputs
    x = np.random.default_rng(0).standard_normal((37, 4)).astype(np.float32)
    [want] = rows.predict({"input": x}).values()
    by_column = np.ascontiguousarray(x.T)
    [got] = columns.predict({"input": by_column}).values()
    np.testing.assert_array_equal(got, want)
    [part] = columns.predict({"input": by_column[:, 5:20]}).values()  # a strided view
    np.testing.assert_array_equal(part, want[5:20])
    with pytest.raises(InvalidInput, match="shape"):
        columns.predict({"input": x})  # rows where columns are expected


def test_feature_major_leaves_external_data_models_and_other_inputs_alone(tmp_path: Path) -> None:
    import onnx

    path = make_mlp_onnx(tmp_path / "m.onnx")
    other = OnnxRuntime.load(path, options=RuntimeOptions(1, feature_major=("not-an-input",)))
    assert other.feature_major == frozenset()
    assert other.signature.input("input").shape == (-1, 4)
    model = onnx.load(str(path))
    external = tmp_path / "external" / "m.onnx"
    external.parent.mkdir()
    onnx.save_model(model, str(external), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)  # fmt: skip
    runtime = OnnxRuntime.load(external, options=RuntimeOptions(1, feature_major=("input",)))
    assert runtime.feature_major == frozenset()  # taken row-major, as before
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(
        runtime.predict({"input": x})["probabilities"],
        OnnxRuntime.load(path).predict({"input": x})["probabilities"],
    )
