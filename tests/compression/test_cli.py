from __future__ import annotations

import numpy as np
import pytest

from modelport.registry import Registry
from tests.conftest import invoke_cli


@pytest.fixture
def cli(sqlite_registry: Registry, monkeypatch, capsys):
    """Run ``modelport ...`` in process against the test registry: (exit code, stdout, stderr)."""
    home = str(sqlite_registry.settings.home)
    return lambda *args: invoke_cli(monkeypatch, capsys, "--home", home, *args)


def _eval(digits) -> str:
    f = digits.files
    return f"--eval-data {f['x_test']} --eval-labels {f['y_test']} --threads 1"


def test_quantize_prints_report_and_registers(cli, sqlite_registry, tutorial, digits, tmp_path):
    args = f"compress quantize {tutorial} --bits 8 --calibration {digits.files['x_train']} "
    args += f"{_eval(digits)} --max-accuracy-drop 0.005 --plot {tmp_path / 'p.png'}"
    code, out, err = cli(*args.split())
    assert code == 0, err
    assert "file size" in out and "gzip size" in out and "latency batch 32" in out
    assert "accuracy" in out and "CPU:" in out and "registered digits:2" in out
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert sqlite_registry.resolve("digits:2").transform == "quantize"


def test_guard_refuses_and_exits_nonzero(cli, sqlite_registry, tutorial, digits):
    args = f"compress prune {tutorial} --sparsity 0.9 {_eval(digits)} --max-accuracy-drop 0.01"
    code, out, _ = cli(*args.split())
    assert code == 1
    assert "not registered: the accuracy drop is" in out and "over the budget of 1.00 points" in out
    assert len(sqlite_registry.list_versions("digits")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compress", "quantize", "digits", "--bits", "3"], "unsupported bit width 3"),
        (["compress", "prune", "digits", "--sparsity", "1"], "sparsity must be in [0, 1)"),
        (
            ["compress", "quantize", "digits", "--max-accuracy-drop", "0.01"],
            "needs an evaluation set",
        ),
        (["compress", "quantize", "digits", "--calibration", "EMPTY"], "is empty"),
        (["compress", "distill", "digits", "--data", "NARROW"], "dimension 1 is 3"),
        (["compress", "quantize", "digits", "--eval-data", "NARROW"], "dimension 1 is 3"),
        (
            ["compress", "distill", "digits", "--data", "NARROW", "--hidden", "a,b"],
            "--hidden must be",
        ),
        (
            ["compress", "distill", "digits", "--data", "NARROW", "--student", "x.py"],
            "FILE.py:NAME",
        ),
        (["evaluate", "digits", "nothere"], "nothere"),
    ],
)
def test_bad_input_is_one_line(cli, sqlite_registry, tutorial, tmp_path, args, message):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, np.zeros((4, 3), np.float32))
    args = [str(empty) if a == "EMPTY" else str(narrow) if a == "NARROW" else a for a in args]
    code, _, err = cli(*args)
    assert code == 1
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert len(sqlite_registry.list_versions("digits")) == 1


def test_auto_registers_best_and_promotes(cli, sqlite_registry, tutorial, digits):
    f = digits.files
    args = f"compress auto {tutorial} --data {f['x_train']} --labels {f['y_train']} "
    args += f"{_eval(digits)} --max-accuracy-drop 0.01 --epochs 8 --promote staging"
    code, out, err = cli(*args.split())
    assert code == 0, err
    for label in (
        "int8-dynamic-per-channel",
        "fp16",
        "int4-weights",
        "int8-static-qdq",
        "prune-structured-0.5",
        "distill-32",
    ):
        assert label in out
    assert "<- chosen" in out and "pareto" in out
    chosen = sqlite_registry.resolve("digits@staging")
    assert chosen.version == 2 and chosen.parent == tutorial
    assert chosen.metrics["accuracy_drop"] <= 0.01
    assert len(sqlite_registry.list_versions("digits")) == 2


def test_evaluate_command(cli, sqlite_registry, tutorial, digits):
    code, out, _ = cli("compress", "quantize", tutorial, "--bits", "16", "--threads", "1")
    assert code == 0 and "agreement was measured on random inputs" in out
    f = digits.files
    args = f"evaluate {tutorial} digits:2 --data {f['x_test']} --labels {f['y_test']} --threads 1"
    code, out, err = cli(*args.split())
    assert code == 0, err
    assert "digits:1 vs digits:2" in out and "accuracy" in out and "latency batch 1" in out
