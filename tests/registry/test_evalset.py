"""Evaluation sets stored with a version: checked against the signature, attached as a blob that
gc keeps, read back whole; the one-line CLI errors."""

from __future__ import annotations

import numpy as np
import pytest

import modelport
from modelport.errors import InvalidInput
from modelport.registry import Registry, evalset
from tests.conftest import invoke_cli, make_mlp_onnx


@pytest.fixture
def reg(tmp_path) -> Registry:
    with Registry.open(tmp_path / "home") as registry:
        modelport.register(make_mlp_onnx(tmp_path / "m.onnx"), "mlp", registry=registry)
        yield registry


def test_an_evaluation_set_round_trips_and_survives_gc(reg: Registry, tmp_path) -> None:
    x = np.random.default_rng(0).random((40, 4), dtype=np.float32)
    y = np.arange(40) % 3
    np.savez(tmp_path / "eval.npz", input=x, label=y)
    version = evalset.store(reg, "mlp:1", tmp_path / "eval.npz")
    assert version.tags[evalset.TAG]
    assert reg.gc(grace_seconds=0).removed_blobs == 0
    data = evalset.stored(reg, reg.resolve("mlp"))
    np.testing.assert_array_equal(data["input"], x)
    np.testing.assert_array_equal(data["label"], y)
    np.save(tmp_path / "x.npy", x[:10].astype(np.float64))  # one array, coerced to float32
    np.save(tmp_path / "y.npy", y[:10])
    evalset.store(reg, "mlp:1", tmp_path / "x.npy", labels=tmp_path / "y.npy")
    data = evalset.stored(reg, reg.resolve("mlp:1"))
    assert data["input"].dtype == np.float32 and data["input"].shape == (10, 4)
    assert evalset.stored(reg, modelport.register(make_mlp_onnx(tmp_path / "n.onnx", seed=2),
                                                  "mlp", registry=reg)) is None  # fmt: skip


def test_bad_evaluation_sets_are_refused_and_change_nothing(reg: Registry, tmp_path) -> None:
    x = np.zeros((5, 4), np.float32)
    cases = {
        "wrong-name.npz": ({"pixels": x}, r"unknown input\(s\) \[.pixels.\]"),
        "rows.npz": ({"input": x, "label": np.zeros(3)}, r"same number of rows.*\[3, 5\]"),
        "empty.npz": ({"input": np.zeros((0, 4), np.float32)}, "at least one"),
        "shape.npz": ({"input": np.zeros((5, 7), np.float32)}, "input"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(InvalidInput, match=message):
            evalset.store(reg, "mlp:1", tmp_path / name)
    assert evalset.stored(reg, reg.resolve("mlp:1")) is None


def test_the_eval_set_command(tmp_path, monkeypatch, capsys) -> None:
    home = str(tmp_path / "home")

    def cli(*args: str) -> tuple[int, str, str]:
        return invoke_cli(monkeypatch, capsys, "--home", home, *args)

    assert cli("register", str(make_mlp_onnx(tmp_path / "m.onnx")), "--name", "mlp")[0] == 0
    np.save(tmp_path / "x.npy", np.ones((12, 4), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(12, np.int64))
    code, out, _ = cli("eval-set", "mlp:1", "--data", str(tmp_path / "x.npy"),
                       "--labels", str(tmp_path / "y.npy"))  # fmt: skip
    assert code == 0 and "stored an evaluation set of 12 rows (with labels) with mlp:1" in out
    code, _, err = cli("eval-set", "mlp:1", "--data", str(tmp_path / "nothing.npy"))
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
