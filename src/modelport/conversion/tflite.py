"""-> TensorFlow Lite: float32, float16 (weights) or int8 (weights and activations, calibrated).

Two sources, one converter (``tf.lite.TFLiteConverter.from_saved_model``):
- a version registered from Keras/TensorFlow carries its SavedModel (``saved_model/``): used as is;
- any other ONNX model is first translated to a SavedModel by ``onnx2tf`` (maintained, handles
  NCHW convolutions; inputs keep the ONNX layout so the signature does not change).
Only TFLite built-in operators are allowed, so the file runs on the plain LiteRT interpreter.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BackendError, InvalidInput, MissingDependency, first_line
from modelport.importers.keras import (
    SAVED_MODEL,
    quiet,
    saved_model_of,
    tensorflow,
)
from modelport.registry.artifact import Artifact
from modelport.signature import Signature

FORMAT = "tflite"
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_ROWS = 200


def tool_versions(source: str) -> dict[str, str]:
    names = ["tensorflow", "ai-edge-litert"] + (["onnx2tf"] if source == "onnx2tf" else [])
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def check_shapes(signature: Signature) -> None:
    """TFLite takes a free batch dimension only; any other free dimension is refused up front."""
    for spec in signature.inputs:
        free = [axis for axis, d in enumerate(spec.shape) if d < 0 and axis > 0]
        if free:
            raise InvalidInput(
                f"input {spec.name!r} ({spec.describe()}) has a free dimension at axis "
                f"{free[0]}; TensorFlow Lite needs every dimension fixed except the batch. "
                "Re-export the model with a fixed shape"
            )


def convert(
    source: Path,
    folder: Path,
    signature: Signature,
    precision: str = "fp32",
    calibration: Mapping[str, Any] | None = None,
) -> tuple[Artifact, str]:
    """Convert the checked-out ONNX entry point ``source``; returns the artifact and the path used
    ("saved_model" or "onnx2tf")."""
    if precision not in PRECISIONS:
        raise InvalidInput(f"TFLite precision must be one of {', '.join(PRECISIONS)}")
    check_shapes(signature)
    tf = tensorflow()
    saved = saved_model_of(source)
    route = "saved_model"
    if saved is None:
        saved = _onnx_to_saved_model(source, folder / "tf", signature)
        route = "onnx2tf"
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    except Exception as exc:
        raise InvalidInput(f"TensorFlow cannot read the SavedModel: {first_line(exc)}") from None
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _rows(calibration or {}, signature)
    try:
        with quiet():
            flatbuffer = converter.convert()
    except Exception as exc:  # ConverterError carries the unsupported op in its text
        reason = _converter_line(exc)
        raise InvalidInput(f"TensorFlow Lite cannot convert the model: {reason}") from None
    target = folder / "model.tflite"
    target.write_bytes(flatbuffer)
    return Artifact.single_file(target, FORMAT, signature), route


def _rows(calibration: Mapping[str, Any], signature: Signature) -> Iterator[dict[str, np.ndarray]]:
    data = signature.coerce_inputs(calibration)
    n = min(len(v) for v in data.values())
    for i in range(min(n, CALIBRATION_ROWS)):
        yield {name: value[i : i + 1] for name, value in data.items()}


def _onnx_to_saved_model(source: Path, out: Path, signature: Signature) -> Path:
    try:
        import onnx2tf
    except ImportError:
        raise MissingDependency("onnx2tf", "tflite") from None
    channels_first = [s.name for s in signature.inputs if 3 <= len(s.shape) <= 5]
    # onnx2tf rewrites its input file in place: give it a copy, never the registry's checkout
    # (whose files are hard links to the content-addressed blobs).
    work = out.parent / "onnx"
    _copy_onnx(source, work, skip=(out.parent, source.parent / SAVED_MODEL))
    try:
        with quiet():
            onnx2tf.convert(
                input_onnx_file_path=str(work / source.name),
                output_folder_path=str(out),
                non_verbose=True,
                keep_ncw_or_nchw_or_ncdhw_input_names=channels_first or None,
                output_signaturedefs=True,
            )
    except SystemExit:  # onnx2tf exits on an operator it cannot translate
        raise InvalidInput(
            f"onnx2tf cannot translate {source.name} to TensorFlow (an operator it does not "
            "support; see 'onnx2tf -i model.onnx' for details)"
        ) from None
    except ModuleNotFoundError as exc:  # onnx2tf has one module per ONNX operator it knows
        if not (exc.name or "").startswith("onnx2tf.ops."):
            raise MissingDependency(exc.name or "a package onnx2tf needs", "tflite") from None
        op = (exc.name or "").rpartition(".")[2]
        raise InvalidInput(
            f"onnx2tf cannot translate {source.name}: operator {op!r} is not supported"
        ) from None
    except Exception as exc:
        raise InvalidInput(f"onnx2tf cannot translate {source.name}: {first_line(exc)}") from None
    if not (out / "saved_model.pb").is_file():
        raise BackendError(f"onnx2tf wrote no SavedModel for {source.name}")
    return out


def _copy_onnx(source: Path, dest: Path, skip: tuple[Path, ...]) -> None:
    """Copy the ONNX file and its external-data files (not the kept SavedModel, not ``skip``)."""
    root = source.parent
    files = [
        p for p in root.rglob("*")
        if p.is_file() and not any(p.is_relative_to(s) for s in skip)
    ]  # fmt: skip
    for path in files:
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _converter_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if "op" in line.lower() and ("not supported" in line or "neither" in line.lower()):
            return line.strip()
    return first_line(exc)
