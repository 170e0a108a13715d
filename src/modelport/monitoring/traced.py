"""Transports with traces: an ASGI app and a gRPC interceptor, chosen when tracing is on.

    app = traced_asgi(app, tracing)                       # same interface as the app it wraps
    server = grpc.aio.server(interceptors=[grpc_interceptor(tracing)])

Each reads the caller's W3C ``traceparent`` (an HTTP header, gRPC metadata), starts the request's
trace when it is sampled, puts it in ``TRACE`` for the data plane and the model to stamp, and ends
it once the reply is sent. When tracing is off neither exists: the request path is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from modelport.monitoring.tracing import TRACE, Tracing


def traced_asgi(app: Any, tracing: Tracing) -> Callable:
    """``app`` with a server span per HTTP request (REST V2, TF Serving, OpenAI, metrics)."""

    async def traced(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start, header = perf_counter(), None
        for key, value in scope["headers"]:
            if key == b"traceparent":
                header = value
                break
        parent = tracing.sample(header)
        if parent is None:
            await app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        trace = tracing.begin(f"{method} {path}", parent, {
            "http.request.method": method, "url.path": path, "url.scheme": "http",
        }, start)  # fmt: skip

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                trace.replying = perf_counter()
                trace.status = message["status"]
                trace.attributes["http.response.status_code"] = message["status"]
            await send(message)

        token = TRACE.set(trace)
        try:
            await app(scope, receive, sending)
        except BaseException as exc:
            trace.error = type(exc).__name__
            raise
        finally:
            TRACE.reset(token)
            tracing.finish(trace)

    traced.__wrapped__ = app  # type: ignore[attr-defined]
    return traced


_GRPC_HTTP = {"OK": 200, "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
              "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413, "UNAVAILABLE": 503,
              "DEADLINE_EXCEEDED": 504}  # fmt: skip


def grpc_interceptor(tracing: Tracing) -> Any:
    """A ``grpc.aio.ServerInterceptor`` giving each unary call a server span."""
    import grpc

    class Interceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Callable, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None or handler.unary_unary is None:
                return handler
            behavior, method = handler.unary_unary, details.method

            async def traced(request: Any, context: Any) -> Any:
                start, header = perf_counter(), None
                for key, value in context.invocation_metadata() or ():
                    if key == "traceparent":
                        header = value
                        break
                parent = tracing.sample(header)
                if parent is None:
                    return await behavior(request, context)
                service, _, name = method.strip("/").rpartition("/")
                trace = tracing.begin(method.strip("/"), parent, {
                    "rpc.system": "grpc", "rpc.service": service, "rpc.method": name,
                }, start)  # fmt: skip
                token = TRACE.set(trace)
                code = "OK"
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    status = context.code()
                    code = status.name if status is not None else "UNKNOWN"
                    trace.error = context.details() or type(exc).__name__
                    raise
                finally:
                    TRACE.reset(token)
                    trace.replying = perf_counter()
                    trace.status = _GRPC_HTTP.get(code, 500)
                    trace.attributes["rpc.grpc.status_code"] = getattr(grpc.StatusCode, code,
                                                                       grpc.StatusCode.UNKNOWN
                                                                       ).value[0]  # fmt: skip
                    tracing.finish(trace)

            return grpc.unary_unary_rpc_method_handler(
                traced, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )  # fmt: skip

    return Interceptor()
