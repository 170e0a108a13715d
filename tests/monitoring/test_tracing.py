"""Traces of a real `modelport serve` process reaching a real OTLP/HTTP receiver, parented under
the caller's W3C traceparent; the sampler and the traceparent parser; nothing loaded when off."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

import modelport
from modelport.errors import InvalidInput
from modelport.monitoring.sampling import Sampler, parse_traceparent
from modelport.monitoring.tracing import Tracing
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx
from tests.monitoring.otlp import OtlpReceiver, Span
from tests.serving.conftest import make_pair_onnx, v2_input
from tests.serving.test_e2e_tritonclient import Server, start_server

X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize("value", [
    "", "garbage", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",   # no flags
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",             # upper case
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",             # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",             # zero span id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",             # version ff
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",              # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",       # 00 has 4 fields
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",             # not hex
])  # fmt: skip
def test_a_malformed_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_a_valid_traceparent_is_read() -> None:
    assert parse_traceparent(VALID.encode()) == (TRACE_ID, "00f067aa0ba902b7", True)
    assert parse_traceparent(VALID[:-2] + "00")[2] is False
    future = f"01-{TRACE_ID}-00f067aa0ba902b7-03-more"  # a later version may add fields
    assert parse_traceparent(future) == (TRACE_ID, "00f067aa0ba902b7", True)


def test_samplers_follow_the_opentelemetry_names() -> None:
    sampled, unsampled = parse_traceparent(VALID), parse_traceparent(VALID[:-2] + "00")
    ratio = Sampler("parentbased_traceidratio", "0.1")
    assert ratio.sample(sampled) and not ratio.sample(unsampled)  # the caller decides
    roots = sum(ratio.sample(None) for _ in range(20_000))
    assert 1_600 < roots < 2_400  # 10% of new traces, within 6 standard deviations
    assert not Sampler("always_off").sample(sampled)
    assert Sampler("always_on").sample(unsampled)
    by_id = Sampler("traceidratio", "0.5")  # the trace id's low 64 bits against the ratio
    assert by_id.sample((f"{'0' * 16}{'1' * 16}", "1" * 16, False))
    assert not by_id.sample((f"{'0' * 16}{'f' * 16}", "1" * 16, True))
    for name, arg in (("sometimes", None), ("traceidratio", "2"), ("traceidratio", "half")):
        with pytest.raises(InvalidInput, match="OTEL_TRACES_SAMPLER"):
            Sampler(name, arg)


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert Tracing.from_environment({}) is None
    assert (
        Tracing.from_environment(
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}
        )
        is None
    )
    assert Tracing.from_environment({"OTEL_SDK_DISABLED": "true",
                                     "OTEL_TRACES_EXPORTER": "otlp"}) is None  # fmt: skip
    with pytest.raises(InvalidInput, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        Tracing.from_environment({"OTEL_TRACES_EXPORTER": "otlp",
                                  "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})  # fmt: skip


def test_serving_without_tracing_imports_no_opentelemetry() -> None:
    code = (
        "import sys, os\n"
        "import modelport.cli.serve, modelport.serving.app, modelport.serving.grpc_v2\n"
        "from modelport.monitoring.tracing import Tracing\n"
        "assert Tracing.from_environment(os.environ) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


# -- a real server, a real receiver ----------------------------------------------------------


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, OtlpReceiver]]:
    """`modelport serve` exporting every span over OTLP/HTTP to a receiver in this process;
    ``pair`` batched, ``mlp`` not."""
    tmp = tmp_path_factory.mktemp("traced")
    registry = Registry(Settings(home=tmp / "home", user="tester"))
    modelport.register(make_mlp_onnx(tmp / "mlp.onnx"), "mlp", registry=registry,
                       alias="production")  # fmt: skip
    modelport.register(make_pair_onnx(tmp / "pair.onnx"), "pair", registry=registry,
                       alias="production")  # fmt: skip
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "modelport-test",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        }
        server = start_server(registry, "--batch", "pair=8:2000", env=env)
        try:
            yield server, receiver
        finally:
            code, output = server.stop()
            registry.close()
            assert code == 0, output


def _post(server: Server, path: str, body: dict, traceparent: str | None) -> int:
    headers = {"content-type": "application/json"}
    if traceparent is not None:
        headers["traceparent"] = traceparent
    request = urllib.request.Request(f"http://{server.http}{path}", json.dumps(body).encode(),
                                     headers)  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _trace(receiver: OtlpReceiver, trace_id: str, count: int) -> dict[str, Span]:
    spans = receiver.wait_for(lambda s: sum(x.trace_id == trace_id for x in s) >= count)
    return {s.name: s for s in spans if s.trace_id == trace_id}


def _caller(n: int) -> tuple[str, str, str]:
    trace_id, span_id = f"{n:032x}", f"{n + 1000:016x}"
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def test_v2_rest_spans_are_parented_under_the_callers_span(traced) -> None:
    server, receiver = traced
    trace_id, caller, header = _caller(1)
    assert _post(server, "/v2/models/mlp/infer", {"inputs": [v2_input(X)]}, header) == 200
    spans = _trace(receiver, trace_id, 4)
    root = spans["POST /v2/models/mlp/infer"]
    assert root.parent_id == caller and root.kind == 2  # SERVER
    assert root.service == "modelport-test"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["modelport.model"] == "mlp"
    stages = [name for name in ("receive", "queue", "compute", "send") if name in spans]
    assert {"receive", "compute", "send"} <= set(stages)  # queue: only when the call waited
    for name in stages:
        assert spans[name].parent_id == root.span_id, name
        assert root.start <= spans[name].start <= spans[name].end <= root.end, name
    assert spans["receive"].end <= spans.get("queue", spans["compute"]).start
    if "queue" in spans:
        assert spans["queue"].end <= spans["compute"].start
    assert spans["compute"].end <= spans["send"].start
    assert spans["compute"].attributes["modelport.rows"] == 2


def test_tfserving_and_batched_requests_show_their_batch(traced) -> None:
    server, receiver = traced
    trace_id, caller, header = _caller(2)
    body = {"inputs": {"a": [[1.0, 2.0, 3.0]], "b": [[1.0, 1.0, 1.0]]}}
    assert _post(server, "/v1/models/pair:predict", body, header) == 200
    spans = _trace(receiver, trace_id, 6)
    root = spans["POST /v1/models/pair:predict"]
    assert root.parent_id == caller
    batch = spans["batch"]
    assert batch.parent_id == root.span_id and batch.attributes["modelport.batch.rows"] == 1
    assert spans["compute"].parent_id == batch.span_id
    assert spans["queue"].end <= batch.start


def test_grpc_spans_take_the_traceparent_from_metadata(traced) -> None:
    import grpc

    from modelport.serving.proto import inference_pb2 as pb
    from modelport.serving.proto import inference_pb2_grpc as pb_grpc

    server, receiver = traced
    trace_id, caller, header = _caller(3)
    request = pb.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="input", datatype="FP32", shape=X.shape)
    request.raw_input_contents.append(X.tobytes())
    with grpc.insecure_channel(server.grpc) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(request, metadata=[("traceparent", header)], timeout=10)
        request.inputs[0].shape[:] = [2, 3]  # a wrong shape: answered, traced, not an error span
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(request, metadata=[("traceparent", _caller(4)[2])], timeout=10)
    spans = _trace(receiver, trace_id, 4)
    root = spans["inference.GRPCInferenceService/ModelInfer"]
    assert root.parent_id == caller and root.attributes["rpc.system"] == "grpc"
    assert root.attributes["rpc.grpc.status_code"] == 0
    assert {"receive", "compute", "send"} <= set(spans)
    refused = _trace(receiver, _caller(4)[0], 1)["inference.GRPCInferenceService/ModelInfer"]
    assert refused.attributes["rpc.grpc.status_code"] == 3  # INVALID_ARGUMENT
    assert refused.status != 2


def test_a_malformed_traceparent_starts_a_new_trace(traced) -> None:
    server, receiver = traced
    bad = "00-NOT-A-TRACE-01"
    before = len(receiver.spans)
    assert _post(server, "/v2/models/mlp/infer", {"inputs": [v2_input(X)]}, bad) == 200
    spans = receiver.wait_for(lambda s: any(x.name == "POST /v2/models/mlp/infer"
                                            for x in s[before:]))  # fmt: skip
    [root] = [s for s in spans[before:] if s.name == "POST /v2/models/mlp/infer"]
    assert root.parent_id == "" and len(root.trace_id) == 32 and int(root.trace_id, 16)
    errors = _post(server, "/v2/models/mlp/infer", {"inputs": [v2_input(X[:, :3])]}, VALID)
    assert errors == 400
    refused = _trace(receiver, TRACE_ID, 1)["POST /v2/models/mlp/infer"]
    assert refused.attributes["http.response.status_code"] == 400 and refused.status != 2
