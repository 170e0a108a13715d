"""OpenTelemetry traces of inference requests: receive, queue, batch, compute and send.

    tracing = Tracing.from_environment(os.environ)   # None when tracing is off
    parent = tracing.sample(traceparent)             # None: this request is not traced
    trace = tracing.begin("POST /v2/models/digits/infer", parent)
    token = TRACE.set(trace)                         # the data plane and the model stamp it
    ...
    tracing.finish(trace)                            # the spans, exported in the background

Tracing is on when the environment names an exporter the OpenTelemetry way:
``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``) or an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``;
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turns it off. The sampler is
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (default ``parentbased_always_on``); the
OTLP protocol, endpoint, headers, batch processor and resource (``OTEL_SERVICE_NAME``) are read by
the OpenTelemetry SDK itself.

Off, nothing of OpenTelemetry is imported and the request path is unchanged: transports are
wrapped only when tracing is on (``asgi``, ``grpc_interceptor`` in traced.py). On, the sampling
decision is made first and costs a random number and, with a W3C ``traceparent``, one parse; only
sampled requests carry a ``RequestTrace``, a few timestamps turned into spans once the reply is
sent. A malformed ``traceparent`` is ignored: the request starts a new trace.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from contextvars import ContextVar
from time import perf_counter
from typing import Any

from modelport.errors import InvalidInput
from modelport.monitoring.sampling import Sampler, parse_traceparent

TRACE: ContextVar[RequestTrace | None] = ContextVar("modelport_trace", default=None)
NEW_TRACE: tuple = ()  # a sampled request without a (valid) traceparent


class RequestTrace:
    """The timestamps (``perf_counter``) of one sampled request; spans are made from them at the
    end. ``plane_in``/``plane_out``: the data plane got the decoded request / gave its reply;
    ``replying``: the reply started; ``status``: HTTP-like (500 and up mark the span an error)."""

    __slots__ = ("name", "context", "parent", "start", "plane_in", "plane_out", "replying",
                 "stages", "status", "error", "attributes")  # fmt: skip

    def __init__(self, name: str, context: Any, parent: Any, start: float,
                 attributes: dict[str, Any]) -> None:  # fmt: skip
        self.name = name
        self.context = context  # the server span's SpanContext
        self.parent = parent  # the caller's (remote) SpanContext, None for a new trace
        self.start = start
        self.plane_in = self.plane_out = self.replying = None
        self.stages: list[tuple[str, float, float, dict[str, Any]]] = []
        self.status: int | None = None
        self.error: str | None = None
        self.attributes = attributes

    @property
    def trace_id(self) -> str:
        """The W3C trace id (32 hex digits), as payload logs carry it."""
        return format(self.context.trace_id, "032x")

    def entered(self, model: str, version: int) -> None:
        """The data plane has the decoded request for ``model`` ``version``."""
        self.plane_in = perf_counter()
        self.attributes["modelport.model"] = model
        self.attributes["modelport.version"] = version

    def answered(self) -> None:
        self.plane_out = perf_counter()

    def computed(self, submitted: float, started: float, ended: float, rows: int) -> None:
        """One runtime call of this request alone: waited from ``submitted`` to ``started`` (no
        queue span when it did not wait: a call run inline, on the event loop)."""
        if started > submitted:
            self.stages.append(("queue", submitted, started, {}))
        self.stages.append(("compute", started, ended, {"modelport.rows": rows}))

    def batched(self, submitted: float, flushed: float, started: float, ended: float, rows: int,
                requests: int) -> None:  # fmt: skip
        """This request joined a batch at ``submitted``; the batch closed at ``flushed`` and its
        one runtime call (``rows`` rows of ``requests`` requests) ran from ``started``."""
        self.stages.append(("queue", submitted, flushed, {}))
        attributes = {"modelport.batch.rows": rows, "modelport.batch.requests": requests}
        self.stages.append(("batch", flushed, ended, attributes))
        self.stages.append(("compute", started, ended, {"modelport.rows": rows}))


class Tracing:
    """The span processor (batching to the SDK's exporter) and the sampler; ``begin`` and
    ``finish`` a request's trace. Every span's times are known when the request ends, so its
    spans are handed to the processor finished, with ids drawn as the SDK draws them (a quarter
    of the cost of starting and ending each through a tracer)."""

    def __init__(self, provider: Any, processor: Any, sampler: Sampler) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.provider = provider
        self.sampler = sampler
        self._processor = processor
        self._trace = trace
        self._finished = ReadableSpan
        self._resource = _hashed_once(provider.resource)
        self._scope = InstrumentationScope("modelport")
        self._sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        self._epoch = time.time_ns() - int(perf_counter() * 1e9)  # perf_counter -> Unix ns

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Tracing | None:
        """Tracing as the standard ``OTEL_*`` settings in ``environ`` ask, None when off."""
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        named = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        if exporter == "none" or (not exporter and not named):
            return None
        sampler = Sampler(environ.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on",
                          environ.get("OTEL_TRACES_SAMPLER_ARG"))  # fmt: skip
        protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")  # fmt: skip
        service = environ.get("OTEL_SERVICE_NAME") or "modelport"
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if endpoint is None and base and protocol.strip().lower() == "http/protobuf":
            endpoint = base.rstrip("/") + "/v1/traces"  # the signal's path, as the spec says
        provider, processor = _provider(exporter or "otlp", protocol.strip().lower(), service,
                                        endpoint or base)  # fmt: skip
        return cls(provider, processor, sampler)

    def sample(self, traceparent: str | bytes | None) -> tuple | None:
        """None when a request with this ``traceparent`` is not traced, else its parsed parent
        (``NEW_TRACE`` when it starts a trace): the only work done for unsampled requests."""
        parent = parse_traceparent(traceparent) if traceparent is not None else None
        if not self.sampler.sample(parent):
            return None
        return parent or NEW_TRACE

    def begin(self, name: str, parent: tuple, attributes: dict[str, Any] | None = None,
              start: float | None = None) -> RequestTrace:  # fmt: skip
        """The trace of a sampled request (a server span), begun at ``start`` (now)."""
        start = perf_counter() if start is None else start
        trace, remote = self._trace, None
        if parent:
            remote = trace.SpanContext(int(parent[0], 16), int(parent[1], 16), True,
                                       trace.TraceFlags(1 if parent[2] else 0))  # fmt: skip
        trace_id = remote.trace_id if remote is not None else random.getrandbits(128) or 1
        context = trace.SpanContext(trace_id, random.getrandbits(64) or 1, False, self._sampled)
        return RequestTrace(name, context, remote, start, attributes or {})

    def finish(self, trace: RequestTrace) -> None:
        """End the request's span, with a child span per stage: receive, queue, batch, compute,
        send (``compute`` under ``batch`` when batched)."""
        end, parent = perf_counter(), trace.context
        received = trace.plane_in or trace.replying or end
        self._child("receive", parent, trace.start, received, {})
        batch = parent
        for name, start, stop, attributes in trace.stages:
            child = self._child(name, batch if name == "compute" else parent, start, stop,
                                attributes)  # fmt: skip
            if name == "batch":
                batch = child
        sending = trace.plane_out or trace.replying or received
        self._child("send", parent, sending, end, {})
        status = None
        if (trace.status or 0) >= 500 or (trace.status is None and trace.error is not None):
            from opentelemetry.trace import Status, StatusCode

            status = Status(StatusCode.ERROR, trace.error or str(trace.status))
        self._end(trace.name, trace.context, trace.parent, trace.start, end, trace.attributes,
                  self._trace.SpanKind.SERVER, status)  # fmt: skip

    def _child(self, name: str, parent: Any, start: float, end: float, attributes: dict) -> Any:
        """A finished stage span under ``parent`` (a span context); returns its context."""
        context = self._trace.SpanContext(parent.trace_id, random.getrandbits(64) or 1, False,
                                          self._sampled)  # fmt: skip
        self._end(name, context, parent, start, end, attributes)
        return context

    def _end(self, name: str, context: Any, parent: Any, start: float, end: float,
             attributes: dict, kind: Any = None, status: Any = None) -> None:  # fmt: skip
        extra = {} if status is None else {"status": status}
        self._processor.on_end(self._finished(
            name, context, parent, self._resource, attributes,
            kind=kind or self._trace.SpanKind.INTERNAL, start_time=self._ns(start),
            end_time=self._ns(max(end, start)), instrumentation_scope=self._scope, **extra,
        ))  # fmt: skip

    def _ns(self, stamp: float) -> int:
        return self._epoch + int(stamp * 1e9)

    def shutdown(self) -> None:
        """Export what is buffered, then stop the exporter."""
        self.provider.shutdown()


def _hashed_once(resource: Any) -> Any:
    """The same resource with its hash computed once: the OTLP encoder groups every span by
    resource, and a Resource hashes by serialising its attributes to JSON each time."""
    digest = hash(resource)

    class Resource(type(resource)):
        def __hash__(self) -> int:
            return digest

    return Resource(dict(resource.attributes), resource.schema_url)


def _provider(exporter: str, protocol: str, service: str, endpoint: str | None) -> tuple:
    """A tracer provider exporting every span it is given (sampling happened before), and its
    batching span processor."""
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        from modelport.errors import MissingDependency

        raise MissingDependency("opentelemetry-sdk", "tracing") from None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter: Any = ConsoleSpanExporter()
    elif exporter != "otlp":
        raise InvalidInput(f"OTEL_TRACES_EXPORTER {exporter!r} is not one of otlp, console, none")
    elif protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=endpoint)
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=endpoint)
    else:
        raise InvalidInput(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not grpc or http/protobuf")
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), sampler=ALWAYS_ON
    )
    processor = BatchSpanProcessor(span_exporter)  # OTEL_BSP_* settings: queue, delay, batch
    provider.add_span_processor(processor)
    return provider, processor
