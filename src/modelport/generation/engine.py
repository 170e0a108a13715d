"""A language model ready to generate: backend, tokenizer, chat template and scheduler.

    engine = open_engine(Path("smollm2.gguf"), "gguf", EngineOptions(slots=4))
    prompt = engine.chat_prompt([{"role": "user", "content": "Hi"}])
    handle = engine.submit(prompt, SamplingParams(max_tokens=32), on_event)
    engine.close()

Serving sees only this class: it never touches llama.cpp or onnxruntime-genai types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput
from modelport.generation import chat
from modelport.generation.base import BatchModel, OnEvent, SamplingParams
from modelport.generation.options import EngineOptions
from modelport.generation.scheduler import Handle, Scheduler

# format -> "module:function" returning (BatchModel, chat template, card)
BACKENDS = {
    "gguf": "modelport.generation.llama:open_gguf",
    "genai": "modelport.generation.genai:open_genai",
}


class Engine:
    def __init__(
        self,
        model: BatchModel,
        template: str | None,
        options: EngineOptions,
        bos: str = "",
        eos: str = "",
    ) -> None:
        self.model = model
        self.template = template
        self.bos_text, self.eos_text = bos, eos
        timeouts = (options.first_token_timeout, options.token_gap_timeout)
        self.scheduler = Scheduler(model, options.max_queue, options.prefill_chunk, timeouts)

    @property
    def context(self) -> int:
        return self.model.context

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        """Tokens of ``text``; special tokens written in it are parsed (templates emit them)."""
        tokens = self.model.tokenize(text)
        bos = getattr(self.model, "bos", -1)
        if add_bos and getattr(self.model, "adds_bos", False) and bos >= 0:
            if not tokens or tokens[0] != bos:
                tokens.insert(0, bos)
        return tokens

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        text = chat.render(
            self.template, chat.check_messages(messages), self.bos_text, self.eos_text
        )
        return self.encode(text)

    def piece(self, token: int) -> bytes:
        """The bytes of one token (UTF-8 may split over tokens)."""
        return self.model.piece(token)

    def submit(self, prompt: Sequence[int], params: SamplingParams, on_event: OnEvent) -> Handle:
        return self.scheduler.submit(prompt, params, on_event)

    def check(self, n_prompt: int, max_tokens: int) -> None:
        self.scheduler.check_prompt(n_prompt, max_tokens)

    def close(self) -> None:
        self.scheduler.close()
        self.model.close()


def open_engine(path: Path, format: str, options: EngineOptions | None = None) -> Engine:
    target = BACKENDS.get(format)
    if target is None:
        raise InvalidInput(f"{format!r} models cannot generate text; formats: {sorted(BACKENDS)}")
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)(Path(path), options or EngineOptions())
