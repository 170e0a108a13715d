from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import modelport
from modelport.errors import InvalidInput
from modelport.importers import to_artifact
from modelport.registry import Registry
from tests.conftest import make_mlp_onnx


def test_onnx_file_keeps_its_bytes_and_signature(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "m.onnx", n_in=5, n_out=2)
    artifact = to_artifact(path, tmp_path)
    assert artifact.format == "onnx" and artifact.files == ("m.onnx",)
    assert artifact.signature.inputs[0].shape == (-1, 5)
    assert artifact.signature.outputs[0].shape == (-1, 2)


def test_folder_with_external_data(sqlite_registry: Registry, tmp_path: Path) -> None:
    model = onnx.load(str(make_mlp_onnx(tmp_path / "m.onnx", n_hidden=64)))
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    version = modelport.register(folder, "ext", registry=sqlite_registry)
    assert sorted(f.path for f in version.files) == ["model.onnx", "weights.bin"]
    assert version.entrypoint == "model.onnx"
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    expected = modelport.load(modelport.register(tmp_path / "m.onnx", "inline",
                              registry=sqlite_registry), registry=sqlite_registry)  # fmt: skip
    got = modelport.load("ext", registry=sqlite_registry).predict({"input": x})
    np.testing.assert_allclose(
        got["probabilities"], expected.predict({"input": x})["probabilities"]
    )


def test_onnx_model_proto(sqlite_registry: Registry, tmp_path: Path) -> None:
    proto = onnx.load(str(make_mlp_onnx(tmp_path / "m.onnx")))
    version = modelport.register(proto, "proto", registry=sqlite_registry)
    assert version.signature.input_names == ["input"]


def test_torch_module_gets_a_dynamic_batch_axis(sqlite_registry: Registry) -> None:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    version = modelport.register(module, "torchy", registry=sqlite_registry,
                                 sample_input=torch.randn(1, 6))  # fmt: skip
    assert version.signature.inputs[0].shape == (-1, 6)
    assert version.signature.outputs[0].shape == (-1, 3)
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    got = modelport.load("torchy", registry=sqlite_registry).predict({"input": x})["output"]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_torch_module_needs_a_sample(sqlite_registry: Registry) -> None:
    import torch

    with pytest.raises(InvalidInput, match="sample_input"):
        modelport.register(torch.nn.Linear(2, 2), "t", registry=sqlite_registry)


def test_sklearn_pipeline_outputs_probabilities(sqlite_registry: Registry) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    version = modelport.register(pipe, "iris", registry=sqlite_registry)
    assert version.signature.input_names == ["input"]
    assert set(version.signature.output_names) == {"label", "probabilities"}
    out = modelport.load("iris", registry=sqlite_registry).predict({"input": x})
    np.testing.assert_array_equal(out["label"], pipe.predict(x))
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(x), atol=1e-4)


def test_unfitted_estimator_and_unknown_objects_are_refused(sqlite_registry: Registry) -> None:
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(InvalidInput, match="not fitted"):
        modelport.register(LogisticRegression(), "lr", registry=sqlite_registry)
    with pytest.raises(InvalidInput, match="cannot register a builtins.dict"):
        modelport.register({"weights": [1, 2]}, "d", registry=sqlite_registry)
    assert sqlite_registry.list_models() == []


def test_folder_without_exactly_one_model(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(InvalidInput, match="found none"):
        to_artifact(tmp_path / "a", tmp_path)
    make_mlp_onnx(tmp_path / "a" / "one.onnx")
    make_mlp_onnx(tmp_path / "a" / "two.onnx")
    with pytest.raises(InvalidInput, match="one.onnx, two.onnx"):
        to_artifact(tmp_path / "a", tmp_path)
