"""One call from each transport into the data plane: a short request path, the same validation and
metrics for V2 REST, gRPC and TF-Serving, and a neutral request any new transport can build."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

import modelport.serving.models as models_module
from modelport.serving.proto import inference_pb2 as pb
from modelport.serving.proto import inference_pb2_grpc as pb_grpc
from tests.serving.conftest import v2_input

pytestmark = pytest.mark.anyio
X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)


class StackProbe:
    """A real runtime whose ``predict`` counts the frames up to the ASGI app's ``__call__``."""

    name = "onnxruntime"

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.signature = runtime.signature
        self.depths: list[int | None] = []

    def predict(self, feed):
        frame, depth = sys._getframe(), 1
        while frame is not None and not (
            frame.f_code.co_name == "__call__" and frame.f_code.co_filename.endswith("app.py")
        ):
            frame, depth = frame.f_back, depth + 1
        self.depths.append(depth if frame is not None else None)
        return self.runtime.predict(feed)

    def close(self) -> None:
        self.runtime.close()


@pytest.fixture(scope="module")
async def served(served_registry) -> AsyncIterator[tuple]:
    """The real app and gRPC service over one ModelSet whose runtimes are StackProbes."""
    import httpx

    from modelport.serving.app import ServerOptions, build
    from modelport.serving.config import ServeConfig
    from modelport.serving.grpc_v2 import start_grpc

    probes: list[StackProbe] = []
    opened = models_module.open_artifact

    def probed(*args, **kwargs):
        probes.append(StackProbe(opened(*args, **kwargs)))
        return probes[-1]

    models_module.open_artifact = probed
    try:
        models, _metrics, plane, app = build(served_registry, ServeConfig(), ServerOptions())
        await models.start()
    finally:
        models_module.open_artifact = opened
    server, port = await start_grpc(plane, "127.0.0.1", 0)
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            yield http, pb_grpc.GRPCInferenceServiceStub(channel), plane, probes
    finally:
        await server.stop(grace=None)
        await models.stop()


async def test_a_v2_request_reaches_the_runtime_in_at_most_five_frames(served) -> None:
    http, _stub, _plane, probes = served
    for probe in probes:
        probe.depths.clear()  # the warm-up calls ran in a loader thread
    reply = await http.post("/v2/models/mlp/infer", json={"inputs": [v2_input(X)]})
    assert reply.status_code == 200, reply.text
    [depth] = [depth for probe in probes for depth in probe.depths]
    assert depth is not None, "the call did not run inline under app.__call__"
    assert depth <= 5, f"{depth} frames from app.__call__ to the runtime's predict"


async def test_every_protocol_gets_the_same_validation(served) -> None:
    http, stub, _plane, _probes = served
    short = X[:, :3]
    v2 = await http.post("/v2/models/mlp/infer", json={"inputs": [v2_input(short)]})
    tf = await http.post("/v1/models/mlp:predict", json={"instances": short.tolist()})
    request = pb.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="input", datatype="FP32", shape=short.shape)
    request.raw_input_contents.append(short.tobytes())
    with pytest.raises(grpc.aio.AioRpcError) as by_grpc:
        await stub.ModelInfer(request)
    assert v2.status_code == tf.status_code == 400
    assert by_grpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert v2.json()["error"] == tf.json()["error"] == by_grpc.value.details()
    assert "dimension 1 is 3, the model expects 4" in v2.json()["error"]
    twice = [{"name": "probabilities"}] * 2
    repeated = await http.post("/v2/models/mlp/infer",
                               json={"inputs": [v2_input(X)], "outputs": twice})  # fmt: skip
    assert repeated.status_code == 400 and "asked for twice" in repeated.json()["error"]
    unknown = await http.post("/v1/models/mlp:predict", json={"inputs": {"pixels": X.tolist()}})
    assert unknown.status_code == 400 and "has no input 'pixels'" in unknown.json()["error"]
    text = (await http.get("/metrics")).text
    for protocol in ("rest", "grpc", "tfserving"):
        line = f'modelport_requests_total{{model="mlp",version="1",protocol="{protocol}",'
        [sample] = [r for r in text.splitlines() if r.startswith(line + 'outcome="client_error"}')]
        assert float(sample.split()[-1]) >= 1, protocol


async def test_a_neutral_request_is_all_a_new_transport_builds(served, served_registry) -> None:
    import modelport
    from modelport.serving.messages import InferenceRequest, Tensor

    _http, _stub, plane, _probes = served
    response = await plane.infer(InferenceRequest("mlp", [Tensor("input", X)], protocol="test"))
    want = modelport.load("mlp:1", registry=served_registry).predict({"input": X})
    assert (response.model, response.version, list(response.outputs)) == (
        "mlp",
        1,
        ["probabilities"],
    )
    np.testing.assert_array_equal(response.outputs["probabilities"], want["probabilities"])
    rows = InferenceRequest(
        "pair",
        [Tensor("a", X[:, :3].tolist()), Tensor("b", X[:, :3].tolist())],
        outputs=["product"],
        protocol="test",
    )  # JSON values, no datatype
    product = (await plane.infer(rows)).outputs
    assert list(product) == ["product"]
    np.testing.assert_allclose(product["product"], X[:, :3] ** 2, rtol=1e-6)


async def test_a_trailing_slash_and_the_allow_header(served) -> None:
    http, _stub, _plane, _probes = served
    assert (await http.get("/v2/")).json() == (await http.get("/v2")).json()
    wrong = await http.delete("/v2/models/mlp/infer")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    probe = await http.post("/v2/health/live")
    assert probe.status_code == 405 and probe.headers["allow"] == "GET"
    metadata = await http.put("/v2/models/mlp")
    assert metadata.status_code == 405 and metadata.headers["allow"] == "GET"
