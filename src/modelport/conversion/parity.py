"""Parity: run the parent and the converted child on the same inputs and compare every output.

Per output: max absolute error ``max |child - parent|``; relative error ``max |child - parent| /
max |parent|`` (scale-free: logits and probabilities are judged alike, stable where the parent is
near zero); top-1 agreement (share of rows whose argmax over the last axis is the same) for float
outputs with more than one class, and for integer outputs (labels) the share of rows that are
equal.

What an output must meet follows what it is and the precision (``tolerance``):

    tol = tolerance("int8")          # classifier outputs: top-1 agreement >= 97%
    tol.rule(output)                 # "agreement"; other outputs: "relative" (<= 0.25)
    tolerance("fp32", atol=1e-5)     # an explicit bound on max abs error, for every output
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.runtimes import Runtime
from modelport.signature import Signature

# Default relative tolerance by target precision: fp32 keeps ~7 digits (graph rewrites reorder
# sums), fp16 ~3. int8 quantises activations to 256 levels per tensor, so the figure that tells a
# good conversion from a broken one is the classifier's top-1 agreement (a good int8 CNN keeps
# 98-100%, a broken one falls to chance); outputs that are not class scores keep a relative bound.
RTOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.25}
MIN_AGREEMENT = {"int8": 0.97}
RANDOM_ROWS = 32


@dataclass(frozen=True, slots=True)
class OutputParity:
    name: str
    max_abs: float
    max_rel: float
    top1: float | None


@dataclass(frozen=True, slots=True)
class Tolerance:
    """What every output must meet: ``atol`` (if given) bounds max abs error of every output;
    otherwise classifier outputs need ``min_agreement`` (if set) and the others ``rtol``."""

    rtol: float
    min_agreement: float | None = None
    atol: float | None = None

    def rule(self, out: OutputParity) -> str:
        if self.atol is not None:
            return "absolute"
        if self.min_agreement is not None and out.top1 is not None:
            return "agreement"
        return "relative"

    def passes(self, out: OutputParity) -> bool:
        rule = self.rule(out)
        if rule == "absolute":
            return out.max_abs <= self.atol
        if rule == "agreement":
            return out.top1 >= self.min_agreement - 1e-12
        return out.max_rel <= self.rtol

    def bound(self, out: OutputParity) -> str:
        """The bound in words, e.g. ``top-1 agreement >= 97%``."""
        rule = self.rule(out)
        if rule == "absolute":
            return f"max abs error <= {self.atol:g}"
        if rule == "agreement":
            return f"top-1 agreement >= {self.min_agreement:.1%}"
        return f"relative error <= {self.rtol:g}"

    def metrics(self) -> dict[str, float]:
        out = {"parity_rtol": self.rtol}
        if self.min_agreement is not None:
            out["parity_min_agreement"] = self.min_agreement
        if self.atol is not None:
            out["parity_atol"] = self.atol
        return out


@dataclass(frozen=True, slots=True)
class ParityReport:
    outputs: tuple[OutputParity, ...]
    tolerance: Tolerance
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
        return all(self.tolerance.passes(o) for o in self.outputs)

    @property
    def failed(self) -> tuple[OutputParity, ...]:
        return tuple(o for o in self.outputs if not self.tolerance.passes(o))

    @property
    def worst(self) -> OutputParity:
        return (self.failed or sorted(self.outputs, key=lambda o: -o.max_rel))[0]

    def metrics(self) -> dict[str, float]:
        out = {"parity_max_abs_error": self.max_abs, "parity_max_rel_error": self.max_rel,
               "parity_rows": float(self.rows), **self.tolerance.metrics()}  # fmt: skip
        if self.top1 is not None:
            out["parity_top1_agreement"] = self.top1
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def refusal(self) -> str:
        tol = self.tolerance
        failed = "; ".join(
            f"output {o.name!r} {_figures(o)}, outside {tol.bound(o)}" for o in self.failed
        )
        passed = [o for o in self.outputs if tol.passes(o)]
        within = "".join(f"; output {o.name!r} {_figures(o)}, within" for o in passed)
        return (
            f"parity check failed on {self.rows} rows of {self.source}: {failed}{within}; pass "
            "--force to register it anyway, or loosen the bound (--min-agreement, --rtol, --atol)"
        )


def _figures(out: OutputParity) -> str:
    top1 = "" if out.top1 is None else f"top-1 agreement {out.top1:.1%}, "
    return f"({top1}max abs error {out.max_abs:.3g}, relative {out.max_rel:.3g})"


def tolerance(
    precision: str,
    atol: float | None = None,
    rtol: float | None = None,
    min_agreement: float | None = None,
) -> Tolerance:
    """The default bounds for ``precision``, with any of them overridden."""
    if precision not in RTOL:
        raise InvalidInput(f"precision {precision!r} is not one of {', '.join(RTOL)}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and (not np.isfinite(value) or value < 0):
            raise InvalidInput(f"{name} must be a non-negative number, got {value}")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise InvalidInput(f"min agreement must be in [0, 1], got {min_agreement}")
    return Tolerance(
        float(RTOL[precision] if rtol is None else rtol),
        MIN_AGREEMENT.get(precision) if min_agreement is None else float(min_agreement),
        None if atol is None else float(atol),
    )


def random_inputs(signature: Signature, rows: int = RANDOM_ROWS, seed: int = 0) -> dict[str, Any]:
    """Inputs drawn within the signature: free batch dim -> ``rows``, other free dims -> 8."""
    from modelport.samples import synthetic_inputs

    return synthetic_inputs(signature, rows, seed=seed)


def compare(
    parent: Runtime,
    child: Runtime,
    inputs: Mapping[str, Any],
    tol: Tolerance,
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
    return ParityReport(tuple(reports), tol, rows, source)


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
    elif want.dtype.kind in "iub" and want.ndim >= 1 and a.size:  # labels: rows equal exactly
        top1 = float(np.mean(np.all((a == b).reshape(len(a), -1), axis=1)))
    return OutputParity(name, diff, rel, top1)
