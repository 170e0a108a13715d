"""The unmodified openai client against a real ``modelport serve`` answering from an
onnxruntime-genai model (a tiny Llama converted by the model builder)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest

from modelport.api import register
from modelport.conversion.genai import convert_to_genai
from modelport.errors import InvalidInput, Overloaded
from modelport.generation import EngineOptions, SamplingParams
from modelport.registry import Registry
from modelport.settings import Settings
from tests.generation.conftest import build_causal_lm, smollm2_path
from tests.serving.test_e2e_tritonclient import Server, start_server
from tests.serving.test_llm_protocols import events, post
from tests.serving.test_openai import metric, openai_client, stopped_cleanly


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """tiny:1 (a Llama checkpoint), tiny:2 (its fp32 genai model, alias "onnx"), other:1 and
    other:2 (a Qwen2 likewise), smol:1 (SmolLM2 GGUF, 100 MiB)."""
    tmp = tmp_path_factory.mktemp("genai-serve")
    reg = Registry(Settings(home=tmp / "home", user="tester"))
    try:
        for name, kind in (("tiny", "llama"), ("other", "qwen2")):
            register(build_causal_lm(tmp / name, kind), name, registry=reg)
            convert_to_genai(reg, f"{name}:1", "fp32")
        reg.set_alias("tiny", "onnx", 2)
        register(smollm2_path(), "smol", registry=reg)
    finally:
        reg.close()
    return reg.settings.home


SERVE = ("--slots", "2", "--context", "256", "--intra-op-threads", "1")


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    yield from stopped_cleanly(start_server(home, *SERVE))


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai_client(server)


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fox."}]


def test_models_list_and_references(client) -> None:
    assert "tiny" in {m.id for m in client.models.list().data}
    for ref in ("tiny", "tiny:2", "tiny@onnx"):
        reply = client.completions.create(model=ref, prompt="The fox", max_tokens=3, temperature=0)
        assert reply.model == ref and reply.usage.completion_tokens <= 3


def test_chat_streamed_and_not_agree_with_usage(client) -> None:
    ask = dict(model="tiny:2", messages=CHAT, max_tokens=12, temperature=0)
    whole = client.chat.completions.create(**ask)
    again = client.chat.completions.create(**ask)
    assert whole.choices[0].message.content == again.choices[0].message.content
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert 0 < whole.usage.completion_tokens <= 12 and whole.usage.prompt_tokens > 10
    chunks = list(
        client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_completions_seed_n_and_stop(client) -> None:
    ask = dict(model="tiny:2", prompt="The quick brown", max_tokens=16, temperature=0)
    greedy = client.completions.create(**ask).choices[0].text
    assert len(greedy) > 6
    stop = greedy[3:6]
    cut = client.completions.create(**ask, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and cut.text == greedy[: greedy.index(stop)]
    seeded = dict(ask, temperature=1.0, top_p=0.9, seed=11, n=2)
    first = [c.text for c in client.completions.create(**seeded).choices]
    assert first == [c.text for c in client.completions.create(**seeded).choices]
    streamed = client.completions.create(**ask, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == greedy


def test_chat_logprobs_come_with_each_token(client) -> None:
    reply = client.chat.completions.create(
        model="tiny:2", messages=CHAT, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for item in content:
        assert len(item.top_logprobs) == 3 and item.logprob <= 0
        assert item.logprob == pytest.approx(max(t.logprob for t in item.top_logprobs))  # greedy


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": "x " * 300}, "context is 256 tokens"),
        ({"prompt": "x", "max_tokens": 500}, "max_tokens"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "temperature": 3}, "temperature"),
    ],
)
def test_bad_input_is_an_openai_400(client, body, needle) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny:2", **body)
    assert needle in info.value.body["message"]
    assert client.completions.create(model="tiny:2", prompt="ok", max_tokens=1).choices


RECORD = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "ok": {"type": "boolean"},
        "kind": {"enum": ["a", "b", None]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3},
    },
    "required": ["name", "age", "ok", "kind", "tags"],
    "additionalProperties": False,
}
AS_RECORD = {"type": "json_schema", "json_schema": {"name": "record", "schema": RECORD}}


def test_json_schema_chat_validates_at_temperature_one(client) -> None:
    ask = dict(model="tiny:2", messages=CHAT, max_tokens=160, temperature=1.0)
    free = client.chat.completions.create(**ask, seed=0).choices[0].message.content
    with pytest.raises(ValueError):
        json.loads(free)  # random weights: without the grammar, no JSON
    for seed in (0, 2):
        reply = client.chat.completions.create(**ask, seed=seed, n=2, response_format=AS_RECORD)
        for choice in reply.choices:
            assert choice.finish_reason == "stop", choice.message.content
            jsonschema.validate(json.loads(choice.message.content), RECORD)
    for seed in (4, 5):
        stream = client.chat.completions.create(**ask, seed=seed, response_format=AS_RECORD,
                                                stream=True)  # fmt: skip
        chunks = [c.choices[0] for c in stream if c.choices]
        assert chunks[-1].finish_reason == "stop"
        jsonschema.validate(json.loads("".join(c.delta.content or "" for c in chunks)), RECORD)


def test_json_object_chat_parses_when_it_ends(client) -> None:
    stopped = 0
    for seed in range(8):
        stream = client.chat.completions.create(
            model="tiny:2", messages=CHAT, max_tokens=48, temperature=1.0, seed=seed,
            response_format={"type": "json_object"}, stream=True,
        )  # fmt: skip
        chunks = [c.choices[0] for c in stream if c.choices]
        text = "".join(c.delta.content or "" for c in chunks)
        assert text.lstrip().startswith("{"), text
        if chunks[-1].finish_reason == "stop":  # or "length": a string still open at 48 tokens
            stopped += 1
            assert isinstance(json.loads(text), dict)
    assert stopped >= 3  # random weights close few objects: strings rarely end


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "object", "properties": {"a": {"type": "nope"}}}, "invalid at properties/a"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
        ({"properties": {"n": {"type": "integer", "maximum": 3}}}, "uses maximum"),
    ],
)
def test_bad_schemas_are_openai_400s(client, schema, needle) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny:2", messages=CHAT, max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        )  # fmt: skip
    error = info.value.body
    assert needle in error["message"], error
    assert error["param"] == "response_format" and error["type"] == "invalid_request_error"


def tokens_after_disconnects(server, open_stream, max_tokens: int, attempts: int = 3) -> list[int]:
    """Tokens generated per stream opened by ``open_stream()``, read once, then dropped; each
    time the slot must be freed. Tries again (up to ``attempts``) while every stream ran to its
    end: a test process paused between the first event and the close lets a tiny model finish,
    which shows nothing about cancellation either way."""
    counts: list[int] = []
    for _ in range(attempts):
        before = metric(server, "gen_ai_usage_output_tokens_total")
        stream = open_stream()
        next(iter(stream))
        stream.response.close()
        deadline = time.monotonic() + 30
        while metric(server, "modelport_generation_running_sequences") > 0:
            assert time.monotonic() < deadline, "a sequence still runs after its client left"
            time.sleep(0.05)
        counts.append(metric(server, "gen_ai_usage_output_tokens_total") - before)
        if counts[-1] < max_tokens:
            break
    return counts


def test_a_disconnect_under_a_grammar_frees_the_sequence(client, server) -> None:
    long = {"type": "string", "minLength": 1200}  # cannot end within max_tokens

    def open_stream():
        return client.chat.completions.create(
            model="tiny:2", messages=CHAT, max_tokens=150, temperature=1.0, seed=1, stream=True,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": long}},
        )  # fmt: skip

    assert min(tokens_after_disconnects(server, open_stream, 150)) < 150  # cut short
    reply = client.chat.completions.create(
        model="tiny:2", messages=CHAT, max_tokens=160, seed=0, response_format=AS_RECORD
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), RECORD)


def test_v2_generate_stream_matches_completions(client, server) -> None:
    ask = {"text_input": "The quick brown", "parameters": {"max_tokens": 10, "temperature": 0}}
    status, raw, kind = post(server, "/v2/models/tiny/versions/2/generate_stream", ask)
    assert status == 200 and kind.startswith("text/event-stream")
    streamed = events(raw)
    same = client.completions.create(model="tiny:2", prompt="The quick brown", max_tokens=10,
                                     temperature=0)  # fmt: skip
    assert "".join(e["text_output"] for e in streamed) == same.choices[0].text
    assert streamed[-1]["finish_reason"] == same.choices[0].finish_reason
    assert json.loads(post(server, "/v2/models/tiny/versions/1/generate", ask)[1])["error"]


def test_a_disconnect_frees_the_sequence(client, server) -> None:
    ask = dict(model="tiny:2", prompt="Count", max_tokens=250, temperature=0, stream=True)

    def open_stream():
        return client.completions.create(**ask)

    assert min(tokens_after_disconnects(server, open_stream, 250)) < 250  # cut short
    assert client.completions.create(model="tiny:2", prompt="ok", max_tokens=2).choices


# each tiny model counts 0.73 MiB (0.48 MiB of weights + 2 slots x 256 positions of cache)
BUDGET = 1 << 20


def open_models(server: Server) -> dict[str, float]:
    """model -> bytes counted for it, for the models open in the server."""
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    line = r'^modelport_generation_memory_bytes{gen_ai_request_model="([^"]+)"[^}]*} (\S+)$'
    found = re.findall(line, text, re.M)
    return {name: float(value) for name, value in found}


def test_a_memory_budget_keeps_what_fits_and_refuses_what_never_can(home) -> None:
    budget = start_server(home, *SERVE, "--memory-budget", f"{BUDGET}")
    try:
        client = openai_client(budget)
        ask = dict(prompt="The quick", max_tokens=4, temperature=0)
        first = client.completions.create(model="tiny:2", **ask).choices[0].text
        assert set(open_models(budget)) == {"tiny"}
        assert 0.7 * BUDGET < open_models(budget)["tiny"] <= BUDGET
        client.completions.create(model="other:2", **ask)
        assert set(open_models(budget)) == {"other"}  # tiny was idle: closed to make room
        assert client.completions.create(model="tiny:2", **ask).choices[0].text == first
        assert set(open_models(budget)) == {"tiny"}  # reopened on demand
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="smol", **ask)
        message = info.value.body["message"]
        assert re.search(r"smol:1 needs 1\d\d\.\d MiB \(weights \d+\.\d MiB \+ cache for 2 x "
                         r"256 positions \d+\.\d MiB\), more than the memory budget of 1\.0 MiB",
                         message), message  # fmt: skip
        assert set(open_models(budget)) == {"tiny"}  # refused before loading: nothing closed
    finally:
        code, output = budget.stop()
    assert code == 0, output


def test_a_model_in_use_is_not_closed_for_another(home) -> None:
    from modelport.serving.llm import GENERATE, LanguageModels

    reg = Registry(Settings(home=home, user="tester"))
    models = LanguageModels(reg, EngineOptions(slots=1, context=256, threads=1), budget=BUDGET)
    hold, started = threading.Event(), threading.Event()

    def held(event) -> None:
        started.set()
        hold.wait(30)  # the sequence stays running while the decode thread waits here

    async def scenario() -> None:
        _, engine = await models.get("tiny:2", GENERATE)
        handle = engine.submit([5, 6, 7], SamplingParams(max_tokens=200), held)
        assert await asyncio.to_thread(started.wait, 30)
        with pytest.raises(Overloaded, match=r"other:2 needs .* held by models with requests"):
            await models.get("other:2", GENERATE)
        handle.cancel()
        hold.set()
        deadline = time.monotonic() + 30
        while engine.scheduler.running:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        version, _ = await models.get("other:2", GENERATE)
        assert version.ref == "other:2" and [g[0] for g in models.gauges()] == ["other"]
        with pytest.raises(InvalidInput, match="more than the memory budget"):
            await models.get("smol", GENERATE)
        await models.close()

    try:
        asyncio.run(scenario())
    finally:
        hold.set()
        reg.close()
