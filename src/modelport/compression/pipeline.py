"""One compression step against the registry: build a candidate from a parent version, measure it
side by side, check the accuracy budget, and register it with its lineage, or refuse to.

    step = Step(registry, "digits:1", eval_data=..., eval_labels=..., max_accuracy_drop=0.005)
    with step:
        make = lambda src, dst: quantize(src, dst, QuantizeConfig(8))  # writes dst, returns params
        outcome = step.run("int8-dynamic", "quantize", make)
    outcome.version      # the new ModelVersion, or None with outcome.rejected saying why
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.compression import graph as gx
from modelport.compression.data import Dataset, as_dataset
from modelport.compression.evaluate import (
    Comparison,
    Measured,
    compare,
    evaluation_rows,
    measure,
    session,
)
from modelport.errors import InvalidInput
from modelport.registry import ModelVersion, Registry

Build = Callable[[Path, Path], dict[str, Any]]


@dataclass
class Candidate:
    label: str
    transform: str
    params: dict[str, Any]
    path: Path
    comparison: Comparison
    within: bool = True  # within the accuracy budget


@dataclass
class Outcome:
    parent: ModelVersion
    candidate: Candidate
    version: ModelVersion | None
    rejected: str | None = None

    @property
    def comparison(self) -> Comparison:
        return self.candidate.comparison


class Step:
    """A parent version plus the evaluation settings shared by every candidate made from it."""

    def __init__(
        self,
        registry: Registry,
        parent: str | ModelVersion,
        *,
        eval_data: Any = None,
        eval_labels: Any = None,
        max_accuracy_drop: float | None = None,
        threads: int = 0,
        batches: tuple[int, ...] = (1, 32),
        rounds: int = 15,
        owns_registry: bool = False,
    ) -> None:
        self.registry = registry
        self._owns_registry = owns_registry  # made for this step: closed with it
        self.parent = parent if isinstance(parent, ModelVersion) else registry.resolve(parent)
        gx.require_onnx(self.parent.format, "compression")
        self.parent_path = registry.path(self.parent)
        signature = self.parent.signature
        if eval_labels is not None and eval_data is None:
            raise InvalidInput("evaluation labels need evaluation data")
        self.eval = None if eval_data is None else as_dataset(eval_data, signature, eval_labels)
        if max_accuracy_drop is not None:
            if not 0.0 <= float(max_accuracy_drop) < 1.0:
                raise InvalidInput(
                    f"the accuracy budget must be in [0, 1), got {max_accuracy_drop}"
                )
            if self.eval is None:
                raise InvalidInput("the accuracy guard needs an evaluation set (--eval-data)")
        self.max_accuracy_drop = max_accuracy_drop
        self.threads, self.batches, self.rounds = threads, batches, rounds
        self._tmp = tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="compress-")
        self.workdir = Path(self._tmp.name)
        self._count = 0
        self._parent: Measured | None = None

    def measured_parent(self) -> Measured:
        """The parent's sizes and outputs on the evaluation rows, measured for the first
        candidate and kept for the others."""
        if self._parent is None:
            sess = session(self.parent_path, self.threads)
            rows = evaluation_rows(self.parent.signature, self.eval)
            self._parent = measure(self.parent_path, sess, rows)
        return self._parent

    def close(self) -> None:
        self._tmp.cleanup()
        if self._owns_registry:
            self.registry.close()

    def __enter__(self) -> Step:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def dataset(self, data: Any, labels: Any = None) -> Dataset:
        return as_dataset(data, self.parent.signature, labels)

    def build(self, label: str, transform: str, make: Build) -> Candidate:
        """Make one candidate file and measure it against the parent (nothing is registered)."""
        self._count += 1
        folder = self.workdir / f"c{self._count}"
        folder.mkdir()
        dst = folder / "model.onnx"
        params = make(self.parent_path, dst)
        if not dst.is_file():  # distillation exports to its own file name
            raise InvalidInput(f"the {transform} step produced no model")
        gx.save(gx.compact_names(gx.strip(gx.load(dst))), dst)
        comparison = compare(
            self.parent_path,
            dst,
            self.parent.signature,
            self.eval,
            labels=(self.parent.ref, label),
            batches=self.batches,
            threads=self.threads,
            rounds=self.rounds,
            parent=self.measured_parent(),
        )
        candidate = Candidate(label, transform, params, dst, comparison)
        candidate.within = self.within_budget(comparison)[0]
        return candidate

    def within_budget(self, comparison: Comparison) -> tuple[bool, str | None]:
        if self.max_accuracy_drop is None:
            return True, None
        drop, what = comparison.guard_drop()
        if drop <= self.max_accuracy_drop + 1e-12:
            return True, None
        return False, (
            f"not registered: the {what} is {drop * 100:.2f} points, over the budget of "
            f"{self.max_accuracy_drop * 100:.2f} points "
            f"(--max-accuracy-drop {self.max_accuracy_drop})"
        )

    def register(
        self,
        candidate: Candidate,
        *,
        name: str | None = None,
        alias: str | None = None,
    ) -> Outcome:
        """Register ``candidate`` as a new version if it is within the accuracy budget."""
        ok, why = self.within_budget(candidate.comparison)
        if not ok:
            return Outcome(self.parent, candidate, None, why)
        from modelport.importers.onnx import from_path

        version = self.registry.add(
            from_path(candidate.path),
            name or self.parent.name,
            alias=alias,
            metrics=candidate.comparison.metrics(),
            tags={"compression": candidate.label},
            description=f"{candidate.label} of {self.parent.ref}",
            parent=self.parent.ref,
            transform=candidate.transform,
            transform_params=candidate.params,
        )
        return Outcome(self.parent, candidate, version)

    def run(self, label: str, transform: str, make: Build, **register: Any) -> Outcome:
        return self.register(self.build(label, transform, make), **register)
