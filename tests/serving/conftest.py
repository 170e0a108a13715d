"""Fixtures for the serving tests: registries holding small real ONNX models, an in-process app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx

# every protocol datatype numpy can carry, as the dtype of an identity model's input/output
IDENTITY_DTYPES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
    "FP32": "float32", "FP64": "float64", "BYTES": "string",
}  # fmt: skip


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def save_graph(graph, path: Path) -> Path:
    """Write an onnx.helper graph as a model (opset 17, IR 8) that onnxruntime loads."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_pair_onnx(path: Path) -> Path:
    """Two float inputs a, b [batch, 3] -> outputs sum and product."""
    from onnx import TensorProto, helper

    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]),
         helper.make_node("Mul", ["a", "b"], ["product"])],
        "pair",
        [info("a", TensorProto.FLOAT, ["batch", 3]), info("b", TensorProto.FLOAT, ["batch", 3])],
        [info("sum", TensorProto.FLOAT, ["batch", 3]),
         info("product", TensorProto.FLOAT, ["batch", 3])],
    )  # fmt: skip
    return save_graph(graph, path)


def make_identity_onnx(path: Path) -> Path:
    """One Identity per datatype: input ``in_<dtype>`` [batch, 2] -> output ``out_<dtype>``."""
    from onnx import helper

    nodes, inputs, outputs = [], [], []
    for dtype in IDENTITY_DTYPES.values():
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(object if dtype == "string" else dtype))
        inputs.append(helper.make_tensor_value_info(f"in_{dtype}", elem, ["batch", 2]))
        outputs.append(helper.make_tensor_value_info(f"out_{dtype}", elem, ["batch", 2]))
        nodes.append(helper.make_node("Identity", [f"in_{dtype}"], [f"out_{dtype}"]))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    return save_graph(graph, path)


@pytest.fixture(scope="module")
def served_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """mlp:1 (production), mlp:2 (staging), pair:1 and identity:1 (production), in a SQLite
    registry like ``sqlite_registry``'s, shared by the tests of one module (loading is slow)."""
    tmp_path = tmp_path_factory.mktemp("served")
    reg = Registry(Settings(home=tmp_path / "home", user="tester"))
    try:
        fill(reg, tmp_path)
        yield reg
    finally:
        reg.close()


def fill(reg: Registry, tmp_path: Path) -> Registry:
    mlp1 = make_mlp_onnx(tmp_path / "mlp1.onnx", seed=1)
    mlp2 = make_mlp_onnx(tmp_path / "mlp2.onnx", seed=2)
    modelport.register(mlp1, "mlp", registry=reg, alias="production")
    modelport.register(mlp2, "mlp", registry=reg, alias="staging")
    modelport.register(make_pair_onnx(tmp_path / "pair.onnx"), "pair", registry=reg,
                       alias="production")  # fmt: skip
    modelport.register(make_identity_onnx(tmp_path / "identity.onnx"), "identity", registry=reg,
                       alias="production")  # fmt: skip
    return reg


@contextlib.asynccontextmanager
async def running_app(registry: Registry, **options) -> AsyncIterator:
    """The real app over the real ModelSet, with an in-process httpx client."""
    import httpx

    from modelport.serving.app import ServerOptions, build
    from modelport.serving.config import ServeConfig

    config = options.pop("config", None) or ServeConfig()
    models, _metrics, _plane, app = build(registry, config, ServerOptions(**options))
    await models.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://modelport") as client:
            yield client
    finally:
        await models.stop()


@pytest.fixture(scope="module")
async def client(served_registry: Registry) -> AsyncIterator:
    async with running_app(served_registry) as client:
        yield client


def v2_input(x: np.ndarray, name: str = "input", datatype: str = "FP32") -> dict:
    return {"name": name, "datatype": datatype, "shape": list(x.shape), "data": x.ravel().tolist()}
