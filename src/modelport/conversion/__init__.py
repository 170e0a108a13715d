"""Convert a registered ONNX version to OpenVINO IR or TensorFlow Lite, checked for parity.

    result = convert("digits:1", "tflite", precision="int8", calibration={"input": x})
    result.version     # digits:2, parent digits:1, transform "convert"
    result.report      # max abs / rel error and top-1 agreement, also stored as metrics

Nothing is registered when conversion fails or parity is outside the tolerance (unless
``force``): by default a relative bound per precision, and for int8 classifiers top-1 agreement
with the parent (``parity.tolerance``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.conversion.parity import (
    ParityReport,
    Tolerance,
    compare,
    random_inputs,
    tolerance,
)
from modelport.errors import InvalidInput
from modelport.registry import ModelVersion, Registry
from modelport.registry.artifact import Artifact
from modelport.registry.registry import borrowing
from modelport.runtimes import open_artifact
from modelport.uri import ModelRef

TARGETS = ("openvino", "tflite")


@dataclass(frozen=True, slots=True)
class Conversion:
    version: ModelVersion
    report: ParityReport
    forced: bool


@borrowing
def convert(
    ref: str | ModelRef,
    to: str,
    *,
    registry: Registry | None = None,
    precision: str = "fp32",
    calibration: Mapping[str, Any] | None = None,
    sample: Mapping[str, Any] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    min_agreement: float | None = None,
    force: bool = False,
    alias: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> Conversion:
    """Convert ``ref`` (an ONNX version) to ``to``; register the result as the next version."""
    step = on_step or (lambda _: None)
    if to not in TARGETS:
        raise InvalidInput(f"cannot convert to {to!r}; targets: {', '.join(TARGETS)}")
    limit = tolerance(precision, atol, rtol, min_agreement)
    if precision == "int8" and not calibration:
        raise InvalidInput("int8 conversion needs calibration data: pass --calibration FILE")
    parent = registry.resolve(ref)
    if parent.format != "onnx":
        raise InvalidInput(
            f"{parent.ref} is in {parent.format} format; convert from an ONNX version"
            + (f" (its parent is {parent.parent})" if parent.parent else "")
        )
    source = registry.path(parent)
    inputs, origin = _parity_inputs(parent, sample, calibration)
    with tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="convert-") as workdir:
        step(f"converting {parent.ref} to {to} ({precision})")
        artifact, params = _convert(to, source, Path(workdir), parent, precision, calibration)
        step("checking parity")
        report = _parity(source, parent, artifact, inputs, limit, origin)
        if not report.ok and not force:
            raise InvalidInput(report.refusal())
        step("registering")
        params.update({"to": to, "precision": precision, "forced": not report.ok})
        params["tolerance"] = {k[7:]: v for k, v in limit.metrics().items()}
        version = registry.add(
            artifact,
            parent.name,
            alias=alias,
            metrics=report.metrics(),
            description=f"{parent.ref} converted to {to} ({precision})",
            parent=parent.ref,
            transform="convert",
            transform_params=params,
        )
    return Conversion(version, report, not report.ok)


def _convert(
    to: str, source: Path, workdir: Path, parent: ModelVersion, precision: str,
    calibration: Mapping[str, Any] | None,
) -> tuple[Artifact, dict[str, Any]]:  # fmt: skip
    if to == "openvino":
        from modelport.conversion import openvino

        artifact = openvino.from_onnx(source, workdir, parent.signature, precision, calibration)
        route = "openvino.convert_model" + (" + nncf.quantize" if precision == "int8" else "")
        return artifact, {"tools": openvino.tool_versions(precision), "route": route}
    from modelport.conversion import tflite

    artifact, route = tflite.convert(source, workdir, parent.signature, precision, calibration)
    return artifact, {"tools": tflite.tool_versions(route), "route": route}


def _parity_inputs(
    parent: ModelVersion, sample: Mapping[str, Any] | None, calibration: Mapping[str, Any] | None
) -> tuple[Mapping[str, Any], str]:
    if sample is not None:
        return parent.signature.coerce_inputs(sample), "user data"
    if calibration is not None:
        return parent.signature.coerce_inputs(calibration), "calibration data"
    return random_inputs(parent.signature), "random data"


def _parity(
    source: Path, parent: ModelVersion, artifact: Artifact, inputs: Mapping[str, Any],
    limit: Tolerance, origin: str,
) -> ParityReport:  # fmt: skip
    from modelport.importers.keras import mute_native_stderr

    before = open_artifact(source, parent.format, parent.signature)
    after = open_artifact(artifact.root / artifact.entrypoint, artifact.format, artifact.signature)
    try:
        with mute_native_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
            return compare(before, after, inputs, limit, origin)
    finally:
        before.close()
        after.close()


__all__ = ["TARGETS", "Conversion", "ParityReport", "convert"]
