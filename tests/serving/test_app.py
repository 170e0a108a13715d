"""The ASGI app's own duties: body limits (413), timeouts (504), routing, a busy port."""

import socket
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

import modelport
from modelport.errors import Conflict, InvalidInput
from modelport.serving.app import listen
from modelport.serving.config import ServeConfig
from tests.serving.conftest import running_app, save_graph, v2_input

pytestmark = pytest.mark.anyio

X = np.ones((1, 4), dtype=np.float32)


async def test_body_over_the_limit_by_content_length_is_413(served_registry) -> None:
    async with running_app(served_registry, max_request_bytes=1024) as client:
        big = {"inputs": [v2_input(np.ones((1, 4), np.float32))], "pad": "x" * 2000}
        response = await client.post("/v2/models/mlp/infer", json=big)
        assert response.status_code == 413 and "limit" in response.json()["error"]
        small = await client.post("/v2/models/mlp/infer", json={"inputs": [v2_input(X)]})
        assert small.status_code == 200


async def test_streamed_body_over_the_limit_is_413(served_registry) -> None:
    async def chunks():
        for _ in range(10):
            yield b"x" * 512

    async with running_app(served_registry, max_request_bytes=2048) as client:
        response = await client.post("/v2/models/mlp/infer", content=chunks())
        assert response.status_code == 413 and "error" in response.json()
        tf = await client.post("/v1/models/mlp:predict", content=chunks())
        assert tf.status_code == 413


def make_slow_onnx(path: Path, width: int = 512, depth: int = 16) -> Path:
    """``depth`` square MatMuls: about 8 MFLOP per row, slow for a big batch."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.eye(width, dtype=np.float32)
    nodes, previous = [], "input"
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"m{i}"]))
        previous = f"m{i}"
    nodes.append(helper.make_node("Identity", [previous], ["output"]))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    return save_graph(graph, path)


async def test_request_over_the_timeout_is_504_and_the_server_stays_up(
    sqlite_registry, tmp_path
) -> None:
    modelport.register(make_slow_onnx(tmp_path / "slow.onnx"), "slow", registry=sqlite_registry,
                       alias="production")  # fmt: skip
    config = ServeConfig(request_timeout=0.02)
    async with running_app(sqlite_registry, config=config) as client:
        heavy = np.ones((4096, 512), dtype=np.float32)  # ~34 GFLOP: far beyond 20 ms anywhere
        from tests.serving.test_rest_v2 import binary_headers, binary_request

        body, length = binary_request({"input": ("FP32", heavy)})
        response = await client.post("/v2/models/slow/infer", content=body,
                                     headers=binary_headers(length))  # fmt: skip
        assert response.status_code == 504, response.text
        assert "longer than" in response.json()["error"]
        assert (await client.get("/v2/health/live")).status_code == 200
        light = np.ones((1, 512), dtype=np.float32)
        # the abandoned call may still hold the CPU for seconds on a loaded machine
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ok = await client.post("/v2/models/slow/infer", json={"inputs": [v2_input(light)]})
            if ok.status_code == 200:
                break
            assert ok.status_code == 504, ok.text
            await anyio.sleep(0.1)
        assert ok.status_code == 200, ok.text


async def test_get_requests_need_no_body_and_unknown_paths_are_json_404(client) -> None:
    for path in ("/", "/v3", "/v2/models", "/v2/models/mlp/versions/1/extra/infer"):
        response = await client.get(path)
        assert response.status_code == 404 and "error" in response.json()


def test_listen_on_a_busy_port_is_a_clear_conflict() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Conflict, match=f"127.0.0.1:{port}"):
            listen("127.0.0.1", port)


def test_cli_size_parsing() -> None:
    from modelport.cli.serve import parse_size

    assert parse_size("64MiB") == 64 << 20
    assert parse_size("1048576") == 1 << 20
    assert parse_size("1.5kb") == 1500
    for bad in ("lots", "-1", "0", "5 parsecs"):
        with pytest.raises(InvalidInput):
            parse_size(bad)


async def test_gzip_and_deflate_request_bodies(client) -> None:
    import gzip
    import json
    import zlib

    body = json.dumps({"inputs": [v2_input(X)]}).encode()
    plain = await client.post("/v2/models/mlp/infer", content=body)
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        response = await client.post("/v2/models/mlp/infer", content=packed,
                                     headers={"Content-Encoding": encoding})  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json() == plain.json()
    corrupt = await client.post("/v2/models/mlp/infer", content=b"not gzip",
                                headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert corrupt.status_code == 400 and "corrupt" in corrupt.json()["error"]
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        cut = await client.post("/v2/models/mlp/infer", content=packed[: len(packed) // 2],
                                headers={"Content-Encoding": encoding})  # fmt: skip
        assert cut.status_code == 400 and "is truncated" in cut.json()["error"], cut.text
    unknown = await client.post("/v2/models/mlp/infer", content=body,
                                headers={"Content-Encoding": "br"})  # fmt: skip
    assert unknown.status_code == 400 and "not supported" in unknown.json()["error"]


async def test_a_small_compressed_body_that_inflates_past_the_limit_is_413(served_registry) -> None:
    import gzip

    bomb = gzip.compress(b" " * (4 << 20))  # 4 MiB of spaces, a few KiB compressed
    async with running_app(served_registry, max_request_bytes=1 << 20) as client:
        response = await client.post("/v2/models/mlp/infer", content=bomb,
                                     headers={"Content-Encoding": "gzip"})  # fmt: skip
        assert len(bomb) < 1 << 20
        assert response.status_code == 413 and "decompressed" in response.json()["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-key", "admin:short"], "at least 8 characters"),
        (["--api-key", "owner:long-enough-key"], "ROLE:KEY"),
        (["bad$ref"], "is not valid"),
        (["--policy", "latest:x"], "version policy"),
        (["--max-request-size", "lots"], "byte count"),
    ],
)
def test_serve_refuses_bad_arguments_with_one_line(tmp_path, args, message) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "modelport", "--home", str(tmp_path), "serve", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        (b"gzip", b"gzip"),
        (b"deflate", b"deflate"),
        (b"gzip, deflate, br", b"gzip"),
        (b"gzip;q=0.2, deflate;q=0.8", b"deflate"),
        (b"GZIP ; q=1.0", b"gzip"),
        (b"*", b"gzip"),
        (b"gzip;q=0, *;q=0.5", b"deflate"),
        (b"identity", None),
        (b"br, zstd", None),
        (b"gzip;q=0", None),
        (b"gzip;q=oops", None),
        (b"", None),
    ],
)
def test_accept_encoding_picks_the_reply_coding(accept: bytes, coding: bytes | None) -> None:
    from modelport.serving.app import accepted_coding

    assert accepted_coding(accept) == coding


async def test_large_replies_are_compressed_as_the_client_accepts(client) -> None:
    import gzip
    import zlib

    from modelport.serving.app import COMPRESS_ABOVE

    x = np.random.default_rng(0).random((200, 4), dtype=np.float32)
    body = {"inputs": [v2_input(x)]}
    plain = await client.post("/v2/models/mlp/infer", json=body,
                              headers={"Accept-Encoding": "identity"})  # fmt: skip
    assert "content-encoding" not in plain.headers and len(plain.content) > COMPRESS_ABOVE
    unpack = {"gzip": gzip.decompress, "deflate": zlib.decompress}
    for accept, coding in (("gzip", "gzip"), ("deflate", "deflate"),
                           ("gzip;q=0.1, deflate", "deflate")):  # fmt: skip
        request = client.build_request("POST", "/v2/models/mlp/infer", json=body,
                                       headers={"Accept-Encoding": accept})  # fmt: skip
        response = await client.send(request, stream=True)
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        assert response.headers["content-encoding"] == coding
        assert response.headers["vary"] == "accept-encoding"
        assert int(response.headers["content-length"]) == len(raw) < len(plain.content) / 1.5
        assert unpack[coding](raw) == plain.content
    metrics = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert metrics.headers["content-encoding"] == "gzip" and "modelport_" in metrics.text
    small = await client.get("/v2/health/ready", headers={"Accept-Encoding": "gzip"})
    assert small.status_code == 200 and "content-encoding" not in small.headers


async def test_large_bodies_are_compressed_and_inflated_off_the_event_loop(
    client, monkeypatch
) -> None:
    import gzip
    import json
    import threading

    from modelport.serving import app

    threads = []
    for name in ("deflate", "inflate"):
        real = getattr(app, name)

        def spy(*args, real=real, name=name):
            threads.append((name, len(args[0]), threading.current_thread()))
            return real(*args)

        monkeypatch.setattr(app, name, spy)
    x = np.random.default_rng(1).random((20000, 4), dtype=np.float32)  # a reply over OFF_LOOP_ABOVE
    body = json.dumps({"inputs": [v2_input(x)]}).encode()
    assert len(body) > app.OFF_LOOP_ABOVE
    plain = await client.post("/v2/models/mlp/infer", content=body)
    response = await client.post("/v2/models/mlp/infer", content=gzip.compress(body),
                                 headers={"Content-Encoding": "gzip",
                                          "Accept-Encoding": "gzip"})  # fmt: skip
    assert response.status_code == 200 and response.json() == plain.json()
    small = await client.post("/v2/models/mlp/infer", json={"inputs": [v2_input(X)]},
                              headers={"Content-Encoding": "identity"})  # fmt: skip
    assert small.status_code == 200
    main = threading.current_thread()
    by_name = {}
    for name, size, thread in threads:
        by_name.setdefault(name, []).append((size, thread is main))
    # a compressed request may inflate to the body limit: always on a worker thread
    assert by_name["inflate"] and not any(inline for _, inline in by_name["inflate"])
    # a reply is compressed inline only when small
    assert by_name["deflate"] and all(
        inline == (size < app.OFF_LOOP_ABOVE) for size, inline in by_name["deflate"]
    )
    assert any(size >= app.OFF_LOOP_ABOVE for size, _ in by_name["deflate"])
