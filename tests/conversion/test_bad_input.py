"""Every bad conversion: one clear error, nothing registered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport
from modelport.conversion import convert
from modelport.errors import CorruptArtifact, InvalidInput, MissingDependency
from modelport.registry import Registry
from tests.conftest import make_mlp_onnx
from tests.conversion.conftest import write_onnx_with_op


def _versions(registry: Registry, name: str) -> int:
    return len(registry.list_versions(name))


@pytest.mark.parametrize("to", ["openvino", "tflite"])
def test_unsupported_operator_is_named(sqlite_registry: Registry, tmp_path: Path, to: str) -> None:
    path = write_onnx_with_op(tmp_path / "custom.onnx", "FancyOp", domain="com.example")
    parent = modelport.register(path, "custom", registry=sqlite_registry)
    with pytest.raises(InvalidInput) as info:
        convert(parent.ref, to, registry=sqlite_registry)
    assert "FancyOp" in str(info.value)
    assert "No conversion rule" in str(info.value) or "is not supported" in str(info.value)
    assert "\n" not in str(info.value)
    assert _versions(sqlite_registry, "custom") == 1


def test_free_non_batch_dimension_is_refused_for_tflite(
    sqlite_registry: Registry, tmp_path: Path
) -> None:
    path = write_onnx_with_op(tmp_path / "ragged.onnx", "Relu", dims=("batch", "length"))
    parent = modelport.register(path, "ragged", registry=sqlite_registry)
    with pytest.raises(InvalidInput, match=r"free dimension at axis 1.*except the batch"):
        convert(parent.ref, "tflite", registry=sqlite_registry)
    assert _versions(sqlite_registry, "ragged") == 1
    # OpenVINO takes dynamic shapes: the same model converts there
    assert convert(parent.ref, "openvino", registry=sqlite_registry).report.ok


def test_corrupt_source_blob_is_refused(sqlite_registry: Registry, mlp_path: Path) -> None:
    parent = modelport.register(mlp_path, "mlp", registry=sqlite_registry)
    blob = sqlite_registry.blobs.path(parent.files[0].sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"not a model any more")
    with pytest.raises(CorruptArtifact, match="corrupt"):
        convert(parent.ref, "openvino", registry=sqlite_registry)
    assert _versions(sqlite_registry, "mlp") == 1


def test_corrupt_keras_file_is_refused(sqlite_registry: Registry, tmp_path: Path) -> None:
    bogus = tmp_path / "model.keras"
    bogus.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(InvalidInput, match="not a valid Keras model file"):
        modelport.register(bogus, "bogus", registry=sqlite_registry)
    fake_saved = tmp_path / "saved"
    fake_saved.mkdir()
    (fake_saved / "saved_model.pb").write_bytes(b"\x00\x01garbage")
    with pytest.raises(InvalidInput, match="not a valid SavedModel"):
        modelport.register(fake_saved, "bogus", registry=sqlite_registry)
    assert [m.name for m in sqlite_registry.list_models()] == []


@pytest.mark.parametrize(
    ("to", "precision", "message"),
    [("openvino", "int8", "needs calibration data"), ("tflite", "int8", "needs calibration data"),
     ("tflite", "fp8", "precision"), ("coreml", "fp32", "cannot convert to 'coreml'")],
)  # fmt: skip
def test_bad_arguments(
    sqlite_registry: Registry, mlp_path: Path, to: str, precision: str, message: str
) -> None:
    parent = modelport.register(mlp_path, "mlp", registry=sqlite_registry)
    with pytest.raises(InvalidInput, match=message):
        convert(parent.ref, to, registry=sqlite_registry, precision=precision)
    assert _versions(sqlite_registry, "mlp") == 1


def test_converting_a_converted_version_points_to_onnx(
    sqlite_registry: Registry, mlp_path: Path
) -> None:
    parent = modelport.register(mlp_path, "mlp", registry=sqlite_registry)
    child = convert(parent.ref, "openvino", registry=sqlite_registry).version
    with pytest.raises(InvalidInput, match=r"in openvino format; convert from an ONNX.*mlp:1"):
        convert(child.ref, "tflite", registry=sqlite_registry)


def test_sample_data_that_does_not_fit_the_signature(
    sqlite_registry: Registry, mlp_path: Path
) -> None:
    parent = modelport.register(mlp_path, "mlp", registry=sqlite_registry)
    with pytest.raises(InvalidInput, match="dimension 1 is 5"):
        convert(parent.ref, "openvino", registry=sqlite_registry, sample={"input": np.ones((3, 5))})
    assert _versions(sqlite_registry, "mlp") == 1


@pytest.mark.parametrize(("module", "to", "precision", "extra"),
                         [("openvino", "openvino", "fp32", "openvino"),
                          ("nncf", "openvino", "int8", "nncf"),
                          ("onnx2tf", "tflite", "fp32", "tflite")])  # fmt: skip
def test_missing_extra_names_it(
    sqlite_registry: Registry, tmp_path: Path, monkeypatch: Any, module: str, to: str,
    precision: str, extra: str,
) -> None:  # fmt: skip
    path = make_mlp_onnx(tmp_path / "m.onnx")  # no kept SavedModel: the tflite path needs onnx2tf
    parent = modelport.register(path, "mlp", registry=sqlite_registry)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    calibration = {"input": np.ones((4, 4), np.float32)} if precision == "int8" else None
    with pytest.raises(MissingDependency) as info:
        convert(parent.ref, to, registry=sqlite_registry, precision=precision,
                calibration=calibration)  # fmt: skip
    assert info.value.extra == extra
    assert f"pip install 'modelport[{extra}]'" in str(info.value)
    assert _versions(sqlite_registry, "mlp") == 1
