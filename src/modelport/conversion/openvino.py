"""ONNX -> OpenVINO IR (``model.xml`` + ``model.bin``), float32 or float16 weights.

``openvino.convert_model`` reads the ONNX graph through OpenVINO's ONNX frontend; ``save_model``
writes the IR. float16 halves the weights file; the CPU plugin still computes in float32.
int8 needs NNCF's post-training quantisation and is not offered here.
"""

from __future__ import annotations

from pathlib import Path

from modelport.errors import BackendError, InvalidInput
from modelport.registry.artifact import Artifact
from modelport.runtimes.openvino import _first_line, _openvino
from modelport.signature import Signature

FORMAT = "openvino"
PRECISIONS = ("fp32", "fp16")


def tool_versions() -> dict[str, str]:
    return {"openvino": _openvino().get_version().split("-")[0]}


def from_onnx(
    source: Path, folder: Path, signature: Signature, precision: str = "fp32"
) -> Artifact:
    """Convert the ONNX file ``source`` into an IR under ``folder``; names follow ``signature``."""
    if precision not in PRECISIONS:
        raise InvalidInput(
            f"OpenVINO conversion supports {', '.join(PRECISIONS)}, not {precision!r} "
            "(int8 needs NNCF post-training quantisation; use --to tflite --precision int8)"
        )
    ov = _openvino()
    try:
        model = ov.convert_model(str(source))
    except Exception as exc:  # OpConversionFailure, GeneralFailure...: one line, named
        raise InvalidInput(f"OpenVINO cannot convert {source.name}: {_unsupported(exc)}") from None
    target = folder / "model.xml"
    try:
        ov.save_model(model, str(target), compress_to_fp16=precision == "fp16")
    except Exception as exc:
        raise BackendError(f"OpenVINO could not write the IR: {_first_line(exc)}") from None
    return Artifact(FORMAT, folder, ("model.xml", "model.bin"), "model.xml", signature)


def _unsupported(exc: BaseException) -> str:
    text = str(exc)
    for line in text.splitlines():
        if "No conversion rule" in line or "not supported" in line.lower():
            return line.strip().lstrip("-").strip()
    return _first_line(exc)
