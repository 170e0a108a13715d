"""Reference statistics of a version: per-feature bins, quantiles and the output distribution.

    reference = Reference.compute(signature, feed, outputs)   # from training or evaluation data
    digest = save_reference(registry, "digits:3", reference)  # a blob, named by a version tag
    reference = load_reference(registry, version)             # None when the version has none
    counts = reference.bin(columns)                           # [features, bins] counts of rows

A feature is one column of a tabular input (``input[0]``, ``input[1]``...) or a 1-D input by its
name; an output is a feature too (``probabilities.class``: the predicted class of a classifier,
else its value). Numeric features get bins between the reference's 5% quantiles (20 bins, open at
both ends); integer features with few values are categorical, one bin per value and one for the
rest. Bins are what drift and reports compare: no raw rows are kept.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.registry.attachments import PREFIX, attach, attachment

if TYPE_CHECKING:
    from modelport.registry import ModelVersion, Registry
    from modelport.signature import Signature

KIND = "monitoring-reference"  # an attachment of the version (registry.attachments)
TAG = PREFIX + KIND
BINS = 20
MAX_CATEGORIES = 20
CHUNK = 4096  # rows binned at a time
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class Feature:
    """One feature's reference: ``kind`` numeric (``cuts``: inner bin edges) or categorical
    (``cuts``: the values, one bin each, then one bin for any other value)."""

    name: str
    kind: str
    cuts: np.ndarray
    probs: np.ndarray  # reference share of rows per bin
    quantiles: dict[str, float]
    mean: float
    std: float

    @property
    def bins(self) -> int:
        return len(self.cuts) + 1

    def bin(self, values: np.ndarray) -> np.ndarray:
        """The bin index of each value."""
        if self.kind == "numeric":
            return np.searchsorted(self.cuts, values, side="right")
        pos = np.searchsorted(self.cuts, values)
        hit = self.cuts[np.minimum(pos, len(self.cuts) - 1)] == values
        return np.where(hit, pos, len(self.cuts))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "cuts": self.cuts.tolist(),
                "probs": self.probs.tolist(), "quantiles": self.quantiles, "mean": self.mean,
                "std": self.std}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        return cls(data["name"], data["kind"], np.asarray(data["cuts"], np.float64),
                   np.asarray(data["probs"], np.float64), dict(data["quantiles"]),
                   float(data["mean"]), float(data["std"]))  # fmt: skip

    @classmethod
    def compute(cls, name: str, values: np.ndarray) -> Feature:
        values = values[np.isfinite(values)]
        if not values.size:
            raise InvalidInput(f"feature {name!r} has no finite value in the reference data")
        distinct = np.unique(values)
        if len(distinct) <= MAX_CATEGORIES and np.all(distinct == np.round(distinct)):
            kind, cuts = "categorical", distinct
        else:
            kind = "numeric"
            cuts = np.unique(np.quantile(values, np.arange(1, BINS) / BINS))
        feature = cls(name, kind, cuts, np.zeros(len(cuts) + 1), {}, 0.0, 0.0)
        counts = np.bincount(feature.bin(values), minlength=feature.bins)
        quantiles = np.quantile(values, QUANTILES)
        return cls(name, kind, cuts, counts / counts.sum(),
                   {str(q): float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
                   float(values.mean()), float(values.std()))  # fmt: skip


@dataclass(frozen=True)
class Reference:
    rows: int
    features: tuple[Feature, ...]  # inputs, then outputs
    outputs: int  # how many of ``features`` (the last ones) are outputs

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def compute(
        cls, signature: Signature, feed: Mapping[str, np.ndarray], outputs: Mapping[str, Any]
    ) -> Reference:
        names, columns = input_columns(signature, feed)
        out_names, out_columns = output_columns(outputs)
        features = [Feature.compute(n, columns[:, j]) for j, n in enumerate(names)]
        features += [Feature.compute(n, out_columns[:, j]) for j, n in enumerate(out_names)]
        return cls(len(columns), tuple(features), len(out_names))

    def bin(self, columns: np.ndarray) -> np.ndarray:
        """Counts [features, max bins] of ``columns`` [rows, features] (non-finite values
        skipped), every feature at once: a value's bin is how many of its feature's cuts lie
        at or below it (numeric) or below it (categorical), from one comparison of the values
        (a feature a row) against a padded [features, cuts] matrix, then one ``bincount``."""
        cuts, lens, numeric, categorical = self._plan
        features, width = cuts.shape[0], cuts.shape[1] + 1
        total = np.uint8 if width < 256 else np.int64
        counts = np.zeros(features * width + 1, np.int64)  # the last slot: skipped values
        for start in range(0, len(columns), CHUNK):  # bounds the comparison's temporaries
            values = np.ascontiguousarray(np.asarray(columns[start : start + CHUNK]).T,
                                          np.float64)  # fmt: skip
            index = np.empty(values.shape, np.int64)
            if len(numeric):
                ge = values[numeric, None, :] >= cuts[numeric, :, None]
                index[numeric] = ge.view(np.uint8).sum(axis=1, dtype=total)
            if len(categorical):
                mine, v, n = cuts[categorical], values[categorical], lens[categorical, None]
                below = (v[:, None, :] > mine[:, :, None]).view(np.uint8).sum(axis=1, dtype=total)
                nearest = np.minimum(below, n - 1)
                hit = mine[np.arange(len(categorical))[:, None], nearest] == v
                index[categorical] = np.where(hit, below, n)
            index += (np.arange(features) * width)[:, None]
            index[~np.isfinite(values)] = features * width
            counts += np.bincount(index.ravel(), minlength=len(counts))
        return counts[:-1].reshape(features, width)

    @cached_property
    def _plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cuts [features, most cuts] padded with +inf (no value counts past them), cuts per
        feature, and the numeric and categorical features' positions."""
        most = max(len(f.cuts) for f in self.features)
        cuts = np.full((len(self.features), most), np.inf)
        for j, feature in enumerate(self.features):
            cuts[j, : len(feature.cuts)] = feature.cuts
        lens = np.array([len(f.cuts) for f in self.features], np.int64)
        kinds = np.array([f.kind for f in self.features])
        return cuts, lens, np.flatnonzero(kinds == "numeric"), np.flatnonzero(kinds != "numeric")

    def to_dict(self) -> dict[str, Any]:
        return {"format": 1, "rows": self.rows, "outputs": self.outputs,
                "features": [f.to_dict() for f in self.features]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        features = tuple(Feature.from_dict(f) for f in data["features"])
        return cls(int(data["rows"]), features, int(data["outputs"]))


def input_columns(signature: Signature, feed: Mapping[str, np.ndarray]) -> tuple[list, np.ndarray]:
    """Feature names and a float64 [rows, features] matrix of a model's inputs."""
    names: list[str] = []
    parts: list[np.ndarray] = []
    for spec in signature.inputs:
        array = np.asarray(feed[spec.name])
        if array.dtype.kind not in "biuf" or array.ndim not in (1, 2):
            raise InvalidInput(
                f"input {spec.name!r} is {array.dtype} of shape {list(array.shape)}: drift "
                "statistics take numeric inputs of one or two dimensions (rows, features)"
            )
        column = array.reshape(len(array), -1).astype(np.float64, copy=False)
        width = column.shape[1]
        names += [spec.name] if array.ndim == 1 else [f"{spec.name}[{j}]" for j in range(width)]
        parts.append(column)
    return names, np.hstack(parts) if len(parts) > 1 else parts[0]


def output_columns(outputs: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Output features: the predicted class of a [rows, classes] float output, else the values
    of each numeric 1-D or [rows, 1] output; other outputs are not tracked."""
    names: list[str] = []
    parts: list[np.ndarray] = []
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or array.ndim not in (1, 2) or not len(array):
            continue
        if array.ndim == 2 and array.shape[1] > 1:
            if array.dtype.kind != "f":
                continue
            names.append(f"{name}.class")
            parts.append(array.argmax(axis=1).astype(np.float64)[:, None])
        else:
            names.append(name)
            parts.append(array.reshape(len(array), 1).astype(np.float64, copy=False))
    rows = len(parts[0]) if parts else 0
    return names, np.hstack(parts) if parts else np.zeros((rows, 0))


def probabilities(outputs: Mapping[str, Any]) -> np.ndarray | None:
    """The first output that reads as class probabilities (rows sum to 1), else None."""
    for value in outputs.values():
        array = np.asarray(value)
        if array.dtype.kind == "f" and array.ndim == 2 and array.shape[1] > 1 and len(array):
            sums = array.sum(axis=1)
            if array.min() >= 0 and np.allclose(sums, 1.0, atol=1e-3):
                return array
    return None


def save_reference(registry: Registry, ref: str, reference: Reference) -> str:
    """Store ``reference`` as the version's attachment; returns the blob's digest."""
    with tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="reference-") as work:
        path = Path(work) / "reference.json"
        path.write_text(json.dumps(reference.to_dict()))
        return attach(registry, ref, KIND, path).tags[TAG]


def load_reference(registry: Registry, version: ModelVersion) -> Reference | None:
    path = attachment(registry, version, KIND)
    if path is None:
        return None
    return Reference.from_dict(json.loads(Path(path).read_text()))


def baseline(registry: Registry, ref: str, data: Any, chunk: int = 4096) -> ModelVersion:
    """Compute a version's reference from ``data`` (an array, a name -> array mapping or the
    columns of one table), running the model on it for the output distribution; store it."""
    from modelport.runtimes import RuntimeOptions, open_artifact
    from modelport.signature import as_input_dict

    version = registry.resolve(ref)
    signature = version.signature
    if isinstance(data, Mapping) and len(signature.inputs) == 1:
        name = signature.inputs[0].name
        if name not in data and all(np.ndim(v) == 1 for v in data.values()):
            data = np.column_stack([np.asarray(v) for v in data.values()])
    try:
        feed = signature.coerce_inputs(as_input_dict(signature, data))
    except InvalidInput as exc:
        raise InvalidInput(f"the reference data does not match {version.ref}: {exc}") from None
    rows = len(next(iter(feed.values())))
    options = RuntimeOptions.from_settings(registry.settings)
    runtime = open_artifact(registry.path(version), version.format, signature, options)
    try:
        parts = [runtime.predict({k: v[i : i + chunk] for k, v in feed.items()})
                 for i in range(0, rows, chunk)]  # fmt: skip
    finally:
        runtime.close()
    outputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    save_reference(registry, version.ref, Reference.compute(signature, feed, outputs))
    return registry.get(version.ref)
