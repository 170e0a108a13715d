"""Checkpoints converted to onnxruntime-genai with its model builder, served by the engine."""

from __future__ import annotations

import json
import queue
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelport.api import register
from modelport.conversion.genai import convert_to_genai
from modelport.errors import InvalidInput
from modelport.generation import EngineOptions, SamplingParams, open_engine
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import invoke_cli
from tests.generation.test_gguf_parity import (
    NEW_TOKENS,
    PROMPTS,
    agreement,
    modelport_greedy,
    transformers_greedy,
)


@pytest.fixture(scope="module")
def genai_registry(tmp_path_factory, tiny_llama, tiny_qwen2) -> Iterator[Registry]:
    """llama:1 (checkpoint), llama:2 (fp32 genai); qwen2:1, qwen2:2 likewise."""
    reg = Registry(Settings(home=tmp_path_factory.mktemp("genai") / "home", user="tester"))
    for name, folder in (("llama", tiny_llama), ("qwen2", tiny_qwen2)):
        register(folder, name, registry=reg)
        convert_to_genai(reg, f"{name}:1", "fp32")
    yield reg
    reg.close()


def _prompts(vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(3)
    return [rng.integers(1, vocab, size=int(rng.integers(3, 12))).tolist() for _ in range(PROMPTS)]


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_fp32_greedy_tokens_match_transformers(genai_registry, name, request) -> None:
    version = genai_registry.get(f"{name}:2")
    params = version.transform_params
    assert version.format == "genai" and version.parent == f"{name}:1"
    assert params["precision"] == "fp32" and params["builder"].startswith("onnxruntime-genai")
    assert params["next_token_agreement"] >= 0.99 and params["perplexity_change"] < 0.01
    assert not params["forced"]
    assert version.tags["quantization"] == "F32" and version.tags["architecture"] == name
    prompts = _prompts(int(version.tags["vocab_size"]))
    ours = modelport_greedy(genai_registry.path(version), prompts, "genai")
    theirs = transformers_greedy(request.getfixturevalue(f"tiny_{name}"), prompts)
    assert len(ours) == PROMPTS and all(len(t) <= NEW_TOKENS for t in ours)
    assert agreement(ours, theirs) >= 0.99, (ours[:2], theirs[:2])


def test_int8_and_int4_record_parity_and_int4_is_refused_unless_forced(genai_registry) -> None:
    fp32 = genai_registry.get("llama:2")
    int8 = convert_to_genai(genai_registry, "llama:1", "int8")
    assert int8.tags["quantization"] == "INT8" and int8.size < fp32.size / 2
    p = int8.transform_params
    assert p["builder_options"] == {"block_size": "32", "is_symmetric": "true",
                                    "accuracy_level": "1"}  # fmt: skip
    assert 0.9 <= p["next_token_agreement"] < 1.0 and p["tokens"] > 100
    # random weights spread evenly over their range: 16 levels move most argmaxes
    with pytest.raises(InvalidInput, match=r"int4 genai model drifts .* use --force"):
        convert_to_genai(genai_registry, "llama:1", "int4")
    forced = convert_to_genai(genai_registry, "llama:1", "int4", force=True)
    assert forced.tags["quantization"] == "INT4" and forced.transform_params["forced"]
    assert forced.size < int8.size
    assert forced.tags["parameters"] == fp32.tags["parameters"]
    with pytest.raises(InvalidInput, match="not a Hugging Face text-generation"):
        convert_to_genai(genai_registry, "llama:2", "int8")
    with pytest.raises(InvalidInput, match="precision 'fp16'"):
        convert_to_genai(genai_registry, "llama:1", "fp16")


def _run(engine, prompt, params) -> tuple[list[int], str, str]:
    q: queue.Queue = queue.Queue()
    engine.submit(prompt, params, q.put)
    tokens, text = [], ""
    while True:
        event = q.get(timeout=60)
        text += event.text
        if event.token is not None:
            tokens.append(event.token)
        if event.finish is not None:
            return tokens, text, event.finish


def test_engine_chunks_caches_samples_and_stops(genai_registry) -> None:
    path = genai_registry.path(genai_registry.get("llama:2"))
    chunked = open_engine(path, "genai", EngineOptions(slots=2, context=256, prefill_chunk=5))
    try:
        prompt = chunked.chat_prompt([{"role": "user", "content": "The quick brown fox"}])
        greedy = SamplingParams(max_tokens=16, temperature=0.0)
        first = _run(chunked, prompt, greedy)
        assert first[2] == "length" and len(first[0]) == 16
        assert _run(chunked, prompt, greedy) == first  # from the slot's cache this time
        assert chunked.scheduler.cache_hits >= len(prompt) - 1
        seeded = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.9, seed=7)
        assert _run(chunked, prompt, seeded) == _run(chunked, prompt, seeded)
        stop = first[1][3:6]
        cut = _run(chunked, prompt, SamplingParams(16, 0.0, stop=(stop,)))
        assert cut[2] == "stop" and cut[1] == first[1][: first[1].index(stop)]
    finally:
        chunked.close()
    whole = open_engine(path, "genai", EngineOptions(slots=1, context=256))
    try:
        assert _run(whole, prompt, greedy) == first  # chunked prefill changes nothing
    finally:
        whole.close()


def test_cancel_frees_the_slot_for_the_queued_sequence(genai_registry) -> None:
    path = genai_registry.path(genai_registry.get("qwen2:2"))
    engine = open_engine(path, "genai", EngineOptions(slots=1, context=256))
    try:
        long: queue.Queue = queue.Queue()
        held = threading.Event()  # the decode thread waits in the first token's callback

        def hold_first(event) -> None:
            long.put(event)
            held.wait(30)

        handle = engine.submit(
            [5, 6, 7], SamplingParams(max_tokens=240, temperature=0.0), hold_first
        )
        assert long.get(timeout=30).finish is None  # decoding
        short: queue.Queue = queue.Queue()
        engine.submit([8, 9], SamplingParams(max_tokens=3, temperature=0.0), short.put)
        assert engine.scheduler.running == 1 and engine.scheduler.queued == 1
        handle.cancel()
        held.set()
        finish = None
        while finish is None:
            finish = long.get(timeout=30).finish
        assert finish == "cancelled"
        events = [short.get(timeout=30) for _ in range(3)]
        assert events[-1].finish == "length" and events[-1].completion_tokens == 3
        with pytest.raises(InvalidInput, match="context is 256 tokens"):
            engine.submit(list(range(1, 300)), SamplingParams(max_tokens=4), long.put)
        with pytest.raises(InvalidInput, match="does not parse"):
            engine.submit([5], SamplingParams(max_tokens=4, grammar="root ::= ("), long.put)
    finally:
        engine.close()


def test_a_grammar_decides_the_output_whatever_the_sampling(genai_registry) -> None:
    path = genai_registry.path(genai_registry.get("llama:2"))
    engine = open_engine(path, "genai", EngineOptions(slots=2, context=256))
    grammar = 'root ::= ("yes" | "no") " " [0-9] [0-9]'
    try:
        free = _run(engine, [5, 6, 7], SamplingParams(max_tokens=12, temperature=1.5, seed=0))
        assert free[1][:3] not in ("yes", "no ")  # random weights: garbage unless constrained
        for seed in range(4):
            params = SamplingParams(max_tokens=16, temperature=1.5, seed=seed, grammar=grammar)
            tokens, text, finish = _run(engine, [5, 6, 7], params)
            assert text[:-3] in ("yes", "no") and text[-3] == " " and text[-2:].isdigit(), text
            assert finish == "stop" and tokens[-1] in engine.model.eos  # only an end was left
        assert engine.scheduler.running == 0
    finally:
        engine.close()


def _copy(genai_registry, tmp_path: Path) -> Path:
    """The fp32 llama folder, copied out of the registry to be damaged."""
    source = genai_registry.path(genai_registry.get("llama:2")).parent
    return Path(shutil.copytree(source, tmp_path / "broken"))


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda f: _truncate(f / "model.onnx.data"), "model.onnx.data is truncated: weight"),
        (lambda f: (f / "model.onnx").write_bytes(b"\x08\x07garbage" * 50), "not a valid ONNX"),
        (lambda f: (f / "model.onnx.data").unlink(), "weights file model.onnx.data is missing"),
        (lambda f: (f / "model.onnx").unlink(), "decoder model.onnx named by"),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
        (lambda f: (f / "genai_config.json").write_text("{nope"), "not valid JSON"),
        (lambda f: (f / "genai_config.json").write_text('{"model": {}}'), "names no decoder"),
    ],
)
def test_a_damaged_folder_is_refused_at_registration(genai_registry, tmp_path, damage, needle):
    folder = _copy(genai_registry, tmp_path)
    damage(folder)
    before = genai_registry.list_versions("llama")
    with pytest.raises(InvalidInput, match=needle) as info:
        register(folder, "llama", registry=genai_registry)
    assert str(folder) in str(info.value)
    assert genai_registry.list_versions("llama") == before


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_registering_a_genai_folder_reads_its_card(genai_registry, tmp_path) -> None:
    folder = _copy(genai_registry, tmp_path)
    config = json.loads((folder / "genai_config.json").read_text())
    version = register(folder, "copied", registry=genai_registry)
    assert version.format == "genai" and version.tags["task"] == "text-generation"
    assert version.tags["context_length"] == str(config["model"]["context_length"])
    assert version.tags["chat_template"] == "yes"
    assert int(version.tags["parameters"]) > 100_000


def test_cli_converts_refuses_and_generates(genai_registry, monkeypatch, capsys) -> None:
    home = ("--home", str(genai_registry.settings.home))
    convert = (*home, "convert", "qwen2:1", "--to", "genai")
    code, out, err = invoke_cli(monkeypatch, capsys, *convert, "--precision", "int4")
    assert code == 1 and "int4 genai model drifts from transformers" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = invoke_cli(monkeypatch, capsys, *convert, "--precision", "int8")
    assert code == 0, err
    assert "(genai, int8," in out and "from qwen2:1: next-token agreement" in out
    code, out, err = invoke_cli(monkeypatch, capsys, *home, "convert", "qwen2:1", "--to", "gguf",
                                "--precision", "int4")  # fmt: skip
    assert code == 1 and "converts to fp32 or int8" in err
    ask = (*home, "generate", "qwen2:2", "--prompt", "The quick", "--max-tokens", "8")
    code, out, err = invoke_cli(monkeypatch, capsys, *ask)
    assert code == 0 and out.strip(), err
    assert invoke_cli(monkeypatch, capsys, *ask)[1] == out  # greedy: the same text again


def test_a_failed_step_ends_its_sequence_and_the_slot_starts_afresh(genai_registry) -> None:
    path = genai_registry.path(genai_registry.get("llama:2"))
    engine = open_engine(path, "genai", EngineOptions(slots=1, context=256))
    try:
        greedy = SamplingParams(max_tokens=8, temperature=0.0)
        before = _run(engine, [5, 6, 7, 8], greedy)
        tokens, _, finish = _run(engine, [5, 6, 7, 8, 10**6], greedy)  # no such token
        assert finish == "error: BackendError" and tokens == []
        assert _run(engine, [5, 6, 7, 8], greedy) == before
    finally:
        engine.close()
