"""Language-model commands: ``generate`` and ``chat`` stream tokens, ``embed`` writes vectors."""

from __future__ import annotations

import queue
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.cli.common import console, err_console, registry

MaxTokens = Annotated[int, typer.Option("--max-tokens", help="Most tokens to generate.")]
Temperature = Annotated[float, typer.Option(help="0 = greedy (deterministic).")]
Seed = Annotated[int | None, typer.Option(help="Sampling seed (same seed, same text).")]
Slots = Annotated[int, typer.Option(help="Sequences decoded together.")]


def _engine(ref: str, slots: int = 1) -> Any:
    from modelport.errors import InvalidInput
    from modelport.generation import EngineOptions, open_engine

    reg = registry()
    version = reg.resolve(ref)
    if version.tags.get("task") != "text-generation":
        raise InvalidInput(f"{version.ref} is not a text-generation model ({version.format})")
    return open_engine(reg.path(version), version.format, EngineOptions(slots=slots))


def _stream(engine: Any, prompt: list[int], params: Any) -> str:
    """Print tokens as they come; the whole text at the end."""
    events: queue.Queue = queue.Queue()
    handle = engine.submit(prompt, params, events.put)
    parts = []
    try:
        while True:
            event = events.get()
            sys.stdout.write(event.text)
            sys.stdout.flush()
            parts.append(event.text)
            if event.finish is not None:
                break
    except KeyboardInterrupt:
        handle.cancel()
        raise
    sys.stdout.write("\n")
    return "".join(parts)


def generate(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias.")],
    prompt: Annotated[str, typer.Option(help="The text to continue.")],
    max_tokens: MaxTokens = 128,
    temperature: Temperature = 0.0,
    seed: Seed = None,
    chat: Annotated[bool, typer.Option(help="Apply the model's chat template.")] = False,
) -> None:
    """Generate text from a prompt, streaming it to the terminal."""
    from modelport.generation import SamplingParams

    engine = _engine(ref)
    try:
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
        ids = (
            engine.chat_prompt([{"role": "user", "content": prompt}])
            if chat
            else engine.encode(prompt)
        )
        engine.check(len(ids), max_tokens)
        _stream(engine, ids, params)
    finally:
        engine.close()


def chat(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias.")],
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_tokens: MaxTokens = 256,
    temperature: Temperature = 0.7,
    seed: Seed = None,
) -> None:
    """Chat in the terminal with the model's own chat template; an empty line or Ctrl-D ends."""
    from modelport.generation import SamplingParams

    engine = _engine(ref)
    messages = [{"role": "system", "content": system}] if system else []
    try:
        while True:
            try:
                line = input("> ")
            except EOFError:
                break
            if not line.strip():
                break
            messages.append({"role": "user", "content": line})
            ids = engine.chat_prompt(messages)
            room = engine.context - len(ids)
            params = SamplingParams(
                max_tokens=max(1, min(max_tokens, room - 1)), temperature=temperature, seed=seed
            )
            engine.check(len(ids), params.max_tokens)
            messages.append({"role": "assistant", "content": _stream(engine, ids, params)})
    finally:
        engine.close()


def embed(
    ref: Annotated[str, typer.Argument(help="An encoder: name, name:3 or name@alias.")],
    input: Annotated[Path, typer.Option("--input", help="Text file, one text per line.")],
    output: Annotated[Path, typer.Option("--output", help="Where to write the .npy vectors.")],
) -> None:
    """Embed every line of a text file; write a float32 (lines x dim) .npy file."""
    import numpy as np

    from modelport.errors import InvalidInput
    from modelport.generation.encoder import open_encoder

    reg = registry()
    version = reg.resolve(ref)
    if version.tags.get("task") != "feature-extraction" or version.format != "onnx":
        raise InvalidInput(
            f"{version.ref} is not an ONNX encoder; convert it with "
            f"'modelport convert {version.ref} --to onnx-encoder'"
        )
    try:
        texts = [line for line in input.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {input}: {exc}") from None
    if not texts:
        raise InvalidInput(f"{input} holds no text")
    encoder = open_encoder(reg.path(version).parent)
    vectors, tokens = encoder.embed(texts)
    np.save(output, vectors.astype(np.float32))
    err_console.print(f"{len(texts)} texts, {tokens} tokens")
    console.print(f"wrote {output} {vectors.shape[0]}x{vectors.shape[1]} float32")
