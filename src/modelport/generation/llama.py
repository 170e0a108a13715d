"""GGUF models on llama.cpp (through llama-cpp-python's C bindings): a ``BatchModel``.

    model = LlamaModel.load(Path("smollm2.gguf"), EngineOptions(slots=4, context=2048))
    logits = model.decode([(0, token, 0, True)])     # several sequences in one llama_decode
    model.forget(0, 0)
    grammar = model.constrain(gbnf_text)             # llama.cpp's grammar sampler, one sequence

One llama.cpp context holds ``slots`` sequences (sequence id = slot), each with ``context``
positions; the weights are memory-mapped. Only what the scheduler needs is bound here.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modelport.errors import BackendError, InvalidInput, MissingDependency
from modelport.generation.options import EngineOptions

_init_lock = threading.Lock()
_quiet = []  # the C log callback, kept alive for the life of the process


def _lib():
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("llama-cpp-python", "llm") from None
    with _init_lock:
        if not _quiet:  # llama.cpp logs every load to stderr by default
            _quiet.append(llama_cpp.llama_log_callback(lambda level, text, data: None))
            llama_cpp.llama_log_set(_quiet[0], ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
    return llama_cpp


class LlamaModel:
    def __init__(self, lib, model, ctx, options: EngineOptions, context: int) -> None:
        self.lib, self._model, self._ctx = lib, model, ctx
        self._vocab = lib.llama_model_get_vocab(model)
        self.vocab = lib.llama_vocab_n_tokens(self._vocab)
        self.slots = options.slots
        self.context = context
        self.batch = options.batch
        self.eos = frozenset(t for t in range(self.vocab) if lib.llama_vocab_is_eog(self._vocab, t))
        self._batch = lib.llama_batch_init(self.batch, 0, 1)
        self._memory = lib.llama_get_memory(ctx)
        self._pieces: dict[int, bytes] = {}

    @classmethod
    def load(
        cls, path: Path, options: EngineOptions, trained_context: int, f32_cache: bool = False
    ) -> LlamaModel:
        lib = _lib()
        mparams = lib.llama_model_default_params()
        mparams.use_mmap = True
        model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise BackendError(f"llama.cpp could not load {path.name}")
        context = min(options.context or 4096, trained_context or 1 << 20)
        padded = -(-context // 256) * 256  # llama.cpp pads each sequence's positions to 256
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = padded * options.slots
        cparams.n_batch = cparams.n_ubatch = options.batch
        cparams.n_seq_max = options.slots
        cparams.n_threads = cparams.n_threads_batch = options.threads
        cparams.no_perf = True
        if f32_cache:  # an fp32 model keeps fp32 keys and values (the default cache is f16)
            cparams.type_k = cparams.type_v = lib.GGML_TYPE_F32
        ctx = lib.llama_init_from_model(model, cparams)
        if not ctx:
            lib.llama_model_free(model)
            raise BackendError(f"llama.cpp could not create a context for {path.name}")
        return cls(lib, model, ctx, options, context)

    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> np.ndarray:
        b = self._batch
        wanted = 0
        for i, (slot, token, pos, logits) in enumerate(rows):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = slot
            b.logits[i] = logits
            wanted += bool(logits)
        b.n_tokens = len(rows)
        status = self.lib.llama_decode(self._ctx, b)
        if status != 0:
            raise BackendError(f"llama_decode failed with status {status}")
        if not wanted:
            return np.empty((0, self.vocab), dtype=np.float32)
        # every output row in batch order, one after the other: one fetch, one copy
        ptr = self.lib.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(wanted, self.vocab)).copy()

    def forget(self, slot: int, start: int) -> None:
        self.lib.llama_memory_seq_rm(self._memory, slot, start, -1)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 8
        buf = (self.lib.llama_token * size)()
        n = self.lib.llama_tokenize(self._vocab, data, len(data), buf, size, False, True)
        if n < 0:
            raise InvalidInput("the text could not be tokenized")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(256)
            n = self.lib.llama_token_to_piece(self._vocab, token, buf, 256, 0, False)
            cached = self._pieces[token] = buf.raw[: max(n, 0)]
        return cached

    def token_text(self, token: int) -> str:
        """A special token's text (bos and eos for chat templates)."""
        buf = ctypes.create_string_buffer(256)
        n = self.lib.llama_token_to_piece(self._vocab, token, buf, 256, 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def constrain(self, grammar: str) -> Grammar:
        return Grammar(self.lib, self._vocab, grammar)

    @property
    def bos(self) -> int:
        return self.lib.llama_vocab_bos(self._vocab)

    @property
    def adds_bos(self) -> bool:
        return bool(self.lib.llama_vocab_get_add_bos(self._vocab))

    def close(self) -> None:
        if self._ctx:
            self.lib.llama_batch_free(self._batch)
            self.lib.llama_free(self._ctx)
            self.lib.llama_model_free(self._model)
            self._ctx = self._model = None


class Grammar:
    """A GBNF grammar on llama.cpp's grammar sampler (a ``Constraint``): it only masks logits,
    the scheduler samples."""

    def __init__(self, lib, vocab, text: str) -> None:
        self.lib = lib
        self._sampler = lib.llama_sampler_init_grammar(vocab, text.encode(), b"root")
        if not self._sampler:
            raise InvalidInput("the grammar does not parse (llama.cpp GBNF)")
        self._one = (lib.llama_token_data * 1)()
        self._one_array = lib.llama_token_data_array(self._one, 1, -1, False)

    def allows(self, token: int) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        self._one_array.size, self._one_array.selected = 1, -1
        self.lib.llama_sampler_apply(self._sampler, ctypes.byref(self._one_array))
        return self._one[0].logit != -np.inf

    def mask(self, logits: np.ndarray) -> None:
        data = np.zeros(len(logits), dtype=_TOKEN_DATA)
        data["id"] = np.arange(len(logits), dtype=np.int32)
        data["logit"] = logits
        pointer = data.ctypes.data_as(ctypes.POINTER(self.lib.llama_token_data))
        array = self.lib.llama_token_data_array(pointer, len(logits), -1, False)
        self.lib.llama_sampler_apply(self._sampler, ctypes.byref(array))
        logits[data["id"]] = data["logit"]

    def accept(self, token: int) -> None:
        self.lib.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            self.lib.llama_sampler_free(self._sampler)
            self._sampler = None


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def open_gguf(path: Path, options: EngineOptions):
    """An ``Engine`` for a GGUF file: the chat template and context come from its header."""
    from modelport.generation.engine import Engine
    from modelport.importers.gguf import read_header

    meta = read_header(path).metadata
    arch = meta.get("general.architecture", "")
    trained = int(meta.get(f"{arch}.context_length", 0) or 0)
    f32 = meta.get("general.file_type") == 0
    model = LlamaModel.load(path, options, trained, f32_cache=f32)
    template = meta.get("tokenizer.chat_template")
    bos = model.token_text(model.bos) if model.bos >= 0 else ""
    eos_id = meta.get("tokenizer.ggml.eos_token_id")
    eos = model.token_text(int(eos_id)) if isinstance(eos_id, int) else ""
    return Engine(model, template if isinstance(template, str) else None, options, bos, eos)
