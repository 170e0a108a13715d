"""NaN, infinities and numbers too large for FP32 through every protocol: V2 REST JSON and binary,
V2 gRPC and TF-Serving REST. Never a 5xx, never a JSON null; a non-finite output travels as
NaN/Infinity/-Infinity (JSON) or its IEEE bits (binary, gRPC) and is counted in /metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelport
from modelport.registry import Registry
from modelport.serving.codecs import decode_tensor, to_raw
from modelport.serving.proto import inference_pb2 as pb
from modelport.serving.proto import inference_pb2_grpc as pb_grpc
from modelport.settings import Settings
from tests.serving.conftest import save_graph

pytestmark = pytest.mark.anyio
F32_MAX = float(np.finfo(np.float32).max)


def double_onnx(path: Path) -> Path:
    """x float32[batch, 4] -> y = x * 2: infinities and NaN pass through, 2e38 overflows."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(2, np.float32), "two")],
    )  # fmt: skip
    return save_graph(graph, path)


@pytest.fixture(scope="module")
async def wires(tmp_path_factory) -> AsyncIterator[tuple]:
    """An in-process HTTP client and a gRPC stub on one server serving ``double``."""
    import httpx

    from modelport.serving.app import ServerOptions, build
    from modelport.serving.config import ServeConfig
    from modelport.serving.grpc_v2 import start_grpc

    folder = tmp_path_factory.mktemp("nonfinite")
    registry = Registry(Settings(home=folder / "home", user="tester"))
    modelport.register(double_onnx(folder / "double.onnx"), "double", registry=registry,
                       alias="production")  # fmt: skip
    models, _metrics, plane, app = build(registry, ServeConfig(), ServerOptions())
    await models.start()
    server, port = await start_grpc(plane, "127.0.0.1", 0)
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            yield http, pb_grpc.GRPCInferenceServiceStub(channel)
    finally:
        await server.stop(grace=None)
        await models.stop()
        registry.close()


SPECIAL = [float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 3.5e38, 1e39, 2e38,
           F32_MAX, -F32_MAX, 1e-45, 0.0, -0.0]  # fmt: skip
values = st.lists(st.one_of(st.sampled_from(SPECIAL), st.floats(width=32)), min_size=4,
                  max_size=12).map(lambda v: v[: len(v) // 4 * 4])  # fmt: skip


def expected(values: list[float]) -> tuple[np.ndarray | None, np.ndarray]:
    """What JSON carries (None: out of FP32's range, a 400) and what binary carries, doubled."""
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.array(values, np.float64).astype(np.float32).reshape(-1, 4)
        doubled = x * np.float32(2)
    sent = np.array(values, np.float64).reshape(-1, 4)
    out_of_range = (np.isinf(x) & np.isfinite(sent)).any()
    return (None if out_of_range else doubled), doubled


def no_null(body: bytes) -> None:
    assert b"null" not in body, body[:300]


def parsed(text: bytes) -> dict:
    return json.loads(text)  # Python's json reads NaN and Infinity, as tritonclient does


def same(got: object, want: np.ndarray) -> None:
    np.testing.assert_array_equal(np.array(got, np.float32).reshape(want.shape), want)


async def v2_json(http, x: list[float], rows: int, want: np.ndarray | None) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4], "data": x}]}
    reply = await http.post("/v2/models/double/infer", content=json.dumps(body))  # NaN tokens
    if answered(reply, want):
        same(parsed(reply.content)["outputs"][0]["data"], want)


def answered(reply, want: np.ndarray | None) -> bool:
    """True for a 200 without a null; a 400 saying why when ``want`` is None (out of range)."""
    assert reply.status_code < 500, reply.text
    if want is None:
        assert reply.status_code == 400 and "outside the range of float32" in reply.json()["error"]
        return False
    assert reply.status_code == 200, reply.text
    no_null(reply.content)
    return True


async def v2_binary(http, x: np.ndarray, want: np.ndarray) -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape),
              "parameters": {"binary_data_size": x.nbytes}}  # fmt: skip
    head = json.dumps({"inputs": [tensor]}).encode()
    length = {"Inference-Header-Content-Length": str(len(head))}
    reply = await http.post("/v2/models/double/infer", content=head + x.tobytes(), headers=length)
    assert reply.status_code == 200, reply.text  # JSON outputs for a binary request
    no_null(reply.content)
    same(parsed(reply.content)["outputs"][0]["data"], want)


async def v2_grpc(stub, x: np.ndarray, want: np.ndarray) -> None:
    request = pb.ModelInferRequest(model_name="double")
    request.inputs.add(name="x", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(to_raw(x))
    response = await stub.ModelInfer(request)
    got = decode_tensor("y", "FP32", list(response.outputs[0].shape),
                        raw=response.raw_output_contents[0])  # fmt: skip
    same(got, want)


async def tfserving(http, x: list[float], rows: int, want: np.ndarray | None) -> None:
    instances = np.array(x, np.float64).reshape(rows, 4).tolist()
    reply = await http.post(
        "/v1/models/double:predict", content=json.dumps({"instances": instances})
    )
    if answered(reply, want):
        same(parsed(reply.content)["predictions"], want)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(x=values)
async def test_nonfinite_and_out_of_range_numbers_through_every_protocol(wires, x) -> None:
    http, stub = wires
    if not x:
        return
    rows = len(x) // 4
    want_json, want_bits = expected(x)
    with np.errstate(over="ignore"):
        bits = np.array(x, np.float64).astype(np.float32).reshape(rows, 4)  # what a client sends
    await v2_json(http, x, rows, want_json)
    await v2_binary(http, bits, want_bits)
    await v2_grpc(stub, bits, want_bits)
    await tfserving(http, x, rows, want_json)


async def test_nonfinite_outputs_are_counted_per_protocol(wires) -> None:
    http, stub = wires
    x = np.array([[np.nan, np.inf, 1.0, 2e38]], np.float32)  # three non-finite outputs
    with np.errstate(over="ignore"):
        doubled = x * 2
    await v2_binary(http, x, doubled)
    await v2_grpc(stub, x, doubled)
    await tfserving(http, x.astype(np.float64).ravel().tolist(), 1, doubled)
    text = (await http.get("/metrics")).text
    for protocol in ("rest", "grpc", "tfserving"):
        line = (
            f'modelport_nonfinite_outputs_total{{model="double",version="1",protocol="{protocol}"}}'
        )
        [sample] = [row for row in text.splitlines() if row.startswith(line)]
        assert float(sample.split()[-1]) >= 3  # NaN, inf * 2 and 2e38 * 2 at least


async def test_a_null_in_float_data_is_still_refused(wires) -> None:
    http, _ = wires
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, None, 2, 3]}]}
    reply = await http.post("/v2/models/double/infer", json=body)
    assert reply.status_code == 400 and "null" in reply.json()["error"]
