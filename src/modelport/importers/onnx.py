"""ONNX files and ``onnx.ModelProto`` objects as artifacts, signature read from the graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput, first_line
from modelport.registry.artifact import Artifact
from modelport.signature import Signature, TensorSpec

FORMAT = "onnx"


def _dtype(elem_type: int) -> str:
    import onnx

    if elem_type == onnx.TensorProto.STRING:
        return "string"
    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError):
        raise InvalidInput(f"ONNX element type {elem_type} is not supported") from None


def _spec(value_info: Any) -> TensorSpec:
    tensor = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type"):
        raise InvalidInput(f"ONNX value {value_info.name!r} is not a tensor (sequence or map)")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return TensorSpec(value_info.name, _dtype(tensor.elem_type), dims)


def signature_of(model: Any) -> Signature:
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(i) for i in model.graph.input if i.name not in initializers)
    outputs = tuple(_spec(o) for o in model.graph.output)
    if not inputs:
        raise InvalidInput("the ONNX graph has no inputs")
    return Signature(inputs, outputs)


def load_checked(path: Path) -> Any:
    """Parse and check an ONNX file; any failure is an ``InvalidInput`` naming the file."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        onnx.checker.check_model(str(path), full_check=False)
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError, OSError) as exc:
        raise InvalidInput(f"{path} is not a valid ONNX model: {first_line(exc)}") from None


def from_path(path: Path) -> Artifact:
    """An ``.onnx`` file, or a folder holding one ``.onnx`` file and its external data files."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.rglob("*.onnx"))
        if len(candidates) != 1:
            names = [p.name for p in candidates]
            found = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            found = found or "none"
            raise InvalidInput(
                f"{path} is not a model folder: expected one .onnx file, found {found}"
            )
        model = load_checked(candidates[0])
        files = tuple(
            str(p.relative_to(path))
            for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        )
        return Artifact(
            FORMAT, path, files, str(candidates[0].relative_to(path)), signature_of(model)
        )
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    model = load_checked(path)
    return Artifact.single_file(path, FORMAT, signature_of(model))


def from_proto(model: Any, folder: Path) -> Artifact:
    import onnx

    target = folder / "model.onnx"
    if model.ByteSize() > 1_900_000_000:
        onnx.save_model(model, str(target), save_as_external_data=True, location="model.onnx.data")
        return from_path(folder)
    onnx.save_model(model, str(target))
    return from_path(target)
