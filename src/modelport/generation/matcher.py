"""GBNF grammars on llguidance's token matcher: the ``Constraint`` for backends whose vocabulary
is a Hugging Face ``tokenizers`` tokenizer (onnxruntime-genai).

    vocabulary = Vocabulary(tokenizer, size=model.vocab, eos=model.eos)   # once per model
    grammar = vocabulary.constrain(gbnf_text)     # InvalidInput if it does not parse
    if not grammar.allows(token):
        grammar.mask(logits)                      # every forbidden token to -inf
    grammar.accept(token)

The grammar is the same GBNF text llama.cpp's sampler follows (``constraints.json_grammar``
makes it for both backends), rewritten to llguidance's Lark dialect by the converter llguidance
ships; llguidance then computes each step's token mask from the tokenizer's byte pieces. The
matcher's tokenizer is built once per model, on the first grammar (about 0.6 s of CPU for a
49,152-token vocabulary), and shared by every sequence after.
"""

from __future__ import annotations

import threading

import numpy as np

from modelport.errors import InvalidInput, MissingDependency


def _llg():
    try:
        import llguidance
    except ImportError:
        raise MissingDependency("llguidance", "genai") from None
    return llguidance


class Vocabulary:
    """A model's tokens as llguidance sees them (``size``: the model's logits per row)."""

    def __init__(self, tokenizer, size: int, eos: frozenset[int]) -> None:
        self._tokenizer, self.size, self._eos = tokenizer, size, sorted(eos)
        self._built = None
        self._lock = threading.Lock()

    def _matcher_tokenizer(self):
        with self._lock:
            if self._built is None:
                from tokenizers import Tokenizer

                llg = _llg()
                plain = Tokenizer.from_str(self._tokenizer.to_str())
                plain.no_padding()
                plain.no_truncation()
                eos = self._eos or None
                self._built = llg.LLTokenizer(plain.to_str(), n_vocab=self.size, eos_token=eos)
            return self._built

    def constrain(self, grammar: str) -> Matcher:
        """A ``Constraint`` following the GBNF ``grammar`` for one sequence."""
        llg = _llg()
        tokenizer = self._matcher_tokenizer()
        try:
            lark = llg.grammar_from("gbnf", grammar)
        except ValueError as exc:
            raise InvalidInput(f"the grammar does not parse (GBNF): {exc}") from None
        matcher = llg.LLMatcher(tokenizer, lark, log_level=0)
        if matcher.is_error():
            raise InvalidInput(f"the grammar does not parse (GBNF): {matcher.get_error()}")
        return Matcher(matcher, self.size)


class Matcher:
    """One sequence's grammar state on llguidance (a ``Constraint``): it only masks logits, the
    scheduler samples."""

    def __init__(self, matcher, size: int) -> None:
        self._matcher, self._size = matcher, size
        self._bits = np.zeros((size + 31) // 32, dtype=np.int32)

    def allows(self, token: int) -> bool:
        return self._matcher.validate_tokens([token]) == 1

    def mask(self, logits: np.ndarray) -> None:
        bits = self._bits
        self._matcher.unsafe_compute_mask_ptr(bits.ctypes.data, bits.nbytes)
        allowed = np.unpackbits(bits.view(np.uint8), count=self._size, bitorder="little")
        n = min(len(logits), self._size)
        np.putmask(logits[:n], allowed[:n] == 0, -np.inf)
        logits[n:] = -np.inf

    def accept(self, token: int) -> None:
        self._matcher.consume_token(token)  # on failure the matcher allows nothing after

    def close(self) -> None:
        self._matcher = None
