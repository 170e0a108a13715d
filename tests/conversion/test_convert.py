from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import modelport
from modelport.conversion import convert
from modelport.conversion.parity import tolerance
from modelport.errors import InvalidInput
from modelport.registry import Registry
from tests.conftest import make_mlp_onnx
from tests.conversion.conftest import model_inputs

TARGETS = {"openvino": ("openvino", "openvino", ("model.bin", "model.xml")),
           "tflite": ("tflite", "litert", ("model.tflite",))}  # fmt: skip


@pytest.mark.parametrize("key", ["mlp", "cnn"])
@pytest.mark.parametrize("to", ["openvino", "tflite"])
def test_keras_models_convert_with_parity_and_lineage(
    key: str, to: str, converted: Any, shared_registry: Registry, registered: dict[str, str],
    digits: tuple[np.ndarray, np.ndarray], keras_mlp: Any, keras_cnn: Any,
) -> None:  # fmt: skip
    fmt, backend, files = TARGETS[to]
    result = converted(key, to)
    version = result.version
    assert version.format == fmt
    assert sorted(f.path for f in version.files) == sorted(files)
    assert version.parent == registered[key]
    assert version.transform == "convert"
    params = version.transform_params
    assert params["to"] == to and params["precision"] == "fp32"
    assert params["tools"][("openvino" if to == "openvino" else "tensorflow")]
    if to == "tflite":
        assert params["route"] == "saved_model"  # the kept TensorFlow form, not onnx2tf
    # parity recorded on the version and within the fp32 tolerance
    assert version.metrics["parity_max_abs_error"] <= 1e-4
    assert version.metrics["parity_top1_agreement"] == 1.0
    assert "parity_max_rel_error" in version.metrics
    assert result.report.ok and result.report.source == "user data"

    # the same load(...).predict path as ONNX, with the backend picked from the format
    x, y = digits
    runtime = modelport.load(version.ref, registry=shared_registry)
    try:
        assert runtime.name == backend
        probabilities = runtime.predict(model_inputs(key, x[1400:]))["output"]
    finally:
        runtime.close()
    keras_model = keras_mlp if key == "mlp" else keras_cnn
    reference = keras_model(model_inputs(key, x[1400:])["input"]).numpy()
    np.testing.assert_allclose(probabilities, reference, atol=1e-4)
    assert (probabilities.argmax(1) == y[1400:]).mean() > 0.85


@pytest.mark.parametrize(("to", "precision"), [("openvino", "fp16"), ("openvino", "int8"),
                                               ("tflite", "fp16"), ("tflite", "int8")])  # fmt: skip
def test_reduced_precision_is_smaller_and_within_its_tolerance(
    to: str, precision: str, converted: Any, digits: tuple[np.ndarray, np.ndarray],
    shared_registry: Registry,
) -> None:  # fmt: skip
    full = converted("mlp", to, "fp32").version
    result = converted("mlp", to, precision)
    version = result.version
    assert version.size < full.size * (0.6 if precision == "fp16" else 0.5)
    assert version.transform_params["precision"] == precision
    tol = tolerance(precision)
    assert version.metrics["parity_rtol"] == tol.rtol and "parity_atol" not in version.metrics
    assert version.metrics["parity_max_abs_error"] > 0
    if precision == "int8":  # a classifier: judged by agreement with its parent
        assert version.metrics["parity_min_agreement"] == tol.min_agreement == 0.97
    else:
        assert version.metrics["parity_max_rel_error"] <= tol.rtol
    assert version.metrics["parity_top1_agreement"] >= 0.97
    x, y = digits
    runtime = modelport.load(version.ref, registry=shared_registry)
    accuracy = (runtime.predict({"input": x[1400:]})["output"].argmax(1) == y[1400:]).mean()
    assert accuracy > 0.85


def test_onnx_models_go_to_tflite_through_onnx2tf(sqlite_registry: Registry, tmp_path: Any) -> None:
    onnx_file = make_mlp_onnx(tmp_path / "plain.onnx", n_in=16, n_hidden=8, n_out=4)
    parent = modelport.register(onnx_file, "plain", registry=sqlite_registry)
    result = convert(parent.ref, "tflite", registry=sqlite_registry)
    assert result.version.transform_params["route"] == "onnx2tf"
    assert result.version.transform_params["tools"]["onnx2tf"]
    assert result.report.source == "random data" and result.report.rows == 32
    assert result.report.max_abs <= 1e-4
    # the parent's blob is untouched by the converter (it rewrites its input in place)
    assert sqlite_registry.verify([parent.ref]) == []
    x = np.random.default_rng(1).random((5, 16), dtype=np.float32)
    got = modelport.load(result.version.ref, registry=sqlite_registry).predict({"input": x})
    want = modelport.load(parent.ref, registry=sqlite_registry).predict({"input": x})
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)


def test_channels_first_cnn_from_pytorch_keeps_its_layout(
    sqlite_registry: Registry, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10), torch.nn.Softmax(dim=1),
    )  # fmt: skip
    x = digits[0].reshape(-1, 1, 8, 8)
    parent = modelport.register(net, "torch-cnn", registry=sqlite_registry, sample_input=x[:4])
    for to in ("tflite", "openvino"):
        result = convert(parent.ref, to, registry=sqlite_registry, sample={"input": x[:64]})
        assert result.version.signature == parent.signature  # NCHW input, as in ONNX
        assert result.report.max_abs <= 1e-4, to


def test_parity_above_tolerance_is_refused_naming_the_output(
    shared_registry: Registry, registered: dict[str, str], converted: Any
) -> None:
    converted("mlp", "tflite", "fp32")  # make sure earlier versions exist; count from here
    before = len(shared_registry.list_versions("mlp"))
    with pytest.raises(InvalidInput) as info:
        convert(registered["mlp"], "tflite", registry=shared_registry, precision="fp16", atol=1e-7)
    message = str(info.value)
    assert "output 'output' (top-1 agreement 100.0%, max abs error" in message
    assert "outside max abs error <= 1e-07" in message and "--force" in message
    assert len(shared_registry.list_versions("mlp")) == before  # nothing registered

    forced = convert(
        registered["mlp"], "tflite", registry=shared_registry, precision="fp16", atol=1e-7,
        force=True,
    )  # fmt: skip
    assert forced.forced and forced.version.transform_params["forced"] is True
    assert forced.version.metrics["parity_max_abs_error"] > 1e-7
    assert len(shared_registry.list_versions("mlp")) == before + 1
