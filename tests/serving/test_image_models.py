"""A residual CNN (BatchNorm, residual adds) on 3x96x96 images, registered from PyTorch and
converted to OpenVINO and TFLite, served by a real `modelport serve` to standard clients: every
runtime and every protocol gives the same answers and the same refusals."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.errors import InvalidInput
from modelport.registry import Registry
from modelport.settings import Settings
from tests.image_cnn import images, register_cnn
from tests.serving.test_e2e_tritonclient import Server, start_server

RUNTIMES = ("onnxruntime", "openvino", "litert")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, dict[str, str]]]:
    registry = Registry(Settings(home=tmp_path_factory.mktemp("cnn") / "home", user="tester"))
    try:
        yield registry, register_cnn(registry)
    finally:
        registry.close()


@pytest.fixture(scope="module")
def server(cnn: tuple[Registry, dict[str, str]]) -> Iterator[Server]:
    registry, refs = cnn
    server = start_server(registry, *refs.values())  # cnn:1 (production), cnn:2, cnn:3
    try:
        yield server
    finally:
        code, output = server.stop()
        assert code == 0, output


def reference(registry: Registry, x: np.ndarray, ref: str = "cnn:1") -> np.ndarray:
    runtime = modelport.load(ref, registry=registry)
    try:
        return runtime.predict({"image": np.ascontiguousarray(x)})["logits"]
    finally:
        runtime.close()


def post(server: Server, path: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{server.http}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def v2_json(x: np.ndarray) -> bytes:
    tensor = {"name": "image", "datatype": "FP32", "shape": list(x.shape),
              "data": x.ravel().tolist()}  # fmt: skip
    return json.dumps({"inputs": [tensor]}).encode()


def version(ref: str) -> str:
    return ref.rpartition(":")[2]


# -- every runtime takes what callers have -------------------------------------------------------


@pytest.mark.parametrize("runtime_name", RUNTIMES)
def test_every_runtime_takes_read_only_strided_and_foreign_order_inputs(
    cnn: tuple[Registry, dict[str, str]], runtime_name: str, tmp_path: Path
) -> None:
    registry, refs = cnn
    runtime = modelport.load(refs[runtime_name], registry=registry)
    x = images(3, seed=4)
    want = runtime.predict({"image": x})["logits"]
    np.save(tmp_path / "x.npy", x)
    wide = np.repeat(x, 2, axis=3)  # every other column is x again
    variants = {
        "frombuffer (read-only)": np.frombuffer(x.tobytes(), np.float32).reshape(x.shape),
        "mmap_mode='r'": np.load(tmp_path / "x.npy", mmap_mode="r"),
        "strided slice": wide[..., ::2],
        "Fortran order": np.asfortranarray(x),
        "big-endian": x.astype(">f4"),
    }
    assert not variants["frombuffer (read-only)"].flags.writeable
    assert not variants["strided slice"].flags.c_contiguous
    try:
        for what, variant in variants.items():
            got = runtime.predict({"image": variant})["logits"]
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=what)
    finally:
        runtime.close()


# -- standard clients against the same CNN on three runtimes ------------------------------------


def test_tritonclient_binary_http_and_grpc_agree_within_the_recorded_parity(
    cnn: tuple[Registry, dict[str, str]], server: Server
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    registry, refs = cnn
    x = images(4, seed=7)
    want = reference(registry, x)
    http = httpclient.InferenceServerClient(server.http)
    grpc = grpcclient.InferenceServerClient(server.grpc)
    for runtime_name, ref in refs.items():
        record = registry.resolve(ref)
        atol = record.metrics.get("parity_atol", 1e-5)  # what the conversion recorded
        tensor = httpclient.InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        wanted = [httpclient.InferRequestedOutput("logits", binary_data=True)]
        by_http = http.infer("cnn", [tensor], model_version=version(ref), outputs=wanted)
        tensor = grpcclient.InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        by_grpc = grpc.infer("cnn", [tensor], model_version=version(ref))
        for result in (by_http, by_grpc):
            got = result.as_numpy("logits")
            assert got.shape == (4, 10), runtime_name
            np.testing.assert_allclose(got, want, atol=atol, rtol=0, err_msg=runtime_name)
        assert by_http.get_response()["model_version"] == version(ref)


# -- which version a plain model URL reaches ----------------------------------------------------


def test_a_plain_url_reaches_the_production_version(
    cnn: tuple[Registry, dict[str, str]], server: Server
) -> None:
    registry, refs = cnn
    x = images(1, seed=3)
    status, body = post(server, "/v2/models/cnn/infer", v2_json(x))
    assert status == 200 and body["model_version"] == "1"  # production, not the newest (3)
    status, body = post(server, "/v1/models/cnn:predict",
                        json.dumps({"instances": x.tolist()}).encode())  # fmt: skip
    np.testing.assert_allclose(body["predictions"], reference(registry, x), atol=1e-5)


def test_the_start_up_table_marks_the_version_plain_urls_reach(
    cnn: tuple[Registry, dict[str, str]], capsys: pytest.CaptureFixture
) -> None:
    from modelport.cli.serve import _started
    from modelport.monitoring.metrics import Metrics
    from modelport.serving.auth import ApiKeys
    from modelport.serving.config import ServeConfig
    from modelport.serving.models import ModelSet

    registry, refs = cnn

    async def main() -> None:
        models = ModelSet(registry, ServeConfig(refs=tuple(refs.values())), Metrics())
        await models.start()
        try:
            _started("127.0.0.1", ApiKeys(), models, 8080, None)
        finally:
            await models.stop()

    asyncio.run(main())
    rows = [line for line in capsys.readouterr().out.splitlines() if "/versions/" in line]
    marked = [line for line in rows if "/v2/models/cnn/infer" in line]
    assert len(rows) == 3 and len(marked) == 1
    assert "production" in marked[0] and "/versions/1/" in marked[0]


# -- one answer for zero rows and for channels-last images --------------------------------------


def refusals(server: Server, x: np.ndarray, ref: str) -> dict[str, tuple[int, str]]:
    """(status, error) of the same input sent over V2 JSON, V2 binary, gRPC and TF Serving."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    out: dict[str, tuple[int, str]] = {}
    n = version(ref)
    status, body = post(server, f"/v2/models/cnn/versions/{n}/infer", v2_json(x))
    out["v2 json"] = status, body.get("error", "")
    status, body = post(server, f"/v1/models/cnn/versions/{n}:predict",
                        json.dumps({"instances": x.tolist()}).encode())  # fmt: skip
    out["tfserving"] = status, body.get("error", "")
    for name, client in (("v2 binary", httpclient), ("grpc", grpcclient)):
        url = server.http if client is httpclient else server.grpc
        tensor = client.InferInput("image", list(x.shape), "FP32")
        if client is httpclient:
            tensor.set_data_from_numpy(x, binary_data=True)
        else:
            tensor.set_data_from_numpy(x)
        try:
            client.InferenceServerClient(url).infer("cnn", [tensor], model_version=n)
            out[name] = 200, ""
        except InferenceServerException as error:
            code = error.status()
            out[name] = (400 if code in ("400", "StatusCode.INVALID_ARGUMENT") else 500,
                         error.message())  # fmt: skip
    return out


def test_zero_rows_get_one_answer_from_every_runtime_and_protocol(
    cnn: tuple[Registry, dict[str, str]], server: Server
) -> None:
    registry, refs = cnn
    empty = np.zeros((0, 3, 96, 96), np.float32)
    for runtime_name, ref in refs.items():
        runtime = modelport.load(ref, registry=registry)
        with pytest.raises(InvalidInput, match="has no rows"):
            runtime.predict({"image": empty})
        runtime.close()
        answers = refusals(server, empty, ref)
        assert answers.pop("tfserving") == (400, "'instances' must be a non-empty list")
        for protocol, (status, error) in answers.items():
            assert status == 400, (runtime_name, protocol, error)
            assert "input 'image' has no rows" in error, (runtime_name, protocol, error)


def test_a_channels_last_image_is_told_about_its_layout(
    cnn: tuple[Registry, dict[str, str]], server: Server
) -> None:
    registry, refs = cnn
    nhwc = images(1).transpose(0, 2, 3, 1).copy()
    for runtime_name, ref in refs.items():
        runtime = modelport.load(ref, registry=registry)
        with pytest.raises(InvalidInput, match=r"looks NHWC .* takes NCHW"):
            runtime.predict({"image": nhwc})
        runtime.close()
        for protocol, (status, error) in refusals(server, nhwc, ref).items():
            assert status == 400, (runtime_name, protocol, error)
            assert "looks NHWC (channels last) but the model takes NCHW" in error, protocol


def test_the_reverse_layout_hint_for_a_channels_last_model() -> None:
    from modelport.signature import TensorSpec

    spec = TensorSpec("image", "float32", (-1, 96, 96, 3))
    with pytest.raises(InvalidInput, match=r"looks NCHW \(channels first\) but the model takes "
                                           r"NHWC: x.transpose\(0, 2, 3, 1\)"):  # fmt: skip
        spec.coerce(np.zeros((1, 3, 96, 96), np.float32))
    with pytest.raises(InvalidInput) as plain:
        spec.coerce(np.zeros((1, 96, 96, 4), np.float32))
    assert "looks" not in str(plain.value)  # no hint when the channels are not the question


# -- out-of-range and non-finite numbers on a real image model ----------------------------------


def test_out_of_range_pixels_are_a_400_and_nan_outputs_are_not_null(
    cnn: tuple[Registry, dict[str, str]], server: Server
) -> None:
    import tritonclient.http as httpclient

    x = images(1)
    x[0, 0, 0, 0] = np.nan
    body = v2_json(x).replace(b"NaN", b"1e308", 1)
    status, reply = post(server, "/v2/models/cnn/infer", body)
    assert status == 400 and "outside the range of float32" in reply["error"]
    http = httpclient.InferenceServerClient(server.http)
    for ref in ("cnn:1", "cnn:2", "cnn:3"):
        tensor = httpclient.InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        wanted = [httpclient.InferRequestedOutput("logits", binary_data=False)]  # JSON out
        result = http.infer("cnn", [tensor], model_version=version(ref), outputs=wanted)
        data = result.get_response()["outputs"][0]["data"]
        assert all(isinstance(v, float) for v in data), (ref, data)  # never a null
        if ref == "cnn:1":  # ONNX Runtime carries the NaN through (OpenVINO's ReLU drops it)
            assert all(math.isnan(v) for v in data) and np.isnan(result.as_numpy("logits")).all()
