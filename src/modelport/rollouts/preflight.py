"""Checks a candidate passes before its rollout is stored: signature, warm load, golden set.

    check_compatible(stable.signature, candidate.signature)   # InvalidInput naming what differs
    preflight(registry, stable, candidate, gates, "golden.npz")  # evidence for the decision log

A golden set is an ``.npz`` file holding one array per input (and optionally ``label``), or,
when none is given, the evaluation set stored with the candidate or else with stable
(``registry.evalset``): both versions answer it; the candidate must agree with stable on
``gates.min_agreement`` of the rows, be no less accurate than stable (by more than one point)
when labels are given, and take no more than ``gates.max_p99_ratio`` times stable's median time
per call. With a memory budget, the memory the candidate adds to the process once loaded and
warm (resident set size, measured around its load) must fit in it.
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
              golden: str | Path | None = None,
              memory_budget_mb: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Load both versions, warm them, check the memory budget and the golden set; the evidence
    as a dict."""
    from modelport.api import load
    from modelport.serving.loaded import warm_up

    runtimes, seconds, added = [], [], 0.0
    try:
        for version in (stable, candidate):
            before = _resident_mb()
            try:
                runtimes.append(load(version, registry=registry))
                seconds.append(warm_up(runtimes[-1]))
            except ModelportError as exc:
                raise InvalidInput(f"{version.ref} does not load: {exc}") from None
            except Exception as exc:
                raise InvalidInput(f"the warm-up call of {version.ref} failed: {exc}") from None
            added = _resident_mb() - before  # the candidate's, after the last turn
        warm = {"stable": round(seconds[0] * 1e3, 3), "candidate": round(seconds[1] * 1e3, 3)}
        evidence: dict[str, Any] = {"warm_ms": warm, "memory_mb": round(added, 2)}
        if memory_budget_mb is not None and added > memory_budget_mb:
            raise InvalidInput(
                f"the candidate adds {added:.2f} MiB to the process once loaded "
                f"and warm, over the budget of {memory_budget_mb:g} MiB"
            )
        data, source = _golden_set(registry, stable, candidate, golden)
        if data is not None:
            checked = _golden(data, source, stable.signature, runtimes, gates)
            evidence["golden"] = {"source": source, **checked}
        return evidence
    finally:
        for runtime in runtimes:
            runtime.close()


def _resident_mb() -> float:
    """This process's resident set size in MiB (Linux; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _golden_set(registry: Registry, stable: ModelVersion, candidate: ModelVersion,
                golden: str | Path | None) -> tuple[dict[str, Any] | None, str]:  # fmt: skip
    """The given golden file, else the candidate's stored evaluation set, else stable's."""
    from modelport.registry import evalset

    if golden is not None:
        path = Path(golden)
        try:
            return dict(np.load(path, allow_pickle=False)), path.name
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read the golden set {path}: {exc}") from None
    for version in (candidate, stable):
        data = evalset.stored(registry, version)
        if data is not None:
            return data, f"the evaluation set of {version.ref}"
    return None, ""


def _golden(data: dict[str, Any], source: str, signature: Signature, runtimes: list,
            gates: Gates) -> dict[str, Any]:  # fmt: skip
    feed = {name: data[name] for name in signature.input_names if name in data}
    if len(feed) != len(signature.inputs):
        raise InvalidInput(f"the golden set {source} needs arrays {signature.input_names}; "
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
        raise InvalidInput(f"the candidate fails the golden set ({source}): {'; '.join(problems)}")
    return summary
