"""Open Inference Protocol REST through the real app and the real ModelSet (in-process ASGI)."""

import json

import numpy as np
import pytest

from tests.serving.conftest import IDENTITY_DTYPES, v2_input

pytestmark = pytest.mark.anyio

X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]], dtype=np.float32)


async def infer(client, body, path="/v2/models/mlp/infer", **kwargs):
    return await client.post(path, json=body, **kwargs)


async def test_health_and_server_metadata(client) -> None:
    live = await client.get("/v2/health/live")
    ready = await client.get("/v2/health/ready")
    meta = await client.get("/v2")
    assert live.status_code == 200 and live.json() == {"live": True}
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert meta.json()["name"] == "modelport"
    assert "binary_tensor_data" in meta.json()["extensions"]


async def test_model_metadata_and_readiness_by_default_and_by_version(client) -> None:
    meta = (await client.get("/v2/models/mlp")).json()
    assert meta["name"] == "mlp" and meta["platform"] == "onnxruntime"
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert (await client.get("/v2/models/mlp/versions/2")).status_code == 200
    assert (await client.get("/v2/models/mlp/ready")).json() == {"name": "mlp", "ready": True}
    assert (await client.get("/v2/models/mlp/versions/2/ready")).status_code == 200


async def test_infer_json_echoes_id_and_matches_onnxruntime(client, served_registry) -> None:
    response = await infer(client, {"id": "req-7", "inputs": [v2_input(X)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-7" and body["model_name"] == "mlp" and body["model_version"] == "1"
    (out,) = body["outputs"]
    assert out["name"] == "probabilities" and out["datatype"] == "FP32" and out["shape"] == [2, 3]
    expected = served_registry_predict(served_registry, "mlp:1", X)
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 3), expected, rtol=1e-6)


def served_registry_predict(registry, ref, x):
    import modelport

    return modelport.load(ref, registry=registry).predict({"input": x})["probabilities"]


async def test_version_url_reaches_the_other_version(client, served_registry) -> None:
    path = "/v2/models/mlp/versions/2/infer"
    body = (await infer(client, {"inputs": [v2_input(X)]}, path)).json()
    assert body["model_version"] == "2"
    expected = served_registry_predict(served_registry, "mlp:2", X)
    got = np.array(body["outputs"][0]["data"]).reshape(2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


async def test_nested_data_gives_the_same_answer_as_flat(client) -> None:
    flat = (await infer(client, {"inputs": [v2_input(X)]})).json()
    nested_input = {"name": "input", "datatype": "FP32", "shape": [2, 4], "data": X.tolist()}
    nested = (await infer(client, {"inputs": [nested_input]})).json()
    assert flat["outputs"] == nested["outputs"]


async def test_requested_outputs_and_their_order(client) -> None:
    a, b = X[:, :3], X[:, 1:]
    body = {
        "inputs": [v2_input(a, "a"), v2_input(b, "b")],
        "outputs": [{"name": "product"}],
    }
    response = (await infer(client, body, "/v2/models/pair/infer")).json()
    assert [o["name"] for o in response["outputs"]] == ["product"]
    np.testing.assert_allclose(np.array(response["outputs"][0]["data"]).reshape(2, 3), a * b)
    body["outputs"] = [{"name": "product"}, {"name": "sum"}]
    response = (await infer(client, body, "/v2/models/pair/infer")).json()
    assert [o["name"] for o in response["outputs"]] == ["product", "sum"]


def binary_request(inputs: dict[str, tuple[str, np.ndarray]], outputs=None, binary_out=True):
    """A binary-extension body: JSON header then raw tensors; returns (body, header length)."""
    from modelport.serving.codecs import to_raw

    tensors, blobs = [], []
    for name, (datatype, array) in inputs.items():
        blob = to_raw(array)
        tensors.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(blob)}})  # fmt: skip
        blobs.append(blob)
    request = {"inputs": tensors, "parameters": {"binary_data_output": binary_out}}
    if outputs is not None:
        request["outputs"] = outputs
    head = json.dumps(request).encode()
    return head + b"".join(blobs), len(head)


def binary_headers(length: int | str) -> dict[str, str]:
    return {"Inference-Header-Content-Length": str(length)}


def parse_binary_response(response) -> dict[str, np.ndarray]:
    from modelport.serving.codecs import decode_tensor

    length = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:length])
    offset, out = length, {}
    for tensor in head["outputs"]:
        if "data" in tensor:
            out[tensor["name"]] = decode_tensor(tensor["name"], tensor["datatype"], tensor["shape"],
                                                data=tensor["data"])  # fmt: skip
            continue
        size = tensor["parameters"]["binary_data_size"]
        raw = response.content[offset : offset + size]
        offset += size
        out[tensor["name"]] = decode_tensor(tensor["name"], tensor["datatype"], tensor["shape"],
                                            raw=raw)  # fmt: skip
    assert offset == len(response.content)
    return out


async def test_binary_request_and_binary_response(client) -> None:
    body, length = binary_request({"input": ("FP32", X)})
    response = await client.post("/v2/models/mlp/infer", content=body,
                                 headers=binary_headers(length))  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    binary = parse_binary_response(response)
    json_out = (await infer(client, {"inputs": [v2_input(X)]})).json()["outputs"][0]["data"]
    np.testing.assert_array_equal(binary["probabilities"].ravel(), np.float32(json_out))


async def test_binary_per_output_flag_mixes_json_and_binary(client) -> None:
    a, b = X[:, :3], X[:, 1:]
    outputs = [{"name": "sum", "parameters": {"binary_data": True}},
               {"name": "product", "parameters": {"binary_data": False}}]  # fmt: skip
    body, length = binary_request({"a": ("FP32", a), "b": ("FP32", b)}, outputs, binary_out=False)
    response = await client.post("/v2/models/pair/infer", content=body,
                                 headers=binary_headers(length))  # fmt: skip
    assert response.status_code == 200, response.text
    out = parse_binary_response(response)
    np.testing.assert_allclose(out["sum"], a + b)
    np.testing.assert_allclose(out["product"], a * b)


def identity_values(datatype: str) -> np.ndarray:
    dtype = IDENTITY_DTYPES[datatype]
    if dtype == "string":
        return np.array([["a", "bc"], ["", "déf"]], dtype=object)
    if dtype == "bool":
        return np.array([[True, False], [False, True]])
    if dtype.startswith("float"):
        return np.array([[0.5, -2.25], [8.0, 1.0]], dtype=dtype)
    info = np.iinfo(dtype)
    return np.array([[info.min, info.max], [0, 1]], dtype=dtype)


async def test_every_datatype_through_a_real_model_in_json(client) -> None:
    arrays = {dt: identity_values(dt) for dt in IDENTITY_DTYPES}
    inputs = [
        {"name": f"in_{IDENTITY_DTYPES[dt]}", "datatype": dt, "shape": [2, 2],
         "data": a.ravel().tolist()}
        for dt, a in arrays.items()
    ]  # fmt: skip
    response = await infer(client, {"inputs": inputs}, "/v2/models/identity/infer")
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    for dt, a in arrays.items():
        out = outputs[f"out_{IDENTITY_DTYPES[dt]}"]
        assert out["datatype"] == dt and out["shape"] == [2, 2]
        assert out["data"] == a.ravel().tolist()


async def test_every_datatype_through_a_real_model_in_binary(client) -> None:
    arrays = {dt: identity_values(dt) for dt in IDENTITY_DTYPES}
    inputs = {f"in_{IDENTITY_DTYPES[dt]}": (dt, a) for dt, a in arrays.items()}
    body, length = binary_request(inputs)
    response = await client.post("/v2/models/identity/infer", content=body,
                                 headers=binary_headers(length))  # fmt: skip
    assert response.status_code == 200, response.text
    out = parse_binary_response(response)
    for dt, a in arrays.items():
        got = out[f"out_{IDENTITY_DTYPES[dt]}"]
        np.testing.assert_array_equal(got, a)
        assert got.dtype == a.dtype


async def test_repository_index_unload_and_load(client) -> None:
    index = (await client.get("/v2/repository/index")).json()
    assert {(row["name"], row["version"], row["state"]) for row in index} >= {
        ("mlp", "1", "READY"),
        ("mlp", "2", "READY"),
        ("pair", "1", "READY"),
    }
    unloaded = await client.post("/v2/repository/models/pair/unload")
    assert unloaded.status_code == 200 and unloaded.json()["unloaded"] is True
    gone = await infer(client, {"inputs": [v2_input(X[:, :3], "a"), v2_input(X[:, :3], "b")]},
                       "/v2/models/pair/infer")  # fmt: skip
    assert gone.status_code in (404, 503) and "error" in gone.json()
    assert (await client.post("/v2/repository/models/pair/load")).status_code == 200
    assert (await client.get("/v2/models/pair/ready")).status_code == 200
    missing = await client.post("/v2/repository/models/nope/load")
    assert missing.status_code == 404 and "error" in missing.json()


async def test_metrics_endpoint_counts_requests_by_protocol(client) -> None:
    series = 'modelport_requests_total{model="mlp",version="1",protocol="rest",outcome="success"}'

    async def count() -> float:
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        for line in response.text.splitlines():
            if line.startswith(series):
                return float(line.split()[-1])
        return 0.0

    before = await count()
    await infer(client, {"inputs": [v2_input(X)]})
    await infer(client, {"inputs": [v2_input(X)]})
    assert await count() == before + 2
    series = series.replace("success", "client_error")
    before = await count()
    await client.post("/v2/models/mlp/infer", content=b"{broken")  # rejected while decoding
    await infer(client, {"inputs": [v2_input(X[:, :3])]})  # rejected by the signature
    assert await count() == before + 2


# -- bad input: always 4xx with {"error": ...}, and the server keeps answering ---------------


BAD = [
    ("malformed JSON", b'{"inputs": [', 400, "not valid JSON"),
    ("not an object", b"[1, 2]", 400, "JSON object"),
    ("missing inputs", b'{"id": "x"}', 400, "'inputs'"),
    ("empty inputs", b'{"inputs": []}', 400, "'inputs'"),
    ("input not an object", b'{"inputs": [3]}', 400, "JSON object"),
    (
        "missing name",
        b'{"inputs": [{"datatype": "FP32", "shape": [1, 4], "data": [1,2,3,4]}]}',
        400,
        "'name'",
    ),
    (
        "unknown input",
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3,4]}]}',
        400,
        "no input 'x'",
    ),
    (
        "missing datatype",
        b'{"inputs": [{"name": "input", "shape": [1, 4], "data": [1,2,3,4]}]}',
        400,
        "is None",
    ),
    (
        "unknown datatype",
        b'{"inputs": [{"name": "input", "datatype": "FP128", "shape": [1, 4], "data": [1,2,3,4]}]}',
        400,
        "FP128",
    ),
    (
        "missing shape",
        b'{"inputs": [{"name": "input", "datatype": "FP32", "data": [1,2,3,4]}]}',
        400,
        "shape",
    ),
    (
        "missing data",
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4]}]}',
        400,
        "no data",
    ),
    (
        "shape product differs from data",
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1,2,3]}]}',
        400,
        "needs 4",
    ),
    (
        "dtype does not match signature",
        b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1,2,3,4]}]}',
        400,
        "expects FP32",
    ),
    (
        "shape does not match signature",
        b'{"inputs": [{"name": "input", "datatype": "FP32", '
        b'"shape": [1, 5], "data": [1,2,3,4,5]}]}',
        400,
        "expects 4",
    ),
    (
        "rank does not match signature",
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [4], "data": [1,2,3,4]}]}',
        400,
        "dimensions",
    ),
    (
        "strings for FP32",
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], '
        b'"data": ["a","b","c","d"]}]}',
        400,
        "rectangular",
    ),
    (
        "duplicate input",
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], '
        b'"data": [1,2,3,4]}, {"name": "input", "datatype": "FP32", "shape": [1, 4], '
        b'"data": [1,2,3,4]}]}',
        400,
        "twice",
    ),
    (
        "unknown requested output",
        b'{"inputs": [{"name": "input", "datatype": "FP32", '
        b'"shape": [1, 4], "data": [1,2,3,4]}], "outputs": [{"name": "nope"}]}',
        400,
        "nope",
    ),
    (
        "outputs not a list",
        b'{"inputs": [{"name": "input", "datatype": "FP32", '
        b'"shape": [1, 4], "data": [1,2,3,4]}], "outputs": {"name": "x"}}',
        400,
        "'outputs'",
    ),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD, ids=[b[0] for b in BAD])
async def test_bad_requests_are_4xx_json_and_the_server_stays_up(client, case, body, status,
                                                                 message) -> None:  # fmt: skip
    response = await client.post("/v2/models/mlp/infer", content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert (await infer(client, {"inputs": [v2_input(X)]})).status_code == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/nope/infer", 404),
        ("/v2/models/mlp/versions/9/infer", 404),
        ("/v2/models/mlp/versions/zero/infer", 404),
        ("/v2/models/%2E%2E/infer", 400),
        ("/v2/models/bad$name/infer", 400),
    ],
)
async def test_unknown_or_invalid_model_and_version(client, path, status) -> None:
    response = await infer(client, {"inputs": [v2_input(X)]}, path)
    assert response.status_code == status, response.text
    assert "error" in response.json()


async def test_unknown_model_metadata_and_readiness_are_404(client) -> None:
    assert (await client.get("/v2/models/nope")).status_code == 404
    assert (await client.get("/v2/models/nope/ready")).status_code == 404
    assert (await client.get("/v2/models/mlp/versions/7/ready")).status_code == 404


@pytest.mark.parametrize(
    ("header", "tail", "message"),
    [
        ("100000", b"", "only"),
        ("abc", b"", "non-negative integer"),
        (None, b"\x00" * 3, "declares 16 bytes"),
        (None, b"\x00" * 20, "no input claims"),
    ],
)
async def test_bad_binary_bodies(client, header, tail, message) -> None:
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                   "parameters": {"binary_data_size": 16}}]}).encode()  # fmt: skip
    body = head + tail
    response = await client.post(
        "/v2/models/mlp/infer", content=body, headers=binary_headers(header or len(head))
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_unknown_route_and_wrong_method(client) -> None:
    missing = await client.get("/v2/nothing/here")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = await client.get("/v2/models/mlp/infer")
    assert wrong.status_code == 405 and "error" in wrong.json()


async def test_readiness_while_a_model_loads() -> None:
    """A stand-in model set that is still loading (the real one is used everywhere else)."""
    import httpx

    from modelport.errors import NotReady
    from modelport.monitoring.metrics import Metrics
    from modelport.serving.app import ServingApp
    from modelport.serving.dataplane import DataPlane

    class Loading:
        metrics = Metrics()

        def get(self, name, version=None, label=None):
            raise NotReady(f"model {name!r} is loading")

        def all_ready(self) -> bool:
            return False

    app = ServingApp(DataPlane(Loading()), Loading.metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
        model = await c.get("/v2/models/mlp/ready")
        assert model.status_code == 400 and model.json() == {"name": "mlp", "ready": False}
        assert (await c.get("/v2/health/ready")).status_code == 503
        assert (await c.get("/v2/health/live")).status_code == 200
        busy = await c.post("/v2/models/mlp/infer", json={"inputs": []})
        assert busy.status_code == 503 and "loading" in busy.json()["error"]


@pytest.mark.parametrize("name", ["%2E%2E", "bad$name", "-dash-first", "x" * 200])
async def test_repository_rejects_invalid_names_before_the_registry(client, name) -> None:
    for action in ("load", "unload"):
        response = await client.post(f"/v2/repository/models/{name}/{action}")
        assert response.status_code == 400, response.text
        assert "error" in response.json()
    assert (await client.get("/v2/models/mlp/ready")).status_code == 200
