"""An image classifier that outputs logits, converted to int8 OpenVINO and TFLite and compared.

A residual CNN with BatchNorm on 3x96x96 images (tests/imagecnn.py): int8 moves its logits by
far more than a probability-sized bound, yet it keeps the class of nearly every row. Parity is
judged by that agreement; a refusal shows it; ``evaluate`` runs any two versions side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.compression.api import evaluate_models
from modelport.conversion import convert
from modelport.errors import InvalidInput
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import invoke_cli
from tests.imagecnn import image_data, residual_cnn


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    calib, _ = image_data(64, seed=2)
    x, y = image_data(200, seed=1)
    return {"calibration": calib, "x": x, "y": y}


@pytest.fixture(scope="module")
def cnn_registry(
    tmp_path_factory: pytest.TempPathFactory, images: dict[str, np.ndarray]
) -> Iterator[Registry]:
    import torch

    import modelport

    reg = Registry(Settings(home=tmp_path_factory.mktemp("images") / "home", user="tester"))
    model = residual_cnn()
    with torch.no_grad():
        logits = model(torch.from_numpy(images["x"])).numpy()
    assert (logits.argmax(1) == images["y"]).mean() > 0.9  # a trained classifier
    sample = torch.from_numpy(images["x"][:2])
    modelport.register(model, "rcnn", registry=reg, sample_input=sample, output_names=["logits"])
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture(scope="module")
def int8(cnn_registry: Registry, images: dict[str, np.ndarray]) -> dict[str, Any]:
    """Target -> the int8 Conversion of rcnn:1, parity on 200 held-out images."""
    return {
        to: convert("rcnn:1", to, registry=cnn_registry, precision="int8",
                    calibration={"input": images["calibration"]}, sample={"input": images["x"]})
        for to in ("openvino", "tflite")
    }  # fmt: skip


@pytest.mark.parametrize("to", ["openvino", "tflite"])
def test_int8_logits_pass_on_top1_agreement(to: str, int8: dict[str, Any]) -> None:
    result = int8[to]
    report = result.report
    (logits,) = report.outputs
    assert not result.forced and result.version.format == to
    assert report.tolerance.rule(logits) == "agreement"
    assert logits.top1 >= 0.97
    assert logits.max_abs > 0.2  # what the old probability-sized absolute bound refused
    assert result.version.metrics["parity_top1_agreement"] == logits.top1
    assert result.version.transform_params["tolerance"] == {"rtol": 0.25, "min_agreement": 0.97}


def test_refusal_shows_the_agreement(cnn_registry: Registry, images: dict[str, np.ndarray]) -> None:
    before = len(cnn_registry.list_versions("rcnn"))
    data = {"calibration": {"input": images["calibration"]}, "sample": {"input": images["x"]}}
    with pytest.raises(InvalidInput) as info:
        convert("rcnn:1", "openvino", registry=cnn_registry, precision="int8", atol=0.01, **data)
    message = str(info.value)
    assert message.startswith("parity check failed on 200 rows of user data: output 'logits' ")
    assert "top-1 agreement " in message and "outside max abs error <= 0.01" in message
    assert len(cnn_registry.list_versions("rcnn")) == before


def test_evaluate_compares_versions_of_any_format(
    cnn_registry: Registry, int8: dict[str, Any], images: dict[str, np.ndarray]
) -> None:
    ov, lite = (int8[to].version.ref for to in ("openvino", "tflite"))
    data = {"input": images["x"]}
    comparison = evaluate_models(
        "rcnn:1", lite, registry=cnn_registry, data=data, labels=images["y"], rounds=3
    )
    assert comparison.rows == 200 and comparison.agreement == int8["tflite"].report.top1
    assert comparison.parent.parameters > 0 and comparison.child.parameters is None
    assert comparison.child.size == cnn_registry.resolve(lite).size
    assert comparison.child.accuracy > 0.9 and set(comparison.child.latency_ms) == {1, 32}
    across = evaluate_models(ov, lite, registry=cnn_registry, data=data, rounds=3)
    assert across.parent.label == ov and across.agreement > 0.95


def test_evaluate_cli_on_a_converted_version(
    cnn_registry: Registry, int8: dict[str, Any], images: dict[str, np.ndarray],
    tmp_path: Path, capsys: Any, monkeypatch: Any,
) -> None:  # fmt: skip
    np.save(tmp_path / "x.npy", images["x"][:64])
    home = str(cnn_registry.settings.home)
    lite = int8["tflite"].version.ref
    code, out, err = invoke_cli(
        monkeypatch, capsys, "--home", home, "evaluate", "rcnn:1", lite,
        "--data", str(tmp_path / "x.npy"), "--threads", "1",
    )  # fmt: skip
    assert code == 0, err
    assert f"rcnn:1 vs {lite}" in out and "top-1 agreement" in out and "latency batch 32" in out
