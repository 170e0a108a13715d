"""Open Inference Protocol over gRPC (package ``inference``, service ``GRPCInferenceService``).

    server = await start_grpc(plane, "127.0.0.1", 8081, keys)    # grpc.aio, same event loop as HTTP
    await server.stop(grace=1.0)

Inputs arrive as typed ``contents`` or as ``raw_input_contents``; outputs always leave as
``raw_output_contents`` (what tritonclient and other standard clients read fastest). Errors map
``modelport.errors`` to gRPC status codes. Stubs are generated from ``proto/inference.proto``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc

from modelport.errors import (
    Forbidden,
    InvalidInput,
    ModelportError,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    Timeout,
    Unauthorized,
)  # fmt: skip
from modelport.rollouts.split import ROUTE, route_of
from modelport.serving.auth import ApiKeys, token_from
from modelport.serving.codecs import datatype_of, decode_tensor, to_raw
from modelport.serving.dataplane import DataPlane
from modelport.serving.messages import InferenceRequest, Tensor
from modelport.serving.proto import inference_pb2 as pb
from modelport.serving.proto import inference_pb2_grpc as pb_grpc

log = logging.getLogger("modelport.serving")

_CODES = (  # most specific first
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthorized, grpc.StatusCode.UNAUTHENTICATED),
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (Timeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
)
# which typed field of InferTensorContents carries each datatype
_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def status_code(exc: ModelportError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _rpc(role: str | None) -> Callable:
    """Check the API key for ``role``, and turn modelport errors into gRPC status codes."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        async def call(self: InferenceServicer, request: Any, context: Any) -> Any:
            who = client = None
            limiter = self.plane.limiter
            try:
                if role is not None and self.keys.enabled:
                    metadata = dict(context.invocation_metadata() or ())
                    token = token_from(metadata.get("authorization"), metadata.get("x-api-key"))
                    who = self.keys.check(token, role)
                if role is not None and limiter is not None:
                    name = who or _peer_host(context.peer())
                    limiter.admit(name)
                    client = name
                return await method(self, request, context)
            except ModelportError as exc:
                retry = getattr(exc, "retry_after", None)
                if retry is not None:
                    context.set_trailing_metadata((("retry-after", str(retry)),))
                await context.abort(status_code(exc), exc.message)
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                log.exception("unexpected error in gRPC %s", method.__name__)
                details = f"internal error: {type(exc).__name__}"
                await context.abort(grpc.StatusCode.INTERNAL, details)
            finally:
                if client is not None:
                    limiter.release(client)

        return call

    return wrap


def _peer_host(peer: str) -> str:
    """``10.0.0.7`` from gRPC's ``ipv4:10.0.0.7:5555`` (``ipv6:[::1]:5555``: ``::1``)."""
    address = peer.partition(":")[2]
    host = address.rpartition(":")[0] if address.count(":") else address
    return host.strip("[]") or peer


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, keys: ApiKeys | None = None) -> None:
        self.plane = plane
        self.keys = keys or ApiKeys()

    @_rpc(None)
    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.plane.live())

    @_rpc(None)
    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @_rpc("infer")
    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    @_rpc("infer")
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.plane.server_metadata())

    @_rpc("infer")
    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        meta = self.plane.model_metadata(self.plane.model(request.name, request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )  # fmt: skip

    @_rpc("infer")
    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        _follow_route(context)
        neutral = InferenceRequest(request.model_name, [], request.model_version,
                                   protocol="grpc", id=request.id)  # fmt: skip
        try:
            neutral.inputs = _inputs(request)
        except InvalidInput as exc:
            neutral.error = exc
        neutral.outputs = [out.name for out in request.outputs] or None
        answer = await self.plane.infer(neutral)
        response = pb.ModelInferResponse(
            model_name=answer.model, model_version=str(answer.version), id=request.id
        )
        for name, array in answer.outputs.items():
            response.outputs.add(name=name, datatype=datatype_of(array), shape=array.shape)
            response.raw_output_contents.append(to_raw(array))
        return response

    @_rpc("infer")
    async def ModelConfig(self, request: Any, context: Any) -> pb.ModelConfigResponse:
        from google.protobuf import json_format

        from modelport.serving.triton import model_config

        config = model_config(self.plane, self.plane.model(request.name, request.version))
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))

    @_rpc("infer")
    async def ModelStatistics(self, request: Any, context: Any) -> pb.ModelStatisticsResponse:
        from google.protobuf import json_format

        from modelport.serving.triton import model_statistics

        stats = model_statistics(self.plane, request.name or None, request.version or None)
        return json_format.ParseDict(stats, pb.ModelStatisticsResponse())

    @_rpc("admin")
    async def RepositoryIndex(self, request: Any, context: Any) -> pb.RepositoryIndexResponse:
        rows = self.plane.repository_index()
        if request.ready:
            rows = [row for row in rows if row["state"] == "READY"]
        return pb.RepositoryIndexResponse(
            models=[pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows]
        )

    @_rpc("admin")
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await self.plane.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_rpc("admin")
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self.plane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _follow_route(context: Any) -> None:
    """A rollout's sticky key or version override from the call's metadata (each call is its
    own task, so the setting ends with it)."""
    metadata = context.invocation_metadata() or ()
    route = route_of({k.encode(): v.encode() for k, v in metadata if isinstance(v, str)})
    if route is not None:
        ROUTE.set(route)


def _inputs(request: Any) -> list[Tensor]:
    """Each input with its raw bytes (``raw_input_contents``) or its typed ``contents``."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents"
        )
    if not request.inputs:
        raise InvalidInput("the request has no inputs")
    inputs = []
    for index, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if raw:
            inputs.append(Tensor(name, raw[index], datatype, shape))
            continue
        inputs.append(Tensor(name, _from_contents(name, datatype, shape, tensor.contents),
                             datatype, shape))  # fmt: skip
    return inputs


def _from_contents(name: str, datatype: str, shape: list[int], contents: Any) -> Any:
    """Typed ``contents`` as an array (decoded like JSON data: the same checks)."""
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r} is {datatype}: send it in raw_input_contents")
    values = getattr(contents, field)
    data = [_text(v) for v in values] if datatype == "BYTES" else list(values)
    return decode_tensor(name, datatype, shape, data=data)


def _text(item: bytes) -> Any:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        return item


async def start_grpc(
    plane: DataPlane, host: str, port: int, keys: ApiKeys | None = None,
    max_message_bytes: int = 64 << 20, tracing: Any = None, tls: Any = None,
) -> tuple[grpc.aio.Server, int]:  # fmt: skip
    """Start serving on ``host:port``; returns the server and its port (0 picks a free one).
    With ``tracing`` (monitoring.tracing.Tracing) each call gets a span."""
    interceptors = None
    if tracing is not None:
        from modelport.monitoring.traced import grpc_interceptor

        interceptors = [grpc_interceptor(tracing)]
    server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
    ])  # fmt: skip
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane, keys), server)
    from modelport.serving.grpc_extras import add_services

    add_services(server, plane, keys)  # TF Serving's services, health, reflection
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:  # a serving.tls.Tls: TLS, with client certificates when it has a client CA
            bound = server.add_secure_port(address, tls.grpc_credentials())
    except RuntimeError as exc:
        bound, reason = 0, exc
    else:
        reason = "the port is in use or the address is not local"
    if not bound:
        from modelport.errors import Conflict

        raise Conflict(f"cannot listen for gRPC on {address}: {reason}")
    await server.start()
    return server, bound
