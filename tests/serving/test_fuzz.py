"""Random JSON at the inference routes: the answer is never a 5xx, and errors are JSON."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.anyio

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),  # fmt: skip
    max_leaves=30,
)
datatypes = st.one_of(
    st.sampled_from(["BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64",
                     "BYTES", "BF16", "fp32", ""]), json_values,
)  # fmt: skip
shapes = st.one_of(
    st.lists(st.integers(min_value=-2, max_value=6), max_size=4),
    st.lists(st.just(1), min_size=30, max_size=70),  # past numpy's 64 dimensions
    json_values,
)
data = st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=12),
    st.lists(st.lists(st.integers(-300, 300), max_size=5), max_size=4), json_values,
)  # fmt: skip
tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["input", "a", "b", "in_string"]), json_values),
        "datatype": datatypes,
        "shape": shapes,
        "data": data,
        "parameters": st.one_of(
            st.fixed_dictionaries({"binary_data_size": st.integers(-4, 64)}), json_values
        ),
    },
)  # fmt: skip
requests = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(tensors, max_size=3), json_values)},
        optional={
            "id": json_values,
            "outputs": st.one_of(
                st.lists(st.fixed_dictionaries({"name": st.one_of(st.text(max_size=12),
                                                                   json_values)}), max_size=2),
                json_values),
            "parameters": st.one_of(st.just({"binary_data_output": True}), json_values),
        },
    ),
)  # fmt: skip
paths = st.sampled_from([
    "/v2/models/mlp/infer", "/v2/models/pair/infer", "/v2/models/identity/infer",
    "/v2/models/mlp/versions/2/infer", "/v1/models/mlp:predict", "/v1/models/pair:predict",
])  # fmt: skip

ASCII = st.characters(min_codepoint=33, max_codepoint=126)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip


def check(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)


@FUZZ
@given(path=paths, request=requests)
async def test_random_json_never_gives_a_5xx(client, path, request) -> None:
    check(await client.post(path, content=json.dumps(request)))


@FUZZ
@given(request=requests, header=st.one_of(st.integers(-5, 400), st.text(ASCII, max_size=4)),
       tail=st.binary(max_size=48))  # fmt: skip
async def test_random_binary_bodies_never_give_a_5xx(client, request, header, tail) -> None:
    body = json.dumps(request).encode() + tail
    response = await client.post(
        "/v2/models/mlp/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(header)},
    )
    check(response)


@FUZZ
@given(body=st.binary(max_size=64))
async def test_random_bytes_never_give_a_5xx(client, body) -> None:
    check(await client.post("/v2/models/identity/infer", content=body))


@st.composite
def near_valid(draw) -> tuple[str, dict]:
    """A valid model, input name and datatype, data sized to the shape: only the shape is wild."""
    path, name = draw(st.sampled_from([("/v2/models/mlp/infer", "input"),
                                       ("/v2/models/identity/infer", "in_float32")]))  # fmt: skip
    rank = draw(st.sampled_from([0, 1, 2, 3, 33, 64, 65, 70]))
    shape = draw(st.lists(st.integers(0, 4), min_size=rank, max_size=rank))
    count = 1
    for dim in shape:
        count *= dim
    data = draw(st.lists(st.floats(-1, 1, width=32), min_size=min(count, 64),
                         max_size=min(count, 64)))  # fmt: skip
    return path, {"inputs": [{"name": name, "datatype": "FP32", "shape": shape, "data": data}]}


@FUZZ
@given(case=near_valid())
async def test_near_valid_tensors_never_give_a_5xx(client, case) -> None:
    path, request = case
    check(await client.post(path, content=json.dumps(request)))
