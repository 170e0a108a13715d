"""Wiring: one lean ASGI app for every REST route, and ``serve`` running it beside gRPC.

    app = ServingApp(plane, metrics, keys=ApiKeys(), max_body=64 << 20)
    await serve(registry, ServeConfig(...), ServerOptions(http_port=8080, grpc_port=8081))

Routes are matched by splitting the path once; there is no framework layer, no per-request
schema validation and no middleware stack: the request path is route -> auth -> size check ->
handler (decode, ``DataPlane.infer``, encode) -> two ASGI messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from modelport.errors import (
    InvalidInput,
    ModelportError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from modelport.rollouts.split import ROUTE, route_of
from modelport.serving import admin
from modelport.serving.auth import ApiKeys, token_from
from modelport.serving.dataplane import DataPlane
from modelport.serving.exposure import guard
from modelport.serving.limits import Limiter, Limits
from modelport.serving.listener import lifespan, listen, stop_on_signals, uvicorn_server
from modelport.serving.rest_explain import ExplainOptions, RestExplain
from modelport.serving.rest_rollouts import RestRollouts
from modelport.serving.rest_tfserving import RestTFServing
from modelport.serving.rest_v2 import Reply, RestV2, error_reply, parse_json, reply
from modelport.serving.streaming import Stream

if TYPE_CHECKING:
    from modelport.generation.options import EngineOptions
    from modelport.monitoring.metrics import Metrics
    from modelport.monitoring.monitor import Monitor, MonitorOptions
    from modelport.monitoring.tracing import Tracing
    from modelport.registry import Registry
    from modelport.serving.config import ServeConfig
    from modelport.serving.llm import LanguageModels
    from modelport.serving.tls import Tls

log = logging.getLogger("modelport.serving")
DEFAULT_MAX_BODY = 64 << 20
Handler = Callable[..., Awaitable[Reply]]
_METHOD_NOT_ALLOWED = b'{"error":"method not allowed"}'
_JSON = [(b"content-type", b"application/json")]
_ROUTE_CACHE = 4096  # matched (method, path) pairs remembered; cleared when full


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int | None = 8081  # None: no gRPC server
    api_keys: ApiKeys | None = None
    max_request_bytes: int = DEFAULT_MAX_BODY
    generation: EngineOptions | None = None  # language models: slots, context, queue
    memory_budget: int | None = None  # language models: bytes for all open ones (None: 2 open)
    tracing: Tracing | None = None  # OpenTelemetry spans per request (Tracing.from_environment)
    explain: ExplainOptions | None = None  # explanations' time budget and job bound
    tls: Tls | None = None  # HTTPS and gRPC over TLS (serving/tls.py)
    limits: Limits = Limits()  # per-client rate and concurrency, global in-flight cap
    allow_unauthenticated: bool = False  # serve a non-loopback address without keys
    admin_routes: bool | None = None  # None: on unless open to the network without keys
    drain_timeout: float = 30.0  # on SIGTERM: longest wait for requests in flight, seconds
    monitor: MonitorOptions | None = None  # payload log, drift, feedback (default: no log)


class ServingApp:
    """The ASGI application. ``routes`` maps (method, pattern) to (handler, role)."""

    def __init__(
        self, plane: DataPlane, metrics: Metrics, keys: ApiKeys | None = None,
        max_body: int = DEFAULT_MAX_BODY, llm: LanguageModels | None = None,
        explain: ExplainOptions | None = None,
        limits: Limits | None = None,
    ) -> None:  # fmt: skip
        self.plane = plane
        self.limiter = Limiter(limits) if limits is not None and limits.enabled else None
        self.metrics = metrics
        self.keys = keys or ApiKeys()
        self.max_body = max_body
        self.llm = llm
        self.explain = rx = RestExplain(plane, explain)
        self.monitor: Monitor | None = None  # set by build(); serves the feedback route
        self.ui: Any = None  # the dashboard under /ui (modelport.ui), set by build()
        from modelport.serving.triton import RestTriton

        v2, tr = RestV2(plane), RestTriton(plane)
        # fixed paths, then patterns by segment count; "{}" is a path parameter
        self._fixed = {**_fixed_routes(v2, tr, self._metrics), **_openai_routes(llm)}
        tf, ro = RestTFServing(plane, rx), RestRollouts(plane.models)
        self._patterns = _by_segment_count((
            *_generate_routes(llm), *_v2_routes(v2, rx, tr, self._feedback),
            *_tfserving_routes(tf), *_rollout_routes(ro),
        ))  # fmt: skip
        self._seen: dict[tuple[str, str], tuple[Handler, str | None, list[str]]] = {}

    def route(self, method: str, path: str) -> tuple[Handler, str | None, list[str]]:
        fixed = self._fixed.get((method, path))
        if fixed is not None:
            return fixed[0], fixed[1], []
        if len(path) > 1 and path.endswith("/"):  # "/v2/" is "/v2", as for every pattern
            path = path.rstrip("/") or "/"
            fixed = self._fixed.get((method, path))
            if fixed is not None:
                return fixed[0], fixed[1], []
        key = (method, path)
        found = self._seen.get(key)
        if found is None:
            found = self._match(method, path)
            if len(self._seen) >= _ROUTE_CACHE:
                self._seen.clear()
            self._seen[key] = found
        return found

    def _match(self, method: str, path: str) -> tuple[Handler, str | None, list[str]]:
        parts = path.strip("/").split("/")
        allowed = {m for (m, p) in self._fixed if p == path}
        for want, pattern, handler, role in self._patterns.get(len(parts), ()):
            params = path_params(parts, pattern)
            if params is not None:
                if want == method:
                    return handler, role, params
                allowed.add(want)
        if allowed:
            raise _MethodNotAllowed(", ".join(sorted(allowed)))
        raise NotFound(f"no route {method} {path}")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        # The hot path stays in this one frame: route, auth and limits, body, handler, reply run
        # on every request, and a coroutine per step would lengthen the V2 path of seven frames.
        # Only the cold branches (error replies) are calls of their own.
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await lifespan(receive, send)
            return
        if self.ui is not None and scope["path"].startswith("/ui"):
            await self.ui(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        role = who = client = token = None
        params: list[str] = []
        try:
            try:
                handler, role, params = self.route(scope["method"], scope["path"])
                headers = dict(scope["headers"])
                if role is not None and self.keys.enabled:
                    token = token_from(headers.get(b"authorization"), headers.get(b"x-api-key"))
                    who = self.keys.check(token, role)
                if role is not None and self.limiter is not None:
                    client = self._admit(who, scope)
                body = b""
                if scope["method"] == "POST":
                    body = await self._read(receive, headers.get(b"content-length"))
                    encoding = headers.get(b"content-encoding")
                    if encoding is not None:  # a small body may inflate up to the limit
                        limit = self.max_body
                        body = await _off_loop(limit, inflate, body, encoding, limit)
                route = route_of(headers)  # a rollout's sticky key or version override, if any
                if role == "admin":
                    registry = self.plane.models.registry
                    status, payload, extra = await admin.run(
                        registry, handler, body, headers, params, scope, who
                    )
                elif route is None:
                    status, payload, extra = await handler(body, headers, *params)
                else:
                    routed = ROUTE.set(route)
                    try:
                        status, payload, extra = await handler(body, headers, *params)
                    finally:
                        ROUTE.reset(routed)
                if isinstance(payload, Stream):
                    await payload.send(send, receive, status, extra)
                    return
            except ModelportError as exc:
                status, payload, extra = await self._refused(exc, scope, role, token, params)
            except _MethodNotAllowed as exc:
                status, payload = 405, _METHOD_NOT_ALLOWED
                extra = [*_JSON, (b"allow", str(exc).encode())]
            except Exception as exc:  # a bug must still answer JSON and leave the server up
                status, payload, extra = _internal_error(exc, scope)
            await self._send(send, status, payload, extra, headers)
        finally:
            if client is not None:
                self.limiter.release(client)

    async def _refused(self, exc: ModelportError, scope: dict, role: str | None,
                       token: str | None, params: list[str]) -> Reply:  # fmt: skip
        """The protocol's error reply for ``exc``, with ``Retry-After`` when it gives one; a
        refused admin request is recorded in the audit log with who tried, if known."""
        status, payload, extra = error_reply(exc)
        retry = getattr(exc, "retry_after", None)
        if retry is not None:
            extra = [*extra, (b"retry-after", b"%d" % retry)]
        if role == "admin" and isinstance(exc, Unauthorized):
            who = self.keys.name_of(token) or ("invalid key" if token else None)
            await admin.record(self.plane.models.registry, "admin_denied", scope, who,
                               params, status)  # fmt: skip
        return status, payload, extra

    async def _send(self, send: Callable, status: int, payload: bytes, extra: list,
                    headers: dict[bytes, bytes]) -> None:  # fmt: skip
        if len(payload) >= COMPRESS_ABOVE:
            accept = headers.get(b"accept-encoding")
            coding = accepted_coding(accept) if accept is not None else None
            if coding is not None:
                payload = await _off_loop(len(payload), deflate, payload, coding)
                extra = [*extra, (b"content-encoding", coding), (b"vary", b"accept-encoding")]
        reply_headers = [*extra, (b"content-length", b"%d" % len(payload))]  # else: chunked
        await send({"type": "http.response.start", "status": status, "headers": reply_headers})
        await send({"type": "http.response.body", "body": payload})

    def _admit(self, who: str | None, scope: dict) -> str:
        """The client a request counts against (its key's name, else its host), admitted."""
        peer = scope.get("client")
        client = who or (peer[0] if peer else "unknown")
        self.limiter.admit(client)
        return client

    async def _read(self, receive: Callable, declared: bytes | None) -> bytes:
        limit = self.max_body
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"the request body is {int(declared)} bytes; the limit is {limit}"
            )
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body"):
            if len(body) > limit:
                raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
            return body
        chunks, size = [body], len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _feedback(self, body: bytes, headers: dict[bytes, bytes], name: str) -> Reply:
        if self.monitor is None:
            raise NotFound("this server does not monitor its models")
        return reply(self.monitor.feedback(name, parse_json(body)))

    async def _metrics(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        content_type = self.metrics.content_type.encode()
        text = self.metrics.render()
        if self.llm is not None:
            text += self.llm.render_metrics()
        return 200, text, [(b"content-type", content_type)]


def path_params(parts: list[str], pattern: tuple[str, ...]) -> list[str] | None:
    """The segments of ``parts`` where ``pattern`` has ``{}``, or None if another differs."""
    params = []
    for segment, expected in zip(parts, pattern, strict=True):
        if expected == "{}":
            params.append(segment)
        elif segment != expected:
            return None
    return params


_Fixed = dict[tuple[str, str], tuple[Handler, str | None]]  # (method, path) -> (handler, role)
_Pattern = tuple[str, str, Handler, str]  # (method, pattern, handler, role)


def _fixed_routes(v2: RestV2, tr: Any, metrics: Handler) -> _Fixed:
    """Paths without parameters: health, server metadata, the repository index, metrics."""
    return {
        ("GET", "/v2/health/live"): (v2.live, None),
        ("GET", "/v2/health/ready"): (v2.ready, None),
        ("GET", "/v2"): (v2.server_metadata, "infer"),
        ("GET", "/v2/repository/index"): (v2.repository_index, "admin"),
        ("POST", "/v2/repository/index"): (v2.repository_index, "admin"),
        ("GET", "/metrics"): (metrics, "infer"),
        ("GET", "/v2/models/stats"): (tr.all_stats, "infer"),
    }


def _openai_routes(llm: LanguageModels | None) -> _Fixed:
    """The OpenAI-compatible paths, when the server has language models."""
    if llm is None:
        return {}
    from modelport.serving.openai import OpenAI

    oa = OpenAI(llm)
    return {
        ("GET", "/v1/models"): (oa.list_models, "infer"),
        ("POST", "/v1/chat/completions"): (oa.chat, "infer"),
        ("POST", "/v1/completions"): (oa.completions, "infer"),
        ("POST", "/v1/embeddings"): (oa.embeddings, "infer"),
    }


def _generate_routes(llm: LanguageModels | None) -> tuple[_Pattern, ...]:
    """The V2 generate extension, when the server has language models."""
    if llm is None:
        return ()
    from modelport.serving.rest_generate import RestGenerate

    gen = RestGenerate(llm)
    return tuple(("POST", f"v2/models/{{}}{v}/{verb}", getattr(gen, verb), "infer")
                 for v in ("", "/versions/{}")
                 for verb in ("generate", "generate_stream"))  # fmt: skip


def _v2_routes(v2: RestV2, rx: RestExplain, tr: Any, feedback: Handler) -> tuple[_Pattern, ...]:
    """V2 per-model routes with their Triton extensions, explanations and feedback."""
    return (
        ("GET", "v2/models/{}", v2.model_metadata, "infer"),
        ("GET", "v2/models/{}/ready", v2.model_ready, "infer"),
        ("POST", "v2/models/{}/infer", v2.infer, "infer"),
        ("GET", "v2/models/{}/versions/{}", v2.model_metadata, "infer"),
        ("GET", "v2/models/{}/versions/{}/ready", v2.model_ready, "infer"),
        ("POST", "v2/models/{}/versions/{}/infer", v2.infer, "infer"),
        ("POST", "v2/models/{}/explain", rx.explain, "infer"),
        ("POST", "v2/models/{}/versions/{}/explain", rx.explain, "infer"),
        ("GET", "v2/models/{}/explain/{}", rx.job, "infer"),
        ("GET", "v2/models/{}/config", tr.config, "infer"),
        ("GET", "v2/models/{}/versions/{}/config", tr.config, "infer"),
        ("GET", "v2/models/{}/stats", tr.stats, "infer"),
        ("GET", "v2/models/{}/versions/{}/stats", tr.stats, "infer"),
        ("POST", "v2/models/{}/feedback", feedback, "infer"),
        ("POST", "v2/repository/models/{}/load", v2.load, "admin"),
        ("POST", "v2/repository/models/{}/unload", v2.unload, "admin"),
    )


def _tfserving_routes(tf: RestTFServing) -> tuple[_Pattern, ...]:
    """TF-Serving REST: status, metadata and predict by version or label."""
    return (
        ("GET", "v1/models/{}", tf.status, "infer"),
        ("GET", "v1/models/{}/metadata", tf.metadata, "infer"),
        ("GET", "v1/models/{}/versions/{}", tf.status, "infer"),
        ("GET", "v1/models/{}/versions/{}/metadata", tf.metadata, "infer"),
        ("GET", "v1/models/{}/labels/{}", tf.status_label, "infer"),
        ("GET", "v1/models/{}/labels/{}/metadata", tf.metadata_label, "infer"),
        ("POST", "v1/models/{}", tf.predict, "infer"),
        ("POST", "v1/models/{}/versions/{}", tf.predict, "infer"),
        ("POST", "v1/models/{}/labels/{}", tf.predict_label, "infer"),
    )


def _rollout_routes(ro: RestRollouts) -> tuple[_Pattern, ...]:
    """Rollouts: status, start, history and commands (admin)."""
    return (
        ("GET", "v2/rollouts/{}", ro.status, "admin"),
        ("POST", "v2/rollouts/{}", ro.start, "admin"),
        ("GET", "v2/rollouts/{}/history", ro.history, "admin"),
        ("POST", "v2/rollouts/{}/{}", ro.command, "admin"),
    )


def _by_segment_count(
    patterns: tuple[_Pattern, ...],
) -> dict[int, list[tuple[str, tuple[str, ...], Handler, str]]]:
    """``patterns`` split into segments, grouped by how many, in their order (first match wins)."""
    out: dict[int, list[tuple[str, tuple[str, ...], Handler, str]]] = {}
    for method, pattern, handler, role in patterns:
        parts = tuple(pattern.split("/"))
        out.setdefault(len(parts), []).append((method, parts, handler, role))
    return out


def _internal_error(exc: Exception, scope: dict) -> Reply:
    """A 500 in JSON for an unexpected exception, logged with its traceback (call it while
    ``exc`` is being handled)."""
    log.exception("unexpected error on %s %s", scope["method"], scope["path"])
    return 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}"}), _JSON


_WBITS = {b"gzip": 31, b"deflate": 15}  # zlib window bits: gzip header, zlib header
COMPRESS_ABOVE = 1024  # bytes: smaller replies are sent as they are, whatever the client accepts
OFF_LOOP_ABOVE = 256 << 10  # bytes: (de)compressing more takes milliseconds; not on the event loop


async def _off_loop(size: int, work: Callable[..., bytes], *args: Any) -> bytes:
    """``work(*args)`` on a worker thread when ``size`` is large (zlib releases the GIL), so
    other requests are served meanwhile; inline when small (a thread hop costs more)."""
    if size < OFF_LOOP_ABOVE:
        return work(*args)
    return await asyncio.get_running_loop().run_in_executor(None, work, *args)


def accepted_coding(accept: bytes) -> bytes | None:
    """The response coding an ``Accept-Encoding`` header allows: gzip or deflate, the one with the
    higher q-value (gzip on a tie), or None (send the reply as it is)."""
    explicit: dict[bytes, float] = {}
    star = 0.0
    for item in accept.lower().split(b","):
        coding, _, params = item.partition(b";")
        coding, q = coding.strip(), 1.0
        for param in params.split(b";"):
            name, _, value = param.strip().partition(b"=")
            if name == b"q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding == b"*":
            star = q
        elif coding in _WBITS:
            explicit[coding] = q
    gzip, deflate_q = explicit.get(b"gzip", star), explicit.get(b"deflate", star)
    if max(gzip, deflate_q) <= 0:
        return None
    return b"gzip" if gzip >= deflate_q else b"deflate"


def deflate(payload: bytes, coding: bytes) -> bytes:
    """``payload`` compressed for ``Content-Encoding: coding`` (level 1: most of the size gain
    on JSON tensors for a fraction of the time of higher levels)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, _WBITS[coding])
    return packer.compress(payload) + packer.flush()


def inflate(body: bytes, encoding: bytes, limit: int) -> bytes:
    """A gzip or deflate request body (tritonclient's request compression), bounded by ``limit``
    after decompression so a small bomb cannot blow up memory."""
    encoding = encoding.strip().lower()
    if encoding == b"identity":
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise InvalidInput(
            f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; "
            "use gzip, deflate or none"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the {encoding.decode()} request body is corrupt: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed request body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise InvalidInput(f"the {encoding.decode()} request body is truncated")
    return out


class _MethodNotAllowed(Exception):
    pass


def build(registry: Registry, config: ServeConfig, options: ServerOptions) -> tuple[Any, ...]:
    """The parts of a server: (models, metrics, plane, ASGI app)."""
    from modelport.monitoring.metrics import Metrics
    from modelport.serving.llm import LanguageModels
    from modelport.serving.models import ModelSet

    metrics = Metrics()
    models = ModelSet(registry, config, metrics)
    plane = DataPlane(models, timeout=config.request_timeout)
    llm = LanguageModels(registry, options.generation, tuple(r.name for r in config.parsed_refs),
                         budget=options.memory_budget)  # fmt: skip
    app = ServingApp(plane, metrics, options.api_keys, options.max_request_bytes, llm,
                     options.explain, options.limits)  # fmt: skip
    plane.limiter = app.limiter  # gRPC counts against the same limits
    from modelport.monitoring.monitor import Monitor, MonitorOptions

    app.monitor = monitor = Monitor(registry, options.monitor or MonitorOptions())
    plane.observers.append(monitor.observe)
    metrics.collectors.append(monitor.render)
    if getattr(registry, "engine", None) is not None:  # a catalogue (a folder has no dashboard)
        from modelport.ui.app import UiApp

        app.ui = UiApp(registry, options.api_keys, serving=app)
    return models, metrics, plane, app


Started = Callable[[Any, int, int | None], None]  # (models, http port, gRPC port)


async def serve(
    registry: Registry, config: ServeConfig, options: ServerOptions, started: Started | None = None
) -> None:
    """Load the models, serve HTTP (and gRPC) until cancelled or signalled, then unload."""
    import uvicorn

    keys = guard(options.host, options.api_keys or ApiKeys(), options.allow_unauthenticated,
                 options.admin_routes)  # fmt: skip
    options = dataclasses.replace(options, api_keys=keys)
    sock = listen(options.host, options.http_port)
    http_port = sock.getsockname()[1]
    models, _metrics, plane, app = build(registry, config, options)
    asgi: Any = app
    if options.tracing is not None:  # wrapped only when on: the untraced path stays as it is
        from modelport.monitoring.traced import traced_asgi

        asgi = traced_asgi(app, options.tracing)
    http = uvicorn_server(uvicorn.Config(
        asgi, host=options.host, port=http_port, http="httptools", loop="none",
        lifespan="off", access_log=False, log_level="warning", server_header=False,
        date_header=False, timeout_keep_alive=30, proxy_headers=False,
        ssl_context_factory=None if options.tls is None else lambda *_: options.tls.context(),
        timeout_graceful_shutdown=options.drain_timeout,
    ))  # fmt: skip
    grpc_server = grpc_port = None
    stop_on_signals(http)
    try:
        if options.grpc_port is not None:
            from modelport.serving.grpc_v2 import start_grpc

            grpc_server, grpc_port = await start_grpc(
                plane, options.host, options.grpc_port, keys, options.max_request_bytes,
                tracing=options.tracing, tls=options.tls,
            )  # fmt: skip
        await models.start()
        app.explain.warm()
        app.monitor.start()
        http_task = asyncio.ensure_future(http.serve(sockets=[sock]))
        while not http.started and not http_task.done():
            await asyncio.sleep(0.01)
        if http.started and started is not None:
            started(models, http_port, grpc_port)
        await http_task
    finally:
        sock.close()
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        await models.stop()
        app.explain.close()
        app.monitor.stop()
        if app.llm is not None:
            await app.llm.close()
        if options.tracing is not None:
            await asyncio.get_running_loop().run_in_executor(None, options.tracing.shutdown)


def run(
    registry: Registry, config: ServeConfig, options: ServerOptions, started: Started | None = None
) -> None:
    """Blocking entry point of ``modelport serve``: uvloop when installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is part of the serve extra
        asyncio.run(serve(registry, config, options, started))
        return
    uvloop.run(serve(registry, config, options, started))
