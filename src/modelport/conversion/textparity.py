"""Parity of a converted language model with its fp32 transformers parent, on a text.

    parity = measure(folder, model)     # model: any generation backend (``BatchModel``)
    check(parity, (0.99, 0.01), "the f32 GGUF", force=False)   # InvalidInput above tolerance

Teacher-forced: the text's tokens go through both models once; the figures are how often both
pick the same next token, and the perplexity of each (``perplexity_change`` is relative).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.registry import ModelVersion, Registry

PARITY_TEXT = (
    "A model registry keeps every version of a model, with aliases that move and lineage that "
    "does not. Serving a language model on a CPU means batching sequences between decode steps, "
    "reusing the cache of a repeated system prompt, and freeing a slot as soon as a client "
    "leaves. The quick brown fox jumps over the lazy dog; numbers like 12345 and 3.14 appear too."
)
MAX_TOKENS = 256


def parity_tokens(folder: Path, text: str = PARITY_TEXT) -> tuple[list[int], np.ndarray]:
    """The text's tokens (at most the context) and the fp32 transformers logits at each."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a tiny checkpoint's "Loading weights" bar is noise

    ids = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))(text)["input_ids"]
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = ids[: min(len(ids), MAX_TOKENS, reference.config.max_position_embeddings)]
    with torch.no_grad():
        return ids, reference(torch.tensor([ids])).logits[0].numpy()


def checkpoint(registry: Registry, ref: str) -> tuple[ModelVersion, Path]:
    """The Hugging Face text-generation version ``ref`` and its folder (what converts)."""
    parent = registry.resolve(ref)
    if parent.format != "hf" or parent.tags.get("task") != "text-generation":
        raise InvalidInput(f"{parent.ref} is not a Hugging Face text-generation checkpoint")
    return parent, registry.path(parent).parent


def measure(ids: list[int], expected: np.ndarray, model: Any) -> dict[str, float]:
    """Agreement and perplexities of ``model`` (a ``BatchModel``, slot 0 free; closed here)
    against the reference logits ``expected`` over ``ids``."""
    try:
        got = model.decode([(0, t, i, True) for i, t in enumerate(ids)])
    finally:
        model.close()
    agree = float((expected[:-1].argmax(-1) == got[:-1].argmax(-1)).mean())
    return {
        "next_token_agreement": agree,
        "perplexity_fp32": _ppl(expected, ids),
        "perplexity": _ppl(got, ids),
        "tokens": len(ids),
    }


def check(parity: dict[str, float], limits: tuple[float, float], what: str, force: bool) -> bool:
    """Add ``perplexity_change``; refuse (``InvalidInput``) outside ``limits`` = (least
    agreement, most relative perplexity change) unless ``force``. True: within them."""
    least, most = limits
    change = abs(parity["perplexity"] / parity["perplexity_fp32"] - 1.0)
    parity["perplexity_change"] = change
    within = parity["next_token_agreement"] >= least and change <= most
    if not within and not force:
        raise InvalidInput(
            f"{what} drifts from transformers: next-token agreement "
            f"{parity['next_token_agreement']:.3f} (least {least}), perplexity change "
            f"{change:.2%} (most {most:.0%}); use --force to keep it"
        )
    return within


def _ppl(logits: np.ndarray, ids: list[int]) -> float:
    z = logits[:-1].astype(np.float64)
    z -= z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]].mean()
    return float(np.exp(nll))
