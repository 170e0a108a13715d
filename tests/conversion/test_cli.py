"""``modelport convert``, ``modelport runtimes`` and ``modelport predict`` on converted versions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.registry import Registry
from tests.conftest import invoke_cli


def run(args: list[str], capsys: Any, monkeypatch: Any) -> tuple[int, str, str]:
    return invoke_cli(monkeypatch, capsys, *args)


@pytest.fixture
def home(shared_registry: Registry) -> str:
    return str(shared_registry.settings.home)


@pytest.mark.parametrize("to", ["openvino", "tflite"])
def test_convert_then_predict(
    to: str, home: str, registered: dict[str, str], tmp_path: Path, capsys: Any, monkeypatch: Any,
    digits: tuple[np.ndarray, np.ndarray],
) -> None:  # fmt: skip
    x, y = digits
    sample = tmp_path / "sample.npy"
    np.save(sample, x[1400:1500])
    code, out, err = run(
        ["--home", home, "convert", registered["mlp"], "--to", to, "--sample", str(sample)],
        capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0, err
    assert "parity of mlp:" in out and "100 rows of user data" in out
    assert "registered mlp:" in out and f"({to}, fp32" in out and "parity ok" in out
    ref = out.split("registered ")[1].split()[0]

    code, out, err = run(["--home", home, "predict", ref, "--input", str(sample), "--json"],
                         capsys, monkeypatch)  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] == ref
    assert (np.array(result["outputs"]["output"]).argmax(1) == y[1400:1500]).mean() > 0.85

    code, out, _ = run(["--home", home, "show", ref, "--json"], capsys, monkeypatch)
    shown = json.loads(out)
    assert shown["parent"] == registered["mlp"] and shown["transform"] == "convert"
    assert shown["metrics"]["parity_max_abs_error"] <= 1e-4


def test_int8_with_calibration_file_and_json(
    home: str, registered: dict[str, str], tmp_path: Path, capsys: Any, monkeypatch: Any,
    digits: tuple[np.ndarray, np.ndarray],
) -> None:  # fmt: skip
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, input=digits[0][:100])
    code, out, err = run(
        ["--home", home, "convert", registered["mlp"], "--to", "tflite", "--precision", "int8",
         "--calibration", str(calibration), "--json"], capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["parity"]["ok"] and result["parity"]["source"] == "calibration data"
    assert result["version"]["transform_params"]["precision"] == "int8"


def test_refusal_and_missing_extra_are_one_line_errors(
    home: str, registered: dict[str, str], capsys: Any, monkeypatch: Any
) -> None:
    code, out, err = run(
        ["--home", home, "convert", registered["cnn"], "--to", "openvino", "--precision", "fp16",
         "--atol", "1e-9"], capsys, monkeypatch,
    )  # fmt: skip
    assert code == 1
    assert err.startswith("error: parity check failed on 32 rows of random data: output 'output'")
    assert "top-1 agreement" in err and "outside max abs error <= 1e-09" in err
    assert err.count("\n") == 1 and "Traceback" not in err

    monkeypatch.setitem(sys.modules, "openvino", None)
    code, _, err = run(["--home", home, "convert", registered["cnn"], "--to", "openvino"],
                       capsys, monkeypatch)  # fmt: skip
    assert code == 1
    wanted = "openvino is not installed; install it with: pip install 'modelport[openvino]'"
    assert err == f"error: {wanted}\n"


def test_runtimes_lists_backends_and_formats() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "modelport", "runtimes", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["onnxruntime"]["formats"] == ["onnx"] and rows["onnxruntime"]["installed"]
    assert rows["openvino"]["formats"] == ["openvino", "onnx"]
    assert rows["litert"]["formats"] == ["tflite"]
    assert rows["litert"]["install"] == "pip install 'modelport[litert]'"
    table = subprocess.run([sys.executable, "-m", "modelport", "runtimes"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "openvino" in table and "tflite" in table and "installed" in table


def test_runtimes_names_the_extra_of_a_missing_backend(capsys: Any, monkeypatch: Any) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    code, out, err = run(["runtimes"], capsys, monkeypatch)
    assert code == 0, err
    line = next(line for line in out.splitlines() if "openvino" in line)
    assert "missing: pip install 'modelport[openvino]'" in line
