"""ONNX -> OpenVINO IR (``model.xml`` + ``model.bin``): float32, float16 weights, or int8.

``openvino.convert_model`` reads the ONNX graph through OpenVINO's ONNX frontend; ``save_model``
writes the IR. float16 halves the weights file; the CPU plugin still computes in float32.
int8 is NNCF's post-training quantisation (``nncf.quantize``) calibrated on the user's data:
int8 weights and FakeQuantize nodes on activations, run by the CPU plugin's int8 kernels.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.errors import BackendError, InvalidInput, MissingDependency, first_line
from modelport.importers.keras import quiet
from modelport.registry.artifact import Artifact
from modelport.runtimes.openvino import NOISE, _openvino
from modelport.signature import Signature

FORMAT = "openvino"
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_ROWS = 300


def tool_versions(precision: str = "fp32") -> dict[str, str]:
    out = {"openvino": _openvino().get_version().split("-")[0]}
    if precision == "int8":
        out["nncf"] = importlib.metadata.version("nncf")
    return out


def from_onnx(
    source: Path,
    folder: Path,
    signature: Signature,
    precision: str = "fp32",
    calibration: Mapping[str, Any] | None = None,
) -> Artifact:
    """Convert the ONNX file ``source`` into an IR under ``folder``; names follow ``signature``."""
    if precision not in PRECISIONS:
        raise InvalidInput(
            f"OpenVINO conversion supports {', '.join(PRECISIONS)}, not {precision!r}"
        )
    ov = _openvino()
    try:
        model = ov.convert_model(str(source))
    except Exception as exc:  # OpConversionFailure, GeneralFailure...: one line, named
        raise InvalidInput(f"OpenVINO cannot convert {source.name}: {_unsupported(exc)}") from None
    if precision == "int8":
        model = _quantize(model, signature, calibration or {})
    target = folder / "model.xml"
    try:
        ov.save_model(model, str(target), compress_to_fp16=precision == "fp16")
    except Exception as exc:
        raise BackendError(f"OpenVINO could not write the IR: {first_line(exc, NOISE)}") from None
    return Artifact(FORMAT, folder, ("model.xml", "model.bin"), "model.xml", signature)


def _quantize(model: Any, signature: Signature, calibration: Mapping[str, Any]) -> Any:
    try:
        import nncf
    except ImportError:
        raise MissingDependency("nncf", "nncf") from None
    data = signature.coerce_inputs(calibration)
    rows = min(min(len(v) for v in data.values()), CALIBRATION_ROWS)
    names = signature.input_names
    items = [
        data[names[0]][i : i + 1] if len(names) == 1 else {n: data[n][i : i + 1] for n in names}
        for i in range(rows)
    ]
    try:
        with quiet():
            return nncf.quantize(model, nncf.Dataset(items), subset_size=rows)
    except Exception as exc:
        raise BackendError(f"NNCF could not quantise the model: {first_line(exc, NOISE)}") from None


def _unsupported(exc: BaseException) -> str:
    text = str(exc)
    for line in text.splitlines():
        if "No conversion rule" in line or "not supported" in line.lower():
            return line.strip().lstrip("-").strip()
    return first_line(exc, NOISE)
