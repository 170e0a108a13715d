"""Keras models, .keras files and SavedModels register as ONNX with their TensorFlow form kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import modelport
from modelport.importers.keras import SAVED_MODEL, saved_model_of
from modelport.registry import Registry


def test_keras_model_registers_as_onnx_with_its_saved_model(
    sqlite_registry: Registry, keras_mlp: Any, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    version = modelport.register(keras_mlp, "tutorial", registry=sqlite_registry)
    assert version.format == "onnx" and version.entrypoint == "model.onnx"
    paths = {f.path for f in version.files}
    assert f"{SAVED_MODEL}/saved_model.pb" in paths
    assert any(p.startswith(f"{SAVED_MODEL}/variables/") for p in paths)
    assert version.signature.describe() == "(input: float32[?,64]) -> (output: float32[?,10])"
    entry = sqlite_registry.path(version)
    assert saved_model_of(entry) == entry.parent / SAVED_MODEL
    x = digits[0][:50]
    runtime = modelport.load(version.ref, registry=sqlite_registry)
    assert runtime.name == "onnxruntime"
    np.testing.assert_allclose(
        runtime.predict({"input": x})["output"], keras_mlp(x).numpy(), atol=1e-5
    )


def test_keras_file_and_saved_model_folder_register(
    sqlite_registry: Registry, keras_cnn: Any, tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    x = digits[0][:20].reshape(-1, 8, 8, 1)
    want = keras_cnn(x).numpy()
    keras_cnn.save(tmp_path / "cnn.keras")
    from_file = modelport.register(tmp_path / "cnn.keras", "cnn", registry=sqlite_registry)
    first = sqlite_registry.path(from_file)
    from_folder = modelport.register(first.parent / SAVED_MODEL, "cnn", registry=sqlite_registry)
    for version in (from_file, from_folder):
        assert version.signature.inputs[0].shape == (-1, 8, 8, 1)
        got = modelport.load(version.ref, registry=sqlite_registry).predict({"input": x})
        np.testing.assert_allclose(next(iter(got.values())), want, atol=1e-5)


def test_import_modelport_does_not_import_tensorflow() -> None:
    code = (
        "import sys, modelport, modelport.runtimes, modelport.conversion, modelport.cli; "
        "modelport.runtimes.backends(); "
        "heavy = [m for m in ('tensorflow', 'keras', 'openvino', 'ai_edge_litert', 'onnx2tf') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_export_to_a_file_name_writes_the_model_file(
    sqlite_registry: Registry, keras_mlp: Any, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    from tests.conftest import invoke_cli

    version = modelport.register(keras_mlp, "tutorial", registry=sqlite_registry)
    home = str(sqlite_registry.settings.home)
    code, out, err = invoke_cli(monkeypatch, capsys, "--home", home, "export", version.ref,
                                str(tmp_path / "x.onnx"))  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "x.onnx").is_file()  # a file, not a folder named x.onnx
    assert (tmp_path / "x.onnx").read_bytes() == sqlite_registry.path(version).read_bytes()
    assert "model.onnx only; export to a folder for every file" in out
    code, _, err = invoke_cli(monkeypatch, capsys, "--home", home, "export", version.ref,
                              str(tmp_path / "x.tflite"))  # fmt: skip
    assert code == 1 and not (tmp_path / "x.tflite").exists()
    assert err.startswith(
        f"error: {version.ref} is {len(version.files)} files (model.onnx, saved_model/); "
    )
    assert "export to a folder (a path without a suffix), or to a .onnx file" in err
    code, _, err = invoke_cli(monkeypatch, capsys, "--home", home, "export", version.ref,
                              str(tmp_path / "all"))  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "all" / SAVED_MODEL / "saved_model.pb").is_file()


def test_list_says_what_its_size_counts(
    sqlite_registry: Registry, keras_mlp: Any, capsys: Any, monkeypatch: Any
) -> None:
    from modelport.cli.common import human_size
    from tests.conftest import invoke_cli

    version = modelport.register(keras_mlp, "tutorial", registry=sqlite_registry)
    onnx_size = next(f.size for f in version.files if f.path == "model.onnx")
    kept = version.size - onnx_size
    home = str(sqlite_registry.settings.home)
    code, out, err = invoke_cli(monkeypatch, capsys, "--home", home, "list", "tutorial")
    assert code == 0, err
    assert f"{human_size(onnx_size)} (+{human_size(kept)} kept)" in out
    assert "size: the files a runtime loads; kept: the SavedModel copy" in out
