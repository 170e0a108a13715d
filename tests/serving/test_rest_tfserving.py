"""TF Serving REST compatibility: documented request formats get TF Serving's response shapes."""

import numpy as np
import pytest

pytestmark = pytest.mark.anyio

X = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]]
A = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
B = [[0.5, 0.5, 0.5], [2.0, 2.0, 2.0]]


def predict(registry, ref, x):
    import modelport

    return modelport.load(ref, registry=registry).predict({"input": np.float32(x)})["probabilities"]


async def test_status_lists_loaded_versions_like_tf_serving(client) -> None:
    response = await client.get("/v1/models/mlp")
    assert response.status_code == 200
    assert response.json() == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}  # fmt: skip
    one = (await client.get("/v1/models/mlp/versions/1")).json()
    assert [s["version"] for s in one["model_version_status"]] == ["1"]
    staging = (await client.get("/v1/models/mlp/labels/staging")).json()
    assert [s["version"] for s in staging["model_version_status"]] == ["2"]


async def test_metadata_has_the_signature_def_layout(client) -> None:
    body = (await client.get("/v1/models/mlp/metadata")).json()
    assert body["model_spec"] == {"name": "mlp", "signature_name": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["input"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "4", "name": ""},
    ]
    labelled = (await client.get("/v1/models/mlp/labels/staging/metadata")).json()
    assert labelled["model_spec"]["version"] == "2"
    assert (await client.get("/v1/models/mlp/versions/2/metadata")).status_code == 200


async def test_row_format_instances_give_predictions(client, served_registry) -> None:
    response = await client.post(
        "/v1/models/mlp:predict", json={"signature_name": "serving_default", "instances": X}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["predictions"]
    np.testing.assert_allclose(body["predictions"], predict(served_registry, "mlp:1", X),
                               rtol=1e-6)  # fmt: skip


async def test_version_and_label_urls_predict_with_that_version(client, served_registry) -> None:
    expected = predict(served_registry, "mlp:2", X)
    for path in ("/v1/models/mlp/versions/2:predict", "/v1/models/mlp/labels/staging:predict"):
        body = (await client.post(path, json={"instances": X})).json()
        np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)


async def test_named_instances_and_several_outputs(client) -> None:
    instances = [{"a": a, "b": b} for a, b in zip(A, B, strict=True)]
    body = (await client.post("/v1/models/pair:predict", json={"instances": instances})).json()
    assert body == {"predictions": [
        {"sum": list(np.add(a, b)), "product": list(np.multiply(a, b))}
        for a, b in zip(A, B, strict=True)
    ]}  # fmt: skip


async def test_columnar_inputs_give_outputs(client, served_registry) -> None:
    single = (await client.post("/v1/models/mlp:predict", json={"inputs": X})).json()
    assert list(single) == ["outputs"]
    np.testing.assert_allclose(single["outputs"], predict(served_registry, "mlp:1", X), rtol=1e-6)
    pair = (await client.post("/v1/models/pair:predict", json={"inputs": {"a": A, "b": B}})).json()
    expected = {"sum": np.add(A, B).tolist(), "product": np.multiply(A, B).tolist()}
    assert pair == {"outputs": expected}


async def test_tfserving_requests_are_counted_under_their_own_protocol(client) -> None:
    await client.post("/v1/models/mlp:predict", json={"instances": X})
    text = (await client.get("/metrics")).text
    assert 'protocol="tfserving",outcome="success"' in text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/models/mlp:predict", b"{nope", 400, "not valid JSON"),
        ("/v1/models/mlp:predict", b'{"instances": []}', 400, "non-empty"),
        (
            "/v1/models/mlp:predict",
            b'{"signature_name": "other", "instances": [[1,2,3,4]]}',
            400,
            "no signature",
        ),
        (
            "/v1/models/mlp:predict",
            b'{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}',
            400,
            "exactly one",
        ),
        ("/v1/models/mlp:predict", b"{}", 400, "exactly one"),
        ("/v1/models/mlp:predict", b'{"instances": [[1,2,3]]}', 400, "expects 4"),
        ("/v1/models/mlp:predict", b'{"instances": [[1,2,3,4],[1,2]]}', 400, "rectangular"),
        ("/v1/models/mlp:predict", b'{"instances": [["a","b","c","d"]]}', 400, "strings"),
        ("/v1/models/pair:predict", b'{"instances": [{"a": [1,2,3]}]}', 400, "exactly the inputs"),
        ("/v1/models/pair:predict", b'{"inputs": [[1,2,3]]}', 400, "must name"),
        ("/v1/models/nope:predict", b'{"instances": [[1]]}', 404, "not served"),
        ("/v1/models/mlp/labels/canary:predict", b'{"instances": [[1,2,3,4]]}', 404, "canary"),
        ("/v1/models/mlp/versions/5:predict", b'{"instances": [[1,2,3,4]]}', 404, "version 5"),
        ("/v1/models/mlp:classify", b'{"instances": [[1,2,3,4]]}', 404, "classify"),
        ("/v1/models/mlp", b'{"instances": [[1,2,3,4]]}', 404, ":predict"),
    ],
)
async def test_bad_tfserving_requests(client, path, body, status, message) -> None:
    response = await client.post(path, content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert (await client.get("/v1/models/mlp")).status_code == 200


async def test_unknown_model_or_label_status_is_404(client) -> None:
    assert (await client.get("/v1/models/nope")).status_code == 404
    assert (await client.get("/v1/models/mlp/labels/nope")).status_code == 404
    assert (await client.get("/v1/models/mlp/labels/9bad")).status_code == 400


async def test_every_input_dtype_in_columnar_format_with_b64_strings(client) -> None:
    import base64

    from tests.serving.conftest import IDENTITY_DTYPES
    from tests.serving.test_rest_v2 import identity_values

    inputs = {}
    for datatype, dtype in IDENTITY_DTYPES.items():
        values = identity_values(datatype).tolist()
        if dtype == "string":
            values = [[{"b64": base64.b64encode(v.encode()).decode()} for v in row]
                      for row in values]  # fmt: skip
        inputs[f"in_{dtype}"] = values
    response = await client.post("/v1/models/identity:predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    for datatype, dtype in IDENTITY_DTYPES.items():
        assert outputs[f"out_{dtype}"] == identity_values(datatype).tolist(), dtype
