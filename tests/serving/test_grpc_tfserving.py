"""TensorFlow Serving's gRPC API with the tensorflow-serving-api client, on a real server."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

import modelport
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx
from tests.serving.launch import Launched as Server
from tests.serving.launch import launched

X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """mlp:1 (production), mlp:2 (staging) and score:1, a one-output model, on a real server."""
    tmp = tmp_path_factory.mktemp("tfs")
    reg = Registry(Settings(home=tmp / "home", user="tester"))
    modelport.register(make_mlp_onnx(tmp / "m1.onnx", seed=1), "mlp", registry=reg,
                       alias="production")  # fmt: skip
    modelport.register(make_mlp_onnx(tmp / "m2.onnx", seed=2), "mlp", registry=reg, alias="staging")
    modelport.register(make_mlp_onnx(tmp / "s.onnx", n_out=1), "score", registry=reg,
                       alias="production")  # fmt: skip
    try:
        with launched([], reg.settings.home) as server:
            yield server
    finally:
        reg.close()


@pytest.fixture(scope="module")
def stubs(server: Server):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc)
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))  # fmt: skip
    channel.close()


def v2(server: Server, path: str, x: np.ndarray) -> np.ndarray:
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.ravel().tolist()}]}).encode()  # fmt: skip
    request = urllib.request.Request(f"http://{server.http}{path}", body,
                                     {"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as reply:
        out = json.loads(reply.read())["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def predict_request(name: str, x: np.ndarray, **spec):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(x))
    return request


def test_predict_by_default_version_and_label(stubs, server: Server) -> None:
    import tensorflow as tf

    predict, _ = stubs
    reply = predict.Predict(predict_request("mlp", X), timeout=10)
    assert (reply.model_spec.name, reply.model_spec.version.value) == ("mlp", 1)
    assert reply.model_spec.signature_name == "serving_default"
    got = tf.make_ndarray(reply.outputs["probabilities"])
    np.testing.assert_allclose(got, v2(server, "/v2/models/mlp/versions/1/infer", X), rtol=1e-6)
    staged = predict.Predict(predict_request("mlp", X, version_label="staging"), timeout=10)
    assert staged.model_spec.version.value == 2
    expected = v2(server, "/v2/models/mlp/versions/2/infer", X)
    got = tf.make_ndarray(staged.outputs["probabilities"])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    pinned = predict.Predict(predict_request("mlp", X, version=2), timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(pinned.outputs["probabilities"]),
                                  tf.make_ndarray(staged.outputs["probabilities"]))  # fmt: skip


def test_predict_typed_values_and_output_filter(stubs) -> None:
    from tensorflow_serving.apis import predict_pb2

    predict, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    tensor = request.inputs["input"]
    tensor.dtype = 1  # DT_FLOAT, values in float_val rather than tensor_content
    tensor.tensor_shape.dim.add(size=2)
    tensor.tensor_shape.dim.add(size=4)
    tensor.float_val.extend(X.ravel().tolist())
    request.output_filter.append("probabilities")
    reply = predict.Predict(request, timeout=10)
    assert list(reply.outputs) == ["probabilities"]
    assert [d.size for d in reply.outputs["probabilities"].tensor_shape.dim] == [2, 3]


def test_metadata_and_status_with_a_label(stubs) -> None:
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
    )  # fmt: skip

    predict, models = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "mlp"
    request.model_spec.version_label = "staging"
    request.metadata_field.append("signature_def")
    reply = predict.GetModelMetadata(request, timeout=10)
    assert (reply.model_spec.name, reply.model_spec.version.value) == ("mlp", 2)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    info = signature.inputs["input"]
    assert (info.name, info.dtype) == ("input", 1)  # DT_FLOAT
    assert [d.size for d in info.tensor_shape.dim] == [-1, 4]
    assert [d.size for d in signature.outputs["probabilities"].tensor_shape.dim] == [-1, 3]

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "mlp"
    found = models.GetModelStatus(status, timeout=10).model_version_status
    assert [(s.version, s.state, s.status.error_code) for s in found] == [(2, 30, 0), (1, 30, 0)]
    status.model_spec.version_label = "staging"
    found = models.GetModelStatus(status, timeout=10).model_version_status
    assert [s.version for s in found] == [2]


def test_classify_and_regress_from_examples(stubs, server: Server) -> None:
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    predict, _ = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "mlp"
    for row in X:
        example = request.input.example_list.examples.add()
        example.features.feature["input"].float_list.value.extend(row.tolist())
    reply = predict.Classify(request, timeout=10)
    expected = v2(server, "/v2/models/mlp/infer", X)
    rows = reply.result.classifications
    assert [[c.label for c in row.classes] for row in rows] == [["0", "1", "2"]] * 2
    np.testing.assert_allclose([[c.score for c in r.classes] for r in rows], expected, rtol=1e-6)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "score"
    regress.input.example_list.CopyFrom(request.input.example_list)
    values = [r.value for r in predict.Regress(regress, timeout=10).result.regressions]
    np.testing.assert_allclose(values, v2(server, "/v2/models/score/infer", X).ravel(), rtol=1e-6)
    regress.model_spec.name = "mlp"  # three outputs per row: not a regression
    with pytest.raises(grpc.RpcError) as caught:
        predict.Regress(regress, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no regression output" in caught.value.details()


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "'nope'"),
        ({"version": 9}, grpc.StatusCode.NOT_FOUND, "version 9"),
        ({"version_label": "canary"}, grpc.StatusCode.INVALID_ARGUMENT,
         "Unrecognized servable version label: canary"),
        ({"signature_name": "classify"}, grpc.StatusCode.INVALID_ARGUMENT,
         'Serving signature key "classify" not found.'),
        ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
        ({"x": X.astype(np.float64)}, grpc.StatusCode.INVALID_ARGUMENT, "FP64"),
        ({"x": X[:, :3]}, grpc.StatusCode.INVALID_ARGUMENT, "input"),
    ],
)  # fmt: skip
def test_predict_errors_carry_tf_serving_codes(stubs, change: dict, code, message: str) -> None:
    predict, _ = stubs
    x = change.pop("x", X)
    name = change.pop("name", "mlp")
    with pytest.raises(grpc.RpcError) as caught:
        predict.Predict(predict_request(name, x, **change), timeout=10)
    assert caught.value.code() == code, caught.value.details()
    assert message in caught.value.details()


def test_metadata_needs_a_known_field(stubs) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2

    predict, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "mlp"
    for fields, message in (([], "at least one metadata_field"), (["x"], "field x is not")):
        del request.metadata_field[:]
        request.metadata_field.extend(fields)
        with pytest.raises(grpc.RpcError) as caught:
            predict.GetModelMetadata(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in caught.value.details()


def test_the_server_never_imports_tensorflow(tmp_path: Path, server: Server) -> None:
    """The messages come from the package's descriptors; TensorFlow itself stays out (700 MB)."""
    import subprocess
    import sys

    code = ("import sys\nfrom modelport.serving.grpc_tfserving import TFServing\n"
            "TFServing(None)\nprint('tensorflow' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.anyio
async def test_api_keys_guard_tf_serving_calls_but_not_health(served_registry: Registry) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from modelport.monitoring.metrics import Metrics
    from modelport.serving.auth import ApiKeys
    from modelport.serving.config import ServeConfig
    from modelport.serving.dataplane import DataPlane
    from modelport.serving.grpc_v2 import start_grpc
    from modelport.serving.models import ModelSet

    keys = ApiKeys.parse(["infer:infer-key-0123"])
    models = ModelSet(served_registry, ServeConfig(), Metrics())
    await models.start()
    server, port = await start_grpc(DataPlane(models), "127.0.0.1", 0, keys)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_request("mlp", X)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await predict.Predict(request, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = await predict.Predict(request, timeout=10,
                                          metadata=[("x-api-key", "infer-key-0123")])  # fmt: skip
            assert reply.model_spec.version.value == 1
            health = health_pb2_grpc.HealthStub(channel)  # probes carry no key
            answer = await health.Check(health_pb2.HealthCheckRequest(service="mlp"), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(grace=None)
        await models.stop()
