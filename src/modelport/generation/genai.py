"""onnxruntime-genai model folders: a ``BatchModel`` with one generator per slot.

    model = GenaiModel.load(Path("tiny-int4"), EngineOptions(slots=4, context=2048))
    logits = model.decode([(0, token, 0, True), (1, other, 0, True)])   # two sequences
    model.forget(0, 0)
    grammar = model.constrain(gbnf_text)      # llguidance's matcher over this tokenizer

On CPU, onnxruntime-genai batches sequences only statically (its continuous-batching engine
needs paged attention, built for CUDA), so each slot owns a ``Generator`` with its own cache of
``context`` positions, and the scheduler's continuous batching runs them one after the other in
each step: sequences still join between steps, a prompt is still prefilled in chunks, and a
finished slot's cache still serves the next prompt sharing its prefix (``rewind_to``).
Sampling, stop strings, grammars and cancellation stay in the scheduler; the tokenizer is the
folder's ``tokenizer.json`` on the ``tokenizers`` library, as for transformers, and grammars run
on llguidance over the same tokenizer (``matcher.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BackendError, MissingDependency
from modelport.generation.matcher import Matcher, Vocabulary
from modelport.generation.options import EngineOptions


def _og():
    try:
        import onnxruntime_genai
    except ImportError:
        raise MissingDependency("onnxruntime-genai", "genai") from None
    return onnxruntime_genai


class GenaiModel:
    def __init__(self, og, model, tokenizer, config: dict[str, Any], context: int, options) -> None:
        self._og, self._model, self._tokenizer = og, model, tokenizer
        self.vocab = int(config["vocab_size"])
        self.context = context
        self.slots = options.slots
        self.batch = options.batch
        eos = config.get("eos_token_id", [])
        self.eos = frozenset(eos if isinstance(eos, list) else [eos])
        bos = config.get("bos_token_id")
        self.bos = int(bos) if isinstance(bos, int) else -1
        probe = tokenizer.encode("a", add_special_tokens=True).ids
        self.adds_bos = bool(probe) and probe[0] == self.bos and self.bos >= 0
        self._pieces = _byte_pieces(tokenizer)
        self._vocabulary = Vocabulary(tokenizer, self.vocab, self.eos)
        self._generators: list[Any] = [None] * self.slots

    @classmethod
    def load(cls, folder: Path, options: EngineOptions) -> GenaiModel:
        from tokenizers import Tokenizer

        og = _og()
        config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))["model"]
        context = min(options.context or 4096, int(config.get("context_length") or 1 << 20))
        threads = {"intra_op_num_threads": options.threads, "inter_op_num_threads": 1}
        try:
            og_config = og.Config(str(folder))
            og_config.clear_providers()  # CPU
            og_config.overlay(json.dumps({"model": {"decoder": {"session_options": threads}}}))
            model = og.Model(og_config)
        except Exception as exc:  # onnxruntime-genai raises RuntimeError with the reason
            raise BackendError(f"onnxruntime-genai could not load {folder.name}: {exc}") from None
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return cls(og, model, tokenizer, config, context, options)

    def _generator(self, slot: int):
        gen = self._generators[slot]
        if gen is None:
            params = self._og.GeneratorParams(self._model)
            params.set_search_options(max_length=self.context, batch_size=1)
            gen = self._generators[slot] = self._og.Generator(self._model, params)
        return gen

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> np.ndarray:
        out: list[np.ndarray] = []
        start = 0
        for end in range(1, len(rows) + 1):  # runs of consecutive positions of one slot
            if end < len(rows) and rows[end][0] == rows[start][0]:
                if rows[end][2] == rows[end - 1][2] + 1:
                    continue
            out.extend(self._run(rows[start:end]))
            start = end
        return np.stack(out) if out else np.empty((0, self.vocab), dtype=np.float32)

    def _run(self, run: Sequence[tuple[int, int, int, bool]]) -> list[np.ndarray]:
        slot, first = run[0][0], run[0][2]
        gen = self._generator(slot)
        held = gen.token_count()
        if first < held:
            gen.rewind_to(first)
        elif first > held:
            raise BackendError(f"slot {slot} holds {held} positions; asked to write at {first}")
        try:
            gen.append_tokens(np.fromiter((r[1] for r in run), dtype=np.int32, count=len(run)))
        except Exception as exc:
            self._generators[slot] = None  # its state is unknown: the slot starts afresh
            raise BackendError(f"onnxruntime-genai failed: {exc}") from None
        wanted = [i for i, r in enumerate(run) if r[3]]
        if not wanted:
            return []
        if wanted == [len(run) - 1]:
            return [np.asarray(gen.get_logits(), dtype=np.float32).reshape(-1)[: self.vocab]]
        every = np.asarray(gen.get_output("logits"), dtype=np.float32).reshape(len(run), -1)
        return [every[i, : self.vocab] for i in wanted]

    def forget(self, slot: int, start: int) -> None:
        gen = self._generators[slot]
        if gen is not None and gen.token_count() > start:
            gen.rewind_to(start)  # the generator and its cache buffers are kept

    def tokenize(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def piece(self, token: int) -> bytes:
        found = self._pieces.get(token)
        if found is None:
            text = self._tokenizer.decode([token], skip_special_tokens=True)
            found = self._pieces[token] = text.encode("utf-8")
        return found

    def constrain(self, grammar: str) -> Matcher:
        return self._vocabulary.constrain(grammar)

    def token_text(self, token: int) -> str:
        return self._tokenizer.id_to_token(token) or ""

    def close(self) -> None:
        self._generators = [None] * self.slots
        self._model = self._tokenizer = None


def _byte_pieces(tokenizer) -> dict[int, bytes]:
    """The bytes of every ordinary token, for byte-level BPE (GPT-2 style) and byte-fallback
    SentencePiece vocabularies; special tokens have none. Other vocabularies are decoded one
    token at a time on demand."""
    data = json.loads(tokenizer.to_str())
    decoders = data.get("decoder") or {}
    kinds = {d.get("type") for d in decoders.get("decoders", [decoders]) if isinstance(d, dict)}
    special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    pieces: dict[int, bytes] = dict.fromkeys(special, b"")
    if "ByteLevel" in kinds:
        table = {ch: b for b, ch in _byte_alphabet().items()}
        for text, i in vocab.items():
            if i not in special and all(ch in table for ch in text):
                pieces[i] = bytes(table[ch] for ch in text)
    elif "ByteFallback" in kinds:
        for text, i in vocab.items():
            if i in special:
                continue
            if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
                pieces[i] = bytes([int(text[3:5], 16)])
            else:
                pieces[i] = text.replace("\u2581", " ").encode("utf-8")
    return pieces


def _byte_alphabet() -> dict[int, str]:
    """Byte-level BPE's printable stand-in for each byte value."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def open_genai(path: Path, options: EngineOptions):
    """An ``Engine`` for an onnxruntime-genai folder (``path``: the folder or its config)."""
    from modelport.generation.engine import Engine
    from modelport.importers.hf import chat_template

    folder = path if path.is_dir() else path.parent
    model = GenaiModel.load(folder, options)
    eos = min(model.eos) if model.eos else -1
    bos_text = model.token_text(model.bos) if model.bos >= 0 else ""
    eos_text = model.token_text(eos) if eos >= 0 else ""
    return Engine(model, chat_template(folder), options, bos_text, eos_text)
