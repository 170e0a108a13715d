from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelport.registry import Registry
from modelport.settings import Settings
from tests.pgserver import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh registry on each catalogue backend."""
    home = tmp_path / "home"
    if request.param == "sqlite":
        yield Settings(home=home, user="tester")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    database = server.create_database()
    try:
        yield Settings(home=home, database_url=server.url(database), user="tester")
    finally:
        server.drop_database(database)


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    reg = Registry(settings)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(Settings(home=tmp_path / "home", user="tester"))
    try:
        yield reg
    finally:
        reg.close()


def make_mlp_onnx(path: Path, n_in: int = 4, n_hidden: int = 8, n_out: int = 3, seed: int = 0,
                  initializer_bytes: int = 0) -> Path:  # fmt: skip
    """A tiny dense ReLU -> softmax network written with onnx.helper; ``seed`` changes weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((n_in, n_hidden)).astype(np.float32)
    b1 = rng.standard_normal(n_hidden).astype(np.float32)
    w2 = rng.standard_normal((n_hidden, n_out)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2")]  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    if initializer_bytes:
        pad = rng.standard_normal(initializer_bytes // 4).astype(np.float32)
        inits.append(numpy_helper.from_array(pad, "padding"))
        nodes.append(helper.make_node("ReduceSum", ["padding"], ["pad_sum"], keepdims=0))
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])]
    if initializer_bytes:
        outputs.append(helper.make_tensor_value_info("pad_sum", TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        outputs, inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def mlp_path(tmp_path: Path) -> Path:
    return make_mlp_onnx(tmp_path / "mlp.onnx")


def invoke_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str):
    """Run ``modelport ARGS`` in process as the console script does: (exit code, stdout, stderr).

    Each call starts from fresh CLI state, so settings from an earlier call never leak."""
    from modelport.cli import common, main

    monkeypatch.setattr(common, "state", common.State())
    monkeypatch.setattr("modelport.cli.state", common.state)
    monkeypatch.setattr(sys, "argv", ["modelport", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
