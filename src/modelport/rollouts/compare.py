"""How two versions' replies are compared, chosen from the signature's first output.

    comparison = Comparison.for_signature(signature)
    comparison.kind                             # "top1", "exact", "max_abs" or "cosine"
    agreed, rows, score = comparison.compare(stable_outputs, candidate_outputs)
    comparison.classes(outputs)                 # per-row labels for the distribution gate
    comparison.count_classes([a, b, c])         # the labels of many replies, counted

- ``top1``: float scores with a last dimension of 2 or more (a classifier): rows agree when the
  arg-max is the same; the class is the arg-max.
- ``exact``: integer, boolean or string outputs (labels): rows agree when equal.
- ``cosine``: float outputs named like embeddings (``embed``, ``hidden``, ``feature``): rows agree
  when the cosine similarity is at least ``COSINE_AGREES``.
- ``max_abs``: any other float output (regression): rows agree when every value is within
  ``ATOL + RTOL * |stable|``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from modelport.signature import Signature

ATOL, RTOL = 1e-4, 1e-3
COSINE_AGREES = 0.99
_EMBEDDING_WORDS = ("embed", "hidden", "feature")
_LABELS = tuple(str(i) for i in range(256))  # class labels made once, not per request
_SYMLOG_EDGES = np.array([-(10.0**e) for e in range(3, -4, -1)] + [10.0**e for e in range(-3, 4)])


@dataclass(frozen=True)
class Comparison:
    kind: str
    output: str

    @classmethod
    def for_signature(cls, signature: Signature) -> Comparison:
        spec = signature.outputs[0]
        if spec.dtype in ("string", "bool") or spec.dtype.startswith(("int", "uint")):
            return cls("exact", spec.name)
        if any(word in spec.name.lower() for word in _EMBEDDING_WORDS):
            return cls("cosine", spec.name)
        if len(spec.shape) >= 2 and (spec.shape[-1] >= 2 or spec.shape[-1] < 0):
            return cls("top1", spec.name)
        return cls("max_abs", spec.name)

    def _rows(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        value = np.asarray(outputs[self.output])
        if value.ndim == 0:
            return value.reshape(1, 1)
        return value.reshape(value.shape[0], -1)

    def classes(self, outputs: Mapping[str, np.ndarray]) -> Sequence[str]:
        """One label per row: the arg-max, the value, or a log-scale bin of the row mean."""
        value = outputs[self.output]
        if self.kind == "top1" and value.ndim == 2 and value.shape[0] == 1:  # one row: most calls
            index = int(value.argmax())
            return (_LABELS[index] if index < len(_LABELS) else str(index),)
        rows = self._rows(outputs)
        if self.kind == "top1":
            return [str(i) for i in np.argmax(rows, axis=1).tolist()]
        if self.kind == "exact":
            return [str(r[0]) if r.size == 1 else str(hash(r.tobytes())) for r in rows]
        means = rows.astype(np.float64).mean(axis=1)
        return [f"bin{i}" for i in np.searchsorted(_SYMLOG_EDGES, means).tolist()]

    def count_classes(self, replies: Sequence[np.ndarray]) -> dict[str, int]:
        """The labels of many replies' rows (this output's arrays), counted: one vector pass for
        a classifier, ``classes`` per reply otherwise."""
        if self.kind == "top1":
            try:
                rows = np.concatenate([self._rows({self.output: reply}) for reply in replies])
            except ValueError:  # replies of different widths: one at a time below
                rows = None
            if rows is not None:
                found, counts = np.unique(rows.argmax(axis=1), return_counts=True)
                return {_LABELS[i] if i < len(_LABELS) else str(i): n
                        for i, n in zip(found.tolist(), counts.tolist(), strict=True)}  # fmt: skip
        counted: dict[str, int] = {}
        for reply in replies:
            for label in self.classes({self.output: reply}):
                counted[label] = counted.get(label, 0) + 1
        return counted

    def compare(
        self, stable: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]
    ) -> tuple[int, int, float]:
        """(rows that agree, rows compared, summed score); shapes that differ agree nowhere."""
        a, b = self._rows(stable), self._rows(candidate)
        rows = a.shape[0]
        if a.shape != b.shape:
            return 0, rows, 0.0
        if self.kind == "top1":
            if rows == 1:  # most calls: two arg-maxes, not four array reductions
                same = int(a.argmax() == b.argmax())
                return same, 1, float(same)
            agreed = int((np.argmax(a, axis=1) == np.argmax(b, axis=1)).sum())
            return agreed, rows, float(agreed)
        if self.kind == "exact":
            same = (a == b).all(axis=1)
            return int(same.sum()), rows, float(same.sum())
        a, b = a.astype(np.float64), b.astype(np.float64)
        if self.kind == "cosine":
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cos = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)
            return int((cos >= COSINE_AGREES).sum()), rows, float(cos.sum())
        diff = np.abs(a - b)
        close = (diff <= ATOL + RTOL * np.abs(a)).all(axis=1)
        return int(close.sum()), rows, float(diff.max(axis=1).sum())
