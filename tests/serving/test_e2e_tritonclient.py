"""Unmodified standard clients against a real `modelport serve` process on loopback ports."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from modelport.registry import Registry
from tests.ports import PortTaken, on_free_ports, taken

X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)


@dataclass
class Server:
    process: subprocess.Popen
    http: str
    grpc: str

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return self.process.returncode, out


def start_server(
    registry: Registry | Path, *args: str, env: dict | None = None,
    tls: ssl.SSLContext | None = None,
) -> Server:  # fmt: skip
    """``modelport serve`` on free ports over ``registry`` (or a home folder), ready in 120 s;
    ``tls`` is the client context that checks readiness over HTTPS. A port taken by another
    process between choosing it and the server's bind is tried again with fresh ports."""
    home = registry if isinstance(registry, Path) else registry.settings.home

    def start(http_port: int, grpc_port: int) -> Server:
        command = [sys.executable, "-m", "modelport", "--home", str(home), "serve",
                   "--http-port", str(http_port), "--grpc-port", str(grpc_port), *args]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env={**os.environ, **(env or {})})  # fmt: skip
        server = Server(process, f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}")
        output = _wait_ready(server, f"{'https' if tls else 'http'}://{server.http}", tls)
        if output is None:
            return server
        if taken(output):
            raise PortTaken(output)
        raise AssertionError(f"the server exited: {output}")

    return on_free_ports(start, count=2)


def _wait_ready(server: Server, base: str, tls: ssl.SSLContext | None) -> str | None:
    """None once ``server`` answers ready; its output if it exited first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return server.process.communicate()[0]
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1, context=tls):
                return None
        except OSError:
            time.sleep(0.1)
    code, output = server.stop()
    raise AssertionError(f"the server did not become ready in 120 s (exit {code}): {output}")


@pytest.fixture(scope="module")
def server(served_registry: Registry) -> Iterator[Server]:
    server = start_server(served_registry)
    try:
        yield server
    finally:
        code, output = server.stop()
        assert code == 0, output
        assert "listening on" in output and "stopped" in output


def test_tritonclient_http(server: Server) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "2")
    assert not client.is_model_ready("nope")
    assert client.get_server_metadata()["name"] == "modelport"
    meta = client.get_model_metadata("mlp")
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 4]}
    results = {}
    for binary in (False, True):
        tensor = httpclient.InferInput("input", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X, binary_data=binary)
        wanted = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
        result = client.infer("mlp", [tensor], outputs=wanted, request_id=f"r-{binary}")
        assert result.get_response()["id"] == f"r-{binary}"
        results[binary] = result.as_numpy("probabilities")
    assert results[True].shape == (2, 3) and results[True].dtype == np.float32
    np.testing.assert_array_equal(results[True], results[False])
    version2 = client.infer("mlp", [tensor], model_version="2").as_numpy("probabilities")
    assert not np.allclose(version2, results[True])
    for algorithm in ("gzip", "deflate"):
        packed = client.infer("mlp", [tensor], request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(packed.as_numpy("probabilities"), results[True])


def test_tritonclient_http_compressed_replies(server: Server) -> None:
    import gzip

    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http)
    x = np.random.default_rng(1).random((300, 4), dtype=np.float32)  # a reply of several KiB
    for binary in (False, True):
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
        plain = client.infer("mlp", [tensor], outputs=wanted).as_numpy("probabilities")
        for algorithm in ("gzip", "deflate"):
            packed = client.infer("mlp", [tensor], outputs=wanted,
                                  response_compression_algorithm=algorithm)  # fmt: skip
            np.testing.assert_array_equal(packed.as_numpy("probabilities"), plain)
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [300, 4],
                                   "data": x.ravel().tolist()}]}).encode()  # fmt: skip
    request = urllib.request.Request(f"http://{server.http}/v2/models/mlp/infer", data=body,
                                     headers={"Accept-Encoding": "gzip"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        reply = json.loads(gzip.decompress(response.read()))
    got = np.array(reply["outputs"][0]["data"], np.float32).reshape(300, 3)
    np.testing.assert_allclose(got, plain, rtol=1e-6)


def test_tritonclient_http_bytes_and_errors(server: Server) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(server.http)
    words = np.array([["a", "bc"], ["déf", ""]], dtype=object)
    tensor = httpclient.InferInput("in_string", [2, 2], "BYTES")
    tensor.set_data_from_numpy(words, binary_data=True)
    other = {dt: np.zeros((2, 2), dt) for dt in ("bool", "uint8", "uint16", "uint32", "uint64",
             "int8", "int16", "int32", "int64", "float16", "float32", "float64")}  # fmt: skip
    inputs = [tensor]
    for dt, value in other.items():
        item = httpclient.InferInput(f"in_{dt}", [2, 2], np_to_datatype(value))
        item.set_data_from_numpy(value, binary_data=True)
        inputs.append(item)
    out = client.infer("identity", inputs).as_numpy("out_string")
    assert [[v.decode() for v in row] for row in out] == words.tolist()
    with pytest.raises(InferenceServerException, match="not served"):
        client.infer("nope", [tensor])


def np_to_datatype(value: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(value.dtype)


def test_tritonclient_grpc(server: Server) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server.grpc)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("pair")
    meta = client.get_model_metadata("mlp", as_json=True)
    assert meta["name"] == "mlp" and meta["versions"] == ["1", "2"]
    assert meta["inputs"][0]["datatype"] == "FP32"
    tensor = grpcclient.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    wanted = [grpcclient.InferRequestedOutput("probabilities")]
    result = client.infer("mlp", [tensor], outputs=wanted, request_id="g-1")
    assert result.get_response().id == "g-1"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(server.http)
    json_tensor = httpclient.InferInput("input", list(X.shape), "FP32")
    json_tensor.set_data_from_numpy(X, binary_data=False)
    from_http = http.infer("mlp", [json_tensor]).as_numpy("probabilities")
    np.testing.assert_array_equal(probabilities, from_http)
    with pytest.raises(InferenceServerException, match="not served"):
        client.infer("nope", [tensor])


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_tfserving_documented_request_over_a_socket(server: Server) -> None:
    body = json.dumps({"signature_name": "serving_default", "instances": X.tolist()}).encode()
    status, answer = post(f"http://{server.http}/v1/models/mlp:predict", body)
    assert status == 200 and list(answer) == ["predictions"]
    assert np.array(answer["predictions"]).shape == (2, 3)
    status, answer = post(f"http://{server.http}/v1/models/mlp/labels/staging:predict",
                          json.dumps({"inputs": X.tolist()}).encode())  # fmt: skip
    assert status == 200 and np.array(answer["outputs"]).shape == (2, 3)


def test_bad_input_over_a_socket_is_4xx_and_the_server_stays_up(server: Server) -> None:
    url = f"http://{server.http}/v2/models/mlp/infer"
    assert post(url, b"{broken")[0] == 400
    header = {"Inference-Header-Content-Length": "9999"}
    status, answer = post(url, b'{"inputs": []}' + b" " * 100, header)
    assert status == 400 and "error" in answer
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as response:
        assert b"modelport_requests_total" in response.read()
    with urllib.request.urlopen(f"http://{server.http}/v2/health/live", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "13"  # {"live":true}, not chunked
        assert "Transfer-Encoding" not in response.headers


def test_api_keys_from_the_environment(served_registry: Registry) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    server = start_server(
        served_registry,
        "mlp",
        "--max-request-size",
        "4KiB",
        env={"MODELPORT_API_KEYS": "infer:e2e-infer-key,admin:e2e-admin-key"},
    )
    try:
        client = httpclient.InferenceServerClient(server.http)
        assert client.is_server_live()
        tensor = httpclient.InferInput("input", list(X.shape), "FP32")
        tensor.set_data_from_numpy(X)
        with pytest.raises(InferenceServerException, match="API key"):
            client.infer("mlp", [tensor])
        result = client.infer("mlp", [tensor], headers={"Authorization": "Bearer e2e-infer-key"})
        assert result.as_numpy("probabilities").shape == (2, 3)
        big = np.ones((512, 4), np.float32)
        tensor = httpclient.InferInput("input", list(big.shape), "FP32")
        tensor.set_data_from_numpy(big, binary_data=False)
        with pytest.raises(InferenceServerException, match="limit"):
            client.infer("mlp", [tensor], headers={"X-API-Key": "e2e-infer-key"})
        status, answer = post(f"http://{server.http}/v2/repository/index", b"{}",
                              {"X-API-Key": "e2e-admin-key"})  # fmt: skip
        assert status == 200
        assert {row["name"] for row in answer if row["state"] == "READY"} == {"mlp"}
    finally:
        code, output = server.stop()
    assert code == 0, output


def test_concurrent_clients_with_dynamic_batching_get_their_own_answers(
    served_registry: Registry,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.http as httpclient

    import modelport

    runtime = modelport.load("mlp:1", registry=served_registry)
    server = start_server(served_registry, "mlp:1", "--max-batch-size", "16",
                          "--max-queue-delay-us", "2000")  # fmt: skip
    rng = np.random.default_rng(7)
    samples = [rng.standard_normal((1 + i % 3, 4)).astype(np.float32) for i in range(48)]

    def call(x: np.ndarray) -> np.ndarray:
        client = httpclient.InferenceServerClient(server.http)
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        return client.infer("mlp", [tensor]).as_numpy("probabilities")

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, samples))
        with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        code, output = server.stop()
    assert code == 0, output
    for x, answer in zip(samples, answers, strict=True):
        np.testing.assert_allclose(answer, runtime.predict({"input": x})["probabilities"],
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
    assert "modelport_batch_size" in metrics
