"""Batch's column-major adapter: feature columns reach ONNX Runtime as [features, rows] through
a rewritten copy of the graph, with bit-identical results; the Runtime protocol knows nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.batch.columnar import feature_major_graph
from modelport.errors import InvalidInput
from modelport.runtimes import RuntimeOptions
from modelport.runtimes.onnx import OnnxRuntime
from tests.conftest import make_mlp_onnx


def load_feature_major(path: Path, names: tuple[str, ...],
                       tmp: Path) -> tuple[OnnxRuntime, frozenset[str]]:  # fmt: skip
    graph, done, signature = feature_major_graph(path, OnnxRuntime.load(path).signature, names)
    rewritten = tmp / "feature-major.onnx"
    rewritten.write_bytes(graph)
    return OnnxRuntime.load(rewritten, signature, RuntimeOptions(1)), done


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
    columns, names = load_feature_major(path, ("input",), tmp_path)
    assert names == {"input"}
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
    signature = OnnxRuntime.load(path).signature
    assert feature_major_graph(path, signature, ("not-an-input",)) is None
    model = onnx.load(str(path))
    external = tmp_path / "external" / "m.onnx"
    external.parent.mkdir()
    onnx.save_model(model, str(external), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)  # fmt: skip
    assert feature_major_graph(external, signature, ("input",)) is None  # taken row-major
