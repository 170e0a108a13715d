"""Parity: run the parent and the converted child on the same inputs and compare every output.

Per output: max absolute error ``max |child - parent|``; relative error ``max |child - parent| /
max |parent|`` (scale-free, stable where the parent is near zero); top-1 agreement (share of rows
whose argmax over the last axis is the same) for float outputs with more than one class.
A conversion passes when every output's max absolute error is within ``atol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.runtimes import Runtime
from modelport.signature import Signature

# Default max-abs tolerance by target precision. fp16 keeps ~3 decimal digits; int8 quantises
# activations to 256 levels per tensor: probabilities move by a few hundredths, and by up to
# ~0.13 on the odd borderline row (measured), so the int8 bound catches broken conversions and
# top-1 agreement is the figure to read.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "int8": 2e-1}
RANDOM_ROWS = 32


@dataclass(frozen=True, slots=True)
class OutputParity:
    name: str
    max_abs: float
    max_rel: float
    top1: float | None


@dataclass(frozen=True, slots=True)
class ParityReport:
    outputs: tuple[OutputParity, ...]
    atol: float
    rows: int
    source: str  # "user data" or "random data"

    @property
    def max_abs(self) -> float:
        return max(o.max_abs for o in self.outputs)

    @property
    def max_rel(self) -> float:
        return max(o.max_rel for o in self.outputs)

    @property
    def top1(self) -> float | None:
        values = [o.top1 for o in self.outputs if o.top1 is not None]
        return min(values) if values else None

    @property
    def ok(self) -> bool:
        return all(o.max_abs <= self.atol for o in self.outputs)

    @property
    def worst(self) -> OutputParity:
        return max(self.outputs, key=lambda o: o.max_abs)

    def metrics(self) -> dict[str, float]:
        out = {"parity_max_abs_error": self.max_abs, "parity_max_rel_error": self.max_rel,
               "parity_atol": self.atol, "parity_rows": float(self.rows)}  # fmt: skip
        if self.top1 is not None:
            out["parity_top1_agreement"] = self.top1
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def refusal(self) -> str:
        w = self.worst
        return (
            f"parity check failed: output {w.name!r} differs by up to {w.max_abs:.3g} "
            f"(relative {w.max_rel:.3g}), above the tolerance {self.atol:g} on {self.rows} rows "
            f"of {self.source}; pass --force to register it anyway, or --atol to loosen the bound"
        )


def tolerance(precision: str, atol: float | None = None) -> float:
    if atol is not None:
        if not np.isfinite(atol) or atol < 0:
            raise InvalidInput(f"atol must be a non-negative number, got {atol}")
        return float(atol)
    if precision not in TOLERANCES:
        raise InvalidInput(f"precision {precision!r} is not one of {', '.join(TOLERANCES)}")
    return TOLERANCES[precision]


def random_inputs(signature: Signature, rows: int = RANDOM_ROWS, seed: int = 0) -> dict[str, Any]:
    """Inputs drawn within the signature: free batch dim -> ``rows``, other free dims -> 8."""
    from modelport.samples import synthetic_inputs

    return synthetic_inputs(signature, rows, seed=seed)


def compare(
    parent: Runtime,
    child: Runtime,
    inputs: Mapping[str, Any],
    atol: float,
    source: str = "user data",
) -> ParityReport:
    expected = parent.predict(inputs)
    got = child.predict(inputs)
    rows = int(next(iter(parent.signature.coerce_inputs(inputs).values())).shape[0])
    reports = []
    for name, want in expected.items():
        if name not in got:
            raise InvalidInput(f"the converted model has no output {name!r}; it has {list(got)}")
        have = np.asarray(got[name])
        want = np.asarray(want)
        if have.shape != want.shape:
            raise InvalidInput(
                f"output {name!r} has shape {list(have.shape)} after conversion, "
                f"{list(want.shape)} before"
            )
        reports.append(_one(name, want, have))
    return ParityReport(tuple(reports), atol, rows, source)


def _one(name: str, want: np.ndarray, have: np.ndarray) -> OutputParity:
    if want.dtype.kind not in "fiub":
        same = bool(np.array_equal(want, have))
        return OutputParity(name, 0.0 if same else float("inf"), 0.0 if same else 1.0, None)
    a = want.astype(np.float64)
    b = have.astype(np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    top1 = None
    if want.dtype.kind == "f" and want.ndim >= 2 and want.shape[-1] > 1:
        top1 = float(np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))
    return OutputParity(name, diff, rel, top1)
