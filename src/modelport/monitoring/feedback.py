"""Accuracy once labels arrive: recent predictions by request id, joined to ground truth.

    feedback = Feedback(capacity=100_000, window=1000)
    feedback.remember("digits", "req-1", 3, outputs)         # request path: one dict insert
    feedback.join("digits", ["req-1"], [7])                  # -> {"joined": 1, ...}
    feedback.realized("digits", 3)                           # accuracy of the last labels
    feedback.estimate("digits", 3, probabilities)            # confidence-based, no labels

Predictions are kept for the last ``capacity`` request ids (oldest forgotten first). A
classifier (an integer label output, or one of per-class scores) is scored by accuracy, anything
else by mean absolute error; ``window`` labelled rows make the realized figure. For outputs that
are probabilities the estimate is the mean top-class probability of the last ``window``
predictions: the accuracy a calibrated classifier expects (the confidence-based estimate NannyML
calls CBPE).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, NotFound
from modelport.monitoring.reference import output_columns

SHOWN = 5  # unknown ids named in an error


class Feedback:
    def __init__(self, capacity: int = 100_000, window: int = 1000,
                 max_bytes: int = 64 << 20) -> None:  # fmt: skip
        if capacity < 1 or window < 1:
            raise InvalidInput("feedback capacity and window must be >= 1")
        self.capacity, self.window, self.max_bytes = capacity, window, max_bytes
        self._predictions: OrderedDict[tuple[str, str], tuple[int, dict, int]] = OrderedDict()
        self._bytes = 0
        self._labelled: dict[tuple[str, int], deque] = {}
        self._confidence: dict[tuple[str, int], deque] = {}
        self.kinds: dict[tuple[str, int], str] = {}  # "accuracy" or "mae"

    def remember(self, model: str, request_id: str, version: int, outputs: dict) -> None:
        """Keep ``outputs`` under the id; the oldest go past ``capacity`` ids or ``max_bytes``."""
        predictions = self._predictions
        nbytes = 0
        for array in outputs.values():
            nbytes += array.nbytes
        old = predictions.pop((model, request_id), None)
        if old is not None:
            self._bytes -= old[2]
        predictions[model, request_id] = (version, outputs, nbytes)
        self._bytes += nbytes
        while len(predictions) > self.capacity or (self._bytes > self.max_bytes
                                                   and len(predictions) > 1):  # fmt: skip
            self._bytes -= predictions.popitem(last=False)[1][2]

    def join(self, model: str, ids: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
        """Record ground truth for ``ids`` (all or none: an unknown id or a label of the wrong
        type refuses the whole call)."""
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise InvalidInput("'request_ids' must be a non-empty list of strings")
        if not isinstance(labels, list) or len(labels) != len(ids):
            raise InvalidInput(f"'ground_truth' must be a list of {len(ids)} labels, one per id")
        unknown = [i for i in ids if (model, i) not in self._predictions]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:SHOWN])
            more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
            raise NotFound(f"no recent prediction of {model!r} has request id {shown}{more} "
                           f"(the last {self.capacity} are kept)")  # fmt: skip
        rows = []
        for request_id, label in zip(ids, labels, strict=True):
            version, outputs, _ = self._predictions[model, request_id]
            kind, predicted = _predicted(outputs)
            rows.append((version, kind, predicted, _labels(request_id, label, kind, predicted)))
        for version, kind, predicted, truth in rows:
            key = (model, version)
            self.kinds[key] = kind
            scored = self._labelled.setdefault(key, deque(maxlen=self.window))
            scored.extend((predicted == truth) if kind == "accuracy" else np.abs(predicted - truth))
        versions = sorted({r[0] for r in rows})
        return {"model": model, "joined": sum(len(r[3]) for r in rows), "metric": rows[0][1],
                "realized": {str(v): self.realized(model, v) for v in versions}}  # fmt: skip

    def realized(self, model: str, version: int) -> float | None:
        scored = self._labelled.get((model, version))
        return float(np.mean(scored)) if scored else None

    def estimate(self, model: str, version: int, probabilities: np.ndarray) -> None:
        """Note the top-class probability of each predicted row (the background thread)."""
        ring = self._confidence.get((model, version))
        if ring is None:
            ring = self._confidence[model, version] = deque(maxlen=self.window)
        ring.extend(probabilities.max(axis=1).tolist())

    def estimated(self, model: str, version: int) -> float | None:
        ring = self._confidence.get((model, version))
        return float(np.mean(list(ring))) if ring else None  # list(): one atomic copy

    def series(self) -> list[tuple[str, int, str, float]]:
        """(model, version, kind, value) of every figure known now."""
        out = []
        for (model, version), scored in list(self._labelled.items()):
            if scored:
                out.append((model, version, self.kinds[model, version], float(np.mean(scored))))
        for (model, version), ring in list(self._confidence.items()):
            if ring:
                out.append((model, version, "estimated", float(np.mean(list(ring)))))
        return out


def _predicted(outputs: dict) -> tuple[str, np.ndarray]:
    """("accuracy", classes) for a classifier: its integer label output, else the arg-max of its
    scores; ("mae", values) for anything else."""
    for value in outputs.values():
        array = np.asarray(value)
        if array.dtype.kind in "iu" and array.ndim in (1, 2) and array.size == len(array):
            return "accuracy", array.reshape(len(array)).astype(np.float64)
    names, columns = output_columns(outputs)
    if not names:
        raise InvalidInput("the model's outputs are not numeric: there is nothing to score")
    for j, name in enumerate(names):
        if name.endswith(".class"):
            return "accuracy", columns[:, j]
    return "mae", columns[:, 0]


def _labels(request_id: str, label: Any, kind: str, predicted: np.ndarray) -> np.ndarray:
    """The label(s) of one request: a number for one row, or a list of one per row."""
    values = label if isinstance(label, list) else [label]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"the label of request {request_id!r} must be a number, got "
                               f"{type(value).__name__} {value!r}")  # fmt: skip
        if kind == "accuracy" and (not float(value).is_integer() or value < 0):
            raise InvalidInput(f"the label of request {request_id!r} must be a class index "
                               f"(an integer >= 0), got {value!r}")  # fmt: skip
    if len(values) != len(predicted):
        raise InvalidInput(f"request {request_id!r} predicted {len(predicted)} rows but has "
                           f"{len(values)} labels")  # fmt: skip
    return np.asarray(values, np.float64)
