"""Checks a candidate passes before its rollout is stored: signature, warm load, golden set.

    check_compatible(stable.signature, candidate.signature)   # InvalidInput naming what differs
    preflight(registry, stable, candidate, gates, "golden.npz")  # evidence for the decision log

A golden set is an ``.npz`` file holding one array per input (and optionally ``label``): both
versions answer it; the candidate must agree with stable on ``gates.min_agreement`` of the rows,
be no less accurate than stable (by more than one point) when labels are given, and take no more
than ``gates.max_p99_ratio`` times stable's median time per call.
"""

from __future__ import annotations

from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput, ModelportError
from modelport.rollouts.compare import Comparison
from modelport.signature import Signature, TensorSpec

if TYPE_CHECKING:
    from modelport.registry import ModelVersion, Registry
    from modelport.rollouts.gates import Gates


def check_compatible(stable: Signature, candidate: Signature) -> dict[str, Any]:
    """The candidate must take every input stable takes and give the outputs stable gives."""
    problems = []
    theirs = {s.name: s for s in candidate.inputs}
    for spec in stable.inputs:
        problems += _differences("input", spec, theirs.get(spec.name))
    extra = sorted(set(theirs) - set(stable.input_names))
    if extra:
        problems.append(f"the candidate needs input(s) stable does not: {extra}")
    outs = {s.name: s for s in candidate.outputs}
    for spec in stable.outputs:
        problems += _differences("output", spec, outs.get(spec.name))
    if problems:
        raise InvalidInput("the candidate's signature is incompatible with stable's: "
                           + "; ".join(problems))  # fmt: skip
    return {"compatible": True, "signature": candidate.describe()}


def _differences(kind: str, ours: TensorSpec, theirs: TensorSpec | None) -> list[str]:
    if theirs is None:
        return [f"{kind} {ours.name!r} is missing"]
    out = []
    if ours.dtype != theirs.dtype:
        out.append(f"{kind} {ours.name!r} is {theirs.dtype}, stable's is {ours.dtype}")
    same_rank = len(ours.shape) == len(theirs.shape)
    if not same_rank or any(
        a != b and a >= 0 and b >= 0 for a, b in zip(ours.shape, theirs.shape, strict=False)
    ):
        out.append(f"{kind} {ours.name!r} is {theirs.describe()}, stable's is {ours.describe()}")
    return out


def preflight(registry: Registry, stable: ModelVersion, candidate: ModelVersion, gates: Gates,
              golden: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Load both versions, warm them, and check the golden set; the evidence as a dict."""
    from modelport.api import load
    from modelport.serving.loaded import warm_up

    runtimes = []
    try:
        for version in (stable, candidate):
            try:
                runtime = load(version, registry=registry)
            except ModelportError as exc:
                raise InvalidInput(f"{version.ref} does not load: {exc}") from None
            runtimes.append(runtime)
        try:
            seconds = [warm_up(r) for r in runtimes]
        except Exception as exc:
            raise InvalidInput(f"the warm-up call failed: {exc}") from None
        warm = {"stable": round(seconds[0] * 1e3, 3), "candidate": round(seconds[1] * 1e3, 3)}
        evidence: dict[str, Any] = {"warm_ms": warm}
        if golden is not None:
            evidence["golden"] = _golden(Path(golden), stable.signature, runtimes, gates)
        return evidence
    finally:
        for runtime in runtimes:
            runtime.close()


def _golden(path: Path, signature: Signature, runtimes: list, gates: Gates) -> dict[str, Any]:
    try:
        data = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the golden set {path}: {exc}") from None
    feed = {name: data[name] for name in signature.input_names if name in data}
    if len(feed) != len(signature.inputs):
        raise InvalidInput(f"the golden set {path} needs arrays {signature.input_names}; "
                           f"it has {sorted(data)}")  # fmt: skip
    feed = signature.coerce_inputs(feed)
    outputs, times = [], []
    for runtime in runtimes:  # the median of five calls: one call is at the mercy of the machine
        calls = []
        for _ in range(5):
            started = perf_counter()
            result = runtime.predict(feed)
            calls.append(perf_counter() - started)
        outputs.append(result)
        times.append(max(sorted(calls)[2], gates.latency_floor_ms / 1e3))
    comparison = Comparison.for_signature(signature)
    agreed, rows, _ = comparison.compare(outputs[0], outputs[1])
    summary: dict[str, Any] = {"rows": rows, "agreement": agreed / max(rows, 1),
                              "latency_ratio": times[1] / max(times[0], 1e-9)}  # fmt: skip
    problems = []
    if summary["agreement"] < gates.min_agreement:
        problems.append(f"agreement {summary['agreement']:.4f} < {gates.min_agreement:g}")
    if "label" in data:
        labels = [str(v) for v in np.asarray(data["label"]).reshape(-1)]
        accuracy = [np.mean([a == b for a, b in zip(comparison.classes(o), labels, strict=False)])
                    for o in outputs]  # fmt: skip
        summary["accuracy"] = {"stable": float(accuracy[0]), "candidate": float(accuracy[1])}
        if accuracy[1] < accuracy[0] - 0.01:
            problems.append(f"accuracy {accuracy[1]:.4f} < stable's {accuracy[0]:.4f}")
    if summary["latency_ratio"] > gates.max_p99_ratio:
        problems.append(f"latency {summary['latency_ratio']:.2f}x stable's > "
                        f"{gates.max_p99_ratio:g}x")  # fmt: skip
    if problems:
        raise InvalidInput(f"the candidate fails the golden set {path.name}: {'; '.join(problems)}")
    return summary
