"""The standard gRPC health service and server reflection on a real server."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelport.registry import Registry
from tests.serving.launch import Launched as Server
from tests.serving.launch import launched

SERVING = health_pb2.HealthCheckResponse.SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@pytest.fixture(scope="module")
def server(served_registry: Registry) -> Iterator[Server]:
    with launched([], served_registry.settings.home) as server:
        yield server


@pytest.fixture(scope="module")
def channel(server: Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc) as channel:
        yield channel


def check(channel: grpc.Channel, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def test_probe_answers_serving_for_the_server_and_each_model(channel: grpc.Channel) -> None:
    for service in ("", "inference.GRPCInferenceService", "mlp", "pair", "identity"):
        assert check(channel, service) == SERVING, service
    for unknown in ("nope", "bad name"):
        with pytest.raises(grpc.RpcError) as caught:
            check(channel, unknown)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_follows_an_unload_and_a_load(server: Server, channel: grpc.Channel) -> None:
    stream = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service="pair"), timeout=30
    )
    try:
        assert next(stream).status == SERVING
        post(server, "/v2/repository/models/pair/unload")
        assert next(stream).status == UNKNOWN
        post(server, "/v2/repository/models/pair/load")
        assert next(stream).status == SERVING
    finally:
        stream.cancel()


def post(server: Server, path: str) -> None:
    request = urllib.request.Request(f"http://{server.http}{path}", b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200


def test_reflection_lists_and_describes_every_service(channel: grpc.Channel) -> None:
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="tensorflow.serving.PredictionService"
        ),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="inference.ModelInferRequest"
        ),
    ]
    listed, tfs, v2 = list(stub.ServerReflectionInfo(iter(asks), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert names >= {"inference.GRPCInferenceService", "tensorflow.serving.PredictionService",
                     "tensorflow.serving.ModelService", "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection"}  # fmt: skip
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in tfs.file_descriptor_response.file_descriptor_proto]  # fmt: skip
    service = next(f for f in files if f.name.endswith("prediction_service.proto")).service[0]
    assert {m.name for m in service.method} >= {"Predict", "Classify", "Regress",
                                                "GetModelMetadata"}  # fmt: skip
    described = descriptor_pb2.FileDescriptorProto.FromString(
        v2.file_descriptor_response.file_descriptor_proto[0]
    )
    assert "ModelInferRequest" in {m.name for m in described.message_type}
