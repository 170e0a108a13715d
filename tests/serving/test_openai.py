"""The unmodified openai client against a real ``modelport serve`` on a loopback port."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from modelport.api import register
from modelport.registry import Registry
from modelport.settings import Settings
from tests.generation.conftest import build_bert, smollm2_path
from tests.serving.test_e2e_tritonclient import Server, start_server


@pytest.fixture(scope="module")
def llm_registry(tmp_path_factory) -> Iterator[Registry]:
    from modelport.conversion.encoder import convert_encoder

    tmp = tmp_path_factory.mktemp("openai")
    reg = Registry(Settings(home=tmp / "home", user="tester"))
    register(smollm2_path(), "smol", registry=reg)
    register(smollm2_path(), "smol", registry=reg, alias="stable")
    register(build_bert(tmp / "bert"), "bert", registry=reg)
    convert_encoder(reg, "bert:1")
    yield reg
    reg.close()


@pytest.fixture(scope="module")
def server(llm_registry: Registry) -> Iterator[Server]:
    server = start_server(
        llm_registry,
        "--slots",
        "2",
        "--context",
        "512",
        "--max-queue",
        "1",
        "--intra-op-threads",
        "1",
    )
    yield from stopped_cleanly(server)


def stopped_cleanly(server: Server) -> Iterator[Server]:
    """A module fixture's body: the server, then a check that it stopped with exit code 0."""
    try:
        yield server
    finally:
        code, output = server.stop()
        assert code == 0, output


def openai_client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{server.http}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def client(server: Server):
    return openai_client(server)


def metric(server: Server, name: str) -> float:
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)
    return sum(float(v) for v in found)


def test_models_list(client) -> None:
    ids = {m.id for m in client.models.list().data}
    assert ids == {"smol", "bert"}


def test_chat_completion_greedy_is_deterministic(client) -> None:
    ask = dict(
        model="smol",
        messages=[{"role": "user", "content": "What is 2+2?"}],
        max_tokens=16,
        temperature=0,
    )
    first = client.chat.completions.create(**ask)
    second = client.chat.completions.create(**ask)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.content.strip()
    assert first.choices[0].message.role == "assistant"
    assert first.usage.completion_tokens <= 16 and first.usage.prompt_tokens > 5
    assert first.choices[0].finish_reason in ("stop", "length")


def test_chat_stream_matches_the_non_streamed_answer_and_reports_usage(client) -> None:
    ask = dict(
        model="smol:2",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12,
        temperature=0,
    )
    whole = client.chat.completions.create(**ask)
    chunks = list(
        client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_model_references_by_version_and_alias(client) -> None:
    for ref in ("smol", "smol:1", "smol@stable"):
        reply = client.completions.create(model=ref, prompt="Hello", max_tokens=3, temperature=0)
        assert reply.model == ref and reply.usage.completion_tokens == 3


def test_completions_seed_n_and_stop(client) -> None:
    sampled = dict(model="smol", prompt="Once upon a time", max_tokens=12, temperature=1.0)
    a = client.completions.create(**sampled, seed=5, n=2)
    b = client.completions.create(**sampled, seed=5, n=2)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert len(a.choices) == 2 and [c.index for c in a.choices] == [0, 1]
    full = (
        client.completions.create(
            model="smol", prompt="Once upon a time", max_tokens=24, temperature=0
        )
        .choices[0]
        .text
    )
    stop = full[8:11]
    cut = client.completions.create(
        model="smol", prompt="Once upon a time", max_tokens=24, temperature=0, stop=[stop]
    )
    assert cut.choices[0].text == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="smol",
        prompt="Once upon a time",
        max_tokens=24,
        temperature=0,
        stop=[stop],
        stream=True,
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == cut.choices[0].text


def test_embeddings_float_and_base64_are_bit_identical(client) -> None:
    texts = ["a sentence", "another sentence", "third"]
    floats = client.embeddings.create(model="bert:2", input=texts, encoding_format="float")
    packed = client.embeddings.create(model="bert:2", input=texts)  # the SDK asks for base64
    a = np.array([d.embedding for d in floats.data], dtype=np.float32)
    b = np.array([d.embedding for d in packed.data], dtype=np.float32)
    assert a.shape == (3, 64) and np.array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    single = client.embeddings.create(model="bert:2", input="third", encoding_format="float")
    np.testing.assert_allclose(single.data[0].embedding, a[2], atol=1e-5)
    assert floats.usage.prompt_tokens > 3


@pytest.mark.parametrize(
    ("route", "body", "status", "needle"),
    [
        (
            "chat.completions",
            {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
            404,
            "not found",
        ),
        (
            "chat.completions",
            {"model": "bert:2", "messages": [{"role": "user", "content": "x"}]},
            400,
            "feature-extraction",
        ),
        ("chat.completions", {"model": "smol", "messages": [{"content": "x"}]}, 400, "role"),
        (
            "chat.completions",
            {"model": "smol", "messages": [{"role": "bot", "content": "x"}]},
            400,
            "not one of",
        ),
        (
            "chat.completions",
            {"model": "smol", "messages": [{"role": "user", "content": 1}]},
            400,
            "must be a string",
        ),
        ("chat.completions", {"model": "smol", "messages": []}, 400, "non-empty"),
        ("completions", {"model": "smol", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ("completions", {"model": "smol", "prompt": "x", "max_tokens": 5000}, 400, "context"),
        ("completions", {"model": "smol", "prompt": "word " * 700}, 400, "context"),
        ("completions", {"model": "smol", "prompt": "x", "n": 50}, 400, "'n'"),
        ("completions", {"model": "smol", "prompt": "x", "temperature": 3}, 400, "temperature"),
        ("completions", {"model": "smol", "prompt": "x", "top_p": 0}, 400, "top_p"),
        ("completions", {"model": "smol", "prompt": 5}, 400, "prompt"),
        (
            "chat.completions",
            {
                "model": "smol",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "xml"},
            },
            400,
            "response_format",
        ),
        ("embeddings", {"model": "bert:2", "input": []}, 400, "input"),
        ("embeddings", {"model": "bert:2", "input": ""}, 400, "input"),
        ("embeddings", {"model": "smol", "input": "x"}, 400, "text-generation"),
    ],
)
def test_bad_input_gets_openai_errors(client, route, body, status, needle) -> None:
    call = client.chat.completions if route == "chat.completions" else getattr(client, route)
    with pytest.raises(openai.APIStatusError) as info:
        call.create(**body)
    assert info.value.status_code == status
    error = info.value.body
    assert needle in error["message"] and error["type"]
    assert set(error) >= {"message", "type", "param", "code"}


def test_invalid_json_is_a_400(server: Server) -> None:
    request = urllib.request.Request(
        f"http://{server.http}/v1/chat/completions",
        data=b"{nope",
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert "not valid JSON" in json.loads(info.value.read())["error"]["message"]


def test_disconnect_frees_the_slot_and_the_queue_answers_429(client, server) -> None:
    long = dict(model="smol", prompt="Count: 1, 2, 3,", max_tokens=400, temperature=0)
    streams = [client.completions.create(**long, stream=True) for _ in range(2)]
    for s in streams:
        next(iter(s))  # both slots are decoding
    assert metric(server, "modelport_generation_running_sequences") == 2
    short = {**long, "max_tokens": 2}
    queued = threading.Thread(target=lambda: client.completions.create(**short))
    queued.start()
    deadline = time.monotonic() + 30
    while metric(server, "modelport_generation_queued_sequences") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(openai.RateLimitError) as info:
        client.completions.create(**long)
    assert info.value.response.headers["retry-after"] == "1"
    for s in streams:
        s.response.close()  # the client goes away mid-stream
    queued.join(timeout=60)
    assert not queued.is_alive()  # the queued request started once a slot was freed
    deadline = time.monotonic() + 30
    while metric(server, "modelport_generation_running_sequences") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_metrics_use_the_genai_names(client, server) -> None:
    client.completions.create(model="smol", prompt="Hi", max_tokens=4, temperature=0)
    assert metric(server, "gen_ai_server_time_to_first_token_seconds_count") >= 1
    assert metric(server, "gen_ai_server_time_per_output_token_seconds_count") >= 1
    assert metric(server, "gen_ai_usage_output_tokens_total") >= 4
    assert metric(server, "gen_ai_usage_input_tokens_total") >= 1
