"""Choosing the next token from logits: greedy, temperature and nucleus (top-p), seeded.

rng = make_rng(seed=7)
token = sample(logits, temperature=0.8, top_p=0.95, rng=rng)   # same seed, same tokens
chosen, top = log_probs(logits, token, k=5)   # the model's log-softmax, before temperature
"""

from __future__ import annotations

import numpy as np


def make_rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0.0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        cut = int(np.searchsorted(cumulative, top_p)) + 1
        keep = order[:cut]
        kept = probs[keep] / probs[keep].sum()
        return int(keep[rng.choice(len(keep), p=kept)])
    return int(rng.choice(len(probs), p=probs))


def log_probs(
    logits: np.ndarray, token: int, k: int
) -> tuple[float, tuple[tuple[int, float], ...]]:
    """``token``'s log-probability under the model's own distribution (log-softmax of the raw
    logits: neither temperature, top-p nor a grammar changes it) and the ``k`` most likely
    tokens with theirs, most likely first."""
    shifted = logits.astype(np.float64)
    shifted -= shifted.max()
    logz = np.log(np.exp(shifted).sum())
    chosen = float(shifted[token] - logz)
    if k <= 0:
        return chosen, ()
    best = np.argpartition(-shifted, k - 1)[:k]
    best = best[np.argsort(-shifted[best], kind="stable")]
    return chosen, tuple((int(t), float(shifted[t] - logz)) for t in best)
