"""The golden gate: a verified release must load and answer its golden requests before a
device switches to it.

    budget = Budget(max_memory_mb=256, max_latency_ms=50, hardware="arm", runtimes=("litert",))
    runtime = admit(release, budget)      # loaded and checked, or GateFailed(reason, message)

Checks, in order: the hardware class and runtime the bundle asks for, the declared model size
against the memory budget, load, then each golden request: outputs finite, within
``atol + rtol * |expected|``, the slowest request within the latency budget, and the resident
memory the load added within the memory budget.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np

from modelport.errors import ModelportError


class GateFailed(ModelportError):
    status = 422

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Budget:
    hardware: str
    runtimes: tuple[str, ...]
    max_memory_mb: float = 1024.0
    max_latency_ms: float = 1000.0


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:  # not Linux: the peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def admit(release, budget: Budget, on_golden=None):  # release: bundle.Release -> Runtime
    """Load ``release`` and run its golden set; returns the runtime, or raises GateFailed."""
    from modelport.runtimes import open_artifact
    from modelport.signature import Signature

    manifest = release.manifest
    needs = manifest["requirements"]
    if needs["hardware"] and budget.hardware not in needs["hardware"]:
        raise GateFailed(
            "wrong-hardware",
            f"the bundle is for {', '.join(needs['hardware'])}, this device is {budget.hardware}",
        )
    if needs["runtime"] not in budget.runtimes:
        raise GateFailed(
            "missing-runtime",
            f"the bundle needs {needs['runtime']}; this device "
            f"has {', '.join(budget.runtimes) or 'none'}",
        )
    if needs["model_bytes"] / 2**20 > budget.max_memory_mb:
        raise GateFailed(
            "over-memory",
            f"the model is {needs['model_bytes'] / 2**20:.1f} MB; "
            f"the budget is {budget.max_memory_mb:g} MB",
        )
    before = _rss_mb()
    try:
        runtime = open_artifact(
            release.entrypoint, manifest["format"], Signature.from_dict(manifest["signature"])
        )
    except ModelportError as exc:
        raise GateFailed("load-failed", exc.message) from None
    try:
        if on_golden is not None:
            on_golden()
        _golden(release, runtime, budget)
        grown = _rss_mb() - before
        if grown > budget.max_memory_mb:
            raise GateFailed(
                "over-memory",
                f"loading and running took {grown:.1f} MB; the "
                f"budget is {budget.max_memory_mb:g} MB",
            )
    except BaseException:
        runtime.close()
        raise
    return runtime


def _golden(release, runtime, budget: Budget) -> None:
    inputs, expected = release.golden()
    golden = release.manifest["golden"]
    rows = len(next(iter(inputs.values())))
    slowest = 0.0
    for row in range(rows):
        one = {k: v[row : row + 1] for k, v in inputs.items()}
        start = time.perf_counter()
        try:
            got = runtime.predict(one)
        except ModelportError as exc:
            raise GateFailed("golden-error", f"golden request {row}: {exc.message}") from None
        slowest = max(slowest, (time.perf_counter() - start) * 1000)
        for name, want in expected.items():
            have = np.asarray(got.get(name))
            want = want[row : row + 1]
            if have.shape != want.shape:
                raise GateFailed(
                    "golden-mismatch",
                    f"golden request {row}: output {name!r} has "
                    f"shape {list(have.shape)}, expected {list(want.shape)}",
                )
            if have.dtype.kind in "fc" and not np.isfinite(have).all():
                raise GateFailed(
                    "non-finite", f"golden request {row}: output {name!r} has NaN or Inf"
                )
            limit = golden["atol"] + golden["rtol"] * np.abs(want)
            worst = float(np.max(np.abs(have.astype(np.float64) - want)))
            if np.any(np.abs(have.astype(np.float64) - want) > limit):
                raise GateFailed(
                    "golden-mismatch",
                    f"golden request {row}: output {name!r} off "
                    f"by {worst:.3g} (atol {golden['atol']:g})",
                )
    if slowest > budget.max_latency_ms:
        raise GateFailed(
            "over-latency",
            f"the slowest golden request took {slowest:.1f} ms; "
            f"the budget is {budget.max_latency_ms:g} ms",
        )
