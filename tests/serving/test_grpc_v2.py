"""The V2 gRPC service on a real loopback port, driven by a grpc.aio client and our stubs."""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
import numpy as np
import pytest

from modelport.serving.auth import ApiKeys
from modelport.serving.codecs import to_raw
from modelport.serving.proto import inference_pb2 as pb
from modelport.serving.proto import inference_pb2_grpc as pb_grpc
from tests.serving.conftest import IDENTITY_DTYPES

pytestmark = pytest.mark.anyio
X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)


@contextlib.asynccontextmanager
async def grpc_server(registry, keys=None, max_message_bytes=64 << 20):
    from modelport.monitoring.metrics import Metrics
    from modelport.serving.config import ServeConfig
    from modelport.serving.dataplane import DataPlane
    from modelport.serving.grpc_v2 import start_grpc
    from modelport.serving.models import ModelSet

    models = ModelSet(registry, ServeConfig(), Metrics())
    await models.start()
    server, port = await start_grpc(DataPlane(models), "127.0.0.1", 0, keys, max_message_bytes)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.GRPCInferenceServiceStub(channel)
    finally:
        await server.stop(grace=None)
        await models.stop()


@pytest.fixture(scope="module")
async def stub(served_registry):
    async with grpc_server(served_registry) as stub:
        yield stub


def raw_request(model: str, inputs: dict[str, tuple[str, np.ndarray]], **fields) -> Any:
    request = pb.ModelInferRequest(model_name=model, **fields)
    for name, (datatype, array) in inputs.items():
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(to_raw(array))
    return request


def output(response: pb.ModelInferResponse, name: str) -> np.ndarray:
    from modelport.serving.codecs import decode_tensor

    for index, tensor in enumerate(response.outputs):
        if tensor.name == name:
            return decode_tensor(name, tensor.datatype, list(tensor.shape),
                                 raw=response.raw_output_contents[index])  # fmt: skip
    raise KeyError(name)


async def test_health_and_metadata(stub) -> None:
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="mlp"))).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="mlp", version="2"))).ready
    server = await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "modelport" and "binary_tensor_data" in server.extensions
    meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="mlp"))
    assert meta.name == "mlp" and list(meta.versions) == ["1", "2"]
    assert meta.platform == "onnxruntime"
    assert (meta.inputs[0].name, meta.inputs[0].datatype, list(meta.inputs[0].shape)) == (
        "input",
        "FP32",
        [-1, 4],
    )


async def test_infer_raw_and_typed_contents_agree(stub) -> None:
    raw = await stub.ModelInfer(raw_request("mlp", {"input": ("FP32", X)}, id="abc"))
    assert raw.id == "abc" and raw.model_name == "mlp" and raw.model_version == "1"
    typed = pb.ModelInferRequest(model_name="mlp", model_version="1")
    tensor = typed.inputs.add(name="input", datatype="FP32", shape=[2, 4])
    tensor.contents.fp32_contents.extend(X.ravel().tolist())
    from_typed = await stub.ModelInfer(typed)
    np.testing.assert_array_equal(output(raw, "probabilities"), output(from_typed, "probabilities"))
    assert output(raw, "probabilities").shape == (2, 3)


async def test_version_and_requested_outputs(stub) -> None:
    v2 = await stub.ModelInfer(raw_request("mlp", {"input": ("FP32", X)}, model_version="2"))
    v1 = await stub.ModelInfer(raw_request("mlp", {"input": ("FP32", X)}, model_version="1"))
    assert v2.model_version == "2"
    assert not np.allclose(output(v1, "probabilities"), output(v2, "probabilities"))
    a, b = X[:, :3], X[:, 1:]
    request = raw_request("pair", {"a": ("FP32", a), "b": ("FP32", b)})
    request.outputs.add(name="product")
    response = await stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["product"]
    np.testing.assert_allclose(output(response, "product"), a * b)


async def test_every_datatype_through_raw_contents(stub) -> None:
    from tests.serving.test_rest_v2 import identity_values

    arrays = {dt: identity_values(dt) for dt in IDENTITY_DTYPES}
    inputs = {f"in_{IDENTITY_DTYPES[dt]}": (dt, a) for dt, a in arrays.items()}
    request = raw_request("identity", inputs)
    response = await stub.ModelInfer(request)
    for dt, a in arrays.items():
        got = output(response, f"out_{IDENTITY_DTYPES[dt]}")
        np.testing.assert_array_equal(got, a)
        assert response.outputs[list(arrays).index(dt)].datatype == dt


FIELDS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
          "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
          "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
          "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}  # fmt: skip


@pytest.mark.parametrize("datatype", list(FIELDS))
def test_typed_contents_decode_every_datatype(datatype: str) -> None:
    from modelport.serving.grpc_v2 import _from_contents
    from tests.serving.test_rest_v2 import identity_values

    expected = identity_values(datatype)
    values = expected.ravel().tolist()
    if datatype == "BYTES":
        values = [v.encode() for v in values]
    contents = pb.InferTensorContents()
    getattr(contents, FIELDS[datatype]).extend(values)
    decoded = _from_contents("x", datatype, [2, 2], contents)
    np.testing.assert_array_equal(decoded, expected)
    assert decoded.dtype == expected.dtype


async def test_fp16_needs_raw_contents(stub) -> None:
    request = pb.ModelInferRequest(model_name="identity")
    tensor = request.inputs.add(name="in_float16", datatype="FP16", shape=[1, 2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in err.value.details()


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (lambda r: setattr(r, "model_name", "nope"), grpc.StatusCode.NOT_FOUND, "not served"),
        (lambda r: setattr(r, "model_name", "../x"), grpc.StatusCode.INVALID_ARGUMENT, "separator"),
        (lambda r: setattr(r, "model_version", "9"), grpc.StatusCode.NOT_FOUND, "version 9"),
        (
            lambda r: setattr(r.inputs[0], "datatype", "FP99"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expects FP32",
        ),
        (
            lambda r: r.inputs[0].shape.__setitem__(1, 5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "needs 40",
        ),
        (
            lambda r: r.raw_input_contents.append(b"extra"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "raw_input_contents",
        ),
        (
            lambda r: setattr(r.inputs[0], "name", "x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no input 'x'",
        ),
        (lambda r: r.outputs.add(name="nope"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (
            lambda r: r.ClearField("inputs") or r.ClearField("raw_input_contents"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no inputs",
        ),
    ],
)
async def test_bad_requests_map_to_grpc_status_codes(stub, change, code, message) -> None:
    request = raw_request("mlp", {"input": ("FP32", X)})
    change(request)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ModelInfer(request)
    assert err.value.code() == code
    assert message in err.value.details()
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live


async def test_unknown_model_metadata_and_ready_are_not_found(stub) -> None:
    for call, request in [(stub.ModelMetadata, pb.ModelMetadataRequest(name="nope")),
                          (stub.ModelReady, pb.ModelReadyRequest(name="nope"))]:  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_repository_index_unload_load(stub) -> None:
    index = await stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
    assert {(m.name, m.version) for m in index.models} >= {("mlp", "1"), ("pair", "1")}
    await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="pair"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ModelMetadata(pb.ModelMetadataRequest(name="pair"))
    await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="pair"))
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="pair"))).ready


async def test_message_over_the_size_limit_is_resource_exhausted(served_registry) -> None:
    async with grpc_server(served_registry, max_message_bytes=4096) as stub:
        big = np.ones((512, 4), dtype=np.float32)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(raw_request("mlp", {"input": ("FP32", big)}))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await stub.ModelInfer(raw_request("mlp", {"input": ("FP32", X)}))
        assert ok.model_name == "mlp"


async def test_api_keys_over_grpc_metadata(served_registry) -> None:
    keys = ApiKeys.parse(["infer:infer-key-0123", "admin:admin-key-4567"])
    async with grpc_server(served_registry, keys) as stub:
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        request = raw_request("mlp", {"input": ("FP32", X)})
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(request)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(request, metadata=[("x-api-key", "wrong-key-000")])
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = await stub.ModelInfer(request, metadata=[("authorization", "Bearer infer-key-0123")])
        assert ok.model_name == "mlp"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RepositoryIndex(pb.RepositoryIndexRequest(),
                                       metadata=[("x-api-key", "infer-key-0123")])  # fmt: skip
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        index = await stub.RepositoryIndex(pb.RepositoryIndexRequest(),
                                           metadata=[("x-api-key", "admin-key-4567")])  # fmt: skip
        assert index.models


def test_committed_stubs_match_the_proto() -> None:
    import subprocess
    import sys
    from pathlib import Path

    import modelport.serving.proto as proto

    script = Path(proto.__file__).parent / "regenerate.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
