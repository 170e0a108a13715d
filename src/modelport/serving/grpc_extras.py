"""The gRPC services beside V2 inference: TF Serving's, the standard health service, reflection.

    names = add_services(server, plane, keys)   # once, before server.start()

``grpc.health.v1.Health`` answers for the server (service "" or the name of a served gRPC
service: SERVING once every designated model is ready) and for each model by name (SERVING while
it can answer inference, NOT_SERVING while it loads, NOT_FOUND when it is not served), so
Kubernetes' ``grpc`` probes and ``grpc_health_probe`` work. ``Watch`` streams a status each time
it changes. Reflection lists and describes every service, for grpcurl and similar tools.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelport.errors import MissingDependency, ModelportError
from modelport.serving.dataplane import DataPlane

log = logging.getLogger("modelport.serving")
V2_SERVICE = "inference.GRPCInferenceService"
WATCH_EVERY = 0.5  # seconds between status checks of a Watch stream
_STATUS = health_pb2.HealthCheckResponse
_SERVING, _NOT_SERVING, _UNKNOWN = _STATUS.SERVING, _STATUS.NOT_SERVING, _STATUS.SERVICE_UNKNOWN


class Health(health_pb2_grpc.HealthServicer):
    """Statuses computed from the model set at each call: nothing to keep in step."""

    def __init__(self, plane: DataPlane, services: tuple[str, ...]) -> None:
        self.plane = plane
        self.services = frozenset(("", *services))

    def status(self, service: str) -> int:
        if service in self.services:
            return _SERVING if self.plane.ready() else _NOT_SERVING
        try:
            return _SERVING if self.plane.model_ready(service) else _NOT_SERVING
        except ModelportError:  # not a model name, or not a served one
            return _UNKNOWN

    async def Check(self, request: Any, context: Any) -> Any:
        status = self.status(request.service)
        if status == _UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> Any:
        last = None
        while True:
            status = self.status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_EVERY)


def add_services(server: Any, plane: DataPlane, keys: Any = None) -> tuple[str, ...]:
    """TF Serving's services (when ``tensorflow-serving-api`` is installed), health and
    reflection; returns every service name the server answers."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    from modelport.serving.proto import inference_pb2

    services: tuple[str, ...] = (V2_SERVICE,)
    files = [inference_pb2.DESCRIPTOR, health_pb2.DESCRIPTOR]
    pool = descriptor_pool.DescriptorPool()
    if importlib.util.find_spec("tensorflow_serving") is not None:
        from modelport.serving.grpc_tfserving import add_tfserving
        from modelport.serving.proto.tfserving import tfserving_messages

        try:
            services += add_tfserving(server, plane, keys)
        except MissingDependency as exc:  # the package is there but not whole: serve V2 only
            log.warning("TF Serving's gRPC API is off: %s", exc)
        else:
            for proto in tfserving_messages().files:
                pool.Add(proto)
    health_pb2_grpc.add_HealthServicer_to_server(Health(plane, services), server)
    services += ("grpc.health.v1.Health",)
    try:
        from grpc_reflection.v1alpha import reflection, reflection_pb2
    except ImportError:  # pragma: no cover - grpcio-reflection is part of the serve extra
        log.info("gRPC reflection is off: pip install grpcio-reflection")
        return services
    files.append(reflection_pb2.DESCRIPTOR)
    for descriptor in files:
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        try:
            pool.Add(proto)
        except TypeError:  # already there as a dependency of another file
            pass
    services += (reflection.SERVICE_NAME,)
    reflection.enable_server_reflection(services, server, pool=pool)
    return services
