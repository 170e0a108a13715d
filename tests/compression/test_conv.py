"""Compression of a convolutional image model: a residual CNN with BatchNorm on 3x96x96 images.

Static int8 is measured in both formats and the faster kept; dynamic int8 says what it left in
float; ``compress auto`` says in full words why distillation does not apply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.compression import graph as gx
from modelport.compression.api import quantize_model
from modelport.compression.report import notes
from modelport.registry import Registry
from tests.conftest import invoke_cli
from tests.imagecnn import image_data, residual_cnn

FAST = {"threads": 1, "rounds": 3}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    x, y = image_data(48, seed=3)
    files = {"x": root / "x.npy", "y": root / "y.npy"}
    np.save(files["x"], x)
    np.save(files["y"], y)
    return files


@pytest.fixture
def cnn(sqlite_registry: Registry) -> str:
    import torch

    import modelport

    sample = torch.from_numpy(image_data(2, seed=4)[0])
    return modelport.register(residual_cnn(), "rcnn", registry=sqlite_registry,
                              sample_input=sample).ref  # fmt: skip


def test_static_int8_keeps_the_faster_format(sqlite_registry, cnn, images):
    x, y = np.load(images["x"]), np.load(images["y"])
    outcome = quantize_model(cnn, bits=8, calibration=x, eval_data=x, eval_labels=y,
                             max_accuracy_drop=0.05, registry=sqlite_registry, **FAST)  # fmt: skip
    params = outcome.version.transform_params
    choice = params["format_choice"]
    assert set(choice) == {"qdq", "qoperator"} and all(r["batch"] == 32 for r in choice.values())
    fastest = max(
        (f for f in choice if choice[f]["within_budget"]), key=lambda f: choice[f]["speedup"]
    )
    assert params["format"] == fastest
    assert outcome.version.metrics["speedup_b32"] == pytest.approx(
        choice[fastest]["speedup"], abs=1e-3
    )
    ops = {n.op_type for n in gx.load(sqlite_registry.path(outcome.version)).graph.node}
    assert ("QLinearConv" in ops) == (fastest == "qoperator")
    lines = notes(outcome.comparison, "quantize", params)
    other = ({"qdq", "qoperator"} - {fastest}).pop()
    skipped = [line for line in lines if line.startswith("Skipped ")]
    assert len(skipped) == 1 and f"--format {other} forces it" in skipped[0]
    assert any(line.startswith("Format: kept ") for line in lines)


def test_explicit_format_is_honoured(sqlite_registry, cnn, images):
    x = np.load(images["x"])
    outcome = quantize_model(cnn, bits=8, calibration=x[:16], format="qdq",
                             registry=sqlite_registry, **FAST)  # fmt: skip
    assert outcome.version.transform_params["format"] == "qdq"
    assert "format_choice" not in outcome.version.transform_params


def test_dynamic_int8_says_it_left_conv_alone(sqlite_registry, cnn):
    outcome = quantize_model(cnn, bits=8, registry=sqlite_registry, **FAST)
    params = outcome.version.transform_params
    assert params["mode"] == "dynamic" and params["left_in_float"] == {"Conv": 5}
    assert 0.9 < params["float_parameter_share"] < 1.0  # the last Linear layer is all it took
    (line,) = [n for n in notes(outcome.comparison, "quantize", params) if "Dynamic int8" in n]
    assert "it left 5 Conv in float" in line and "--calibration FILE" in line


def test_cli_reports_choice_and_auto_skips_in_full_words(
    sqlite_registry, cnn, images, monkeypatch, capsys
):
    home = str(sqlite_registry.settings.home)
    cli = lambda *args: invoke_cli(monkeypatch, capsys, "--home", home, *args)  # noqa: E731
    f = images
    code, out, err = cli("compress", "quantize", cnn, "--calibration", str(f["x"]),
                         "--threads", "1")  # fmt: skip
    assert code == 0, err
    assert "Format: kept " in out and "Skipped " in out
    code, out, err = cli("compress", "auto", cnn, "--data", str(f["x"]), "--labels", str(f["y"]),
                         "--epochs", "1", "--threads", "1")  # fmt: skip
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if "skipped distill" in x]
    assert "needs a model with one [batch, features] input" in line
    assert "(input: float32[?,3,96,96])" in line
