"""Turn what the user has (a file, a folder, a framework object) into a registrable artifact."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput
from modelport.registry.artifact import Artifact


def to_artifact(
    obj: Any,
    workdir: Path,
    *,
    sample_input: Any = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
) -> Artifact:
    """An artifact for ``obj``; in-memory objects are written under ``workdir``."""
    from modelport.importers import genai as genai_importer
    from modelport.importers import gguf as gguf_importer
    from modelport.importers import hf as hf_importer
    from modelport.importers import keras as keras_importer
    from modelport.importers import onnx as onnx_importer
    from modelport.importers import sklearn as sklearn_importer
    from modelport.importers import torch as torch_importer

    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if gguf_importer.is_gguf(path):
            return gguf_importer.from_file(path)
        if genai_importer.is_genai_folder(path):
            return genai_importer.from_folder(path)
        if hf_importer.is_checkpoint(path):
            return hf_importer.from_folder(path)
        if keras_importer.is_keras_path(path):
            return keras_importer.from_file(path, workdir, opset)
        return onnx_importer.from_path(path)
    if type(obj).__module__.startswith("onnx") and hasattr(obj, "graph"):
        return onnx_importer.from_proto(obj, workdir)
    if torch_importer.is_module(obj):
        return torch_importer.from_module(
            obj, workdir, sample_input, input_names, output_names, opset
        )
    if keras_importer.is_keras(obj):
        return keras_importer.from_keras(
            obj, workdir, sample_input, input_names, output_names, opset
        )
    if sklearn_importer.is_estimator(obj):
        return sklearn_importer.from_estimator(obj, workdir, sample_input, opset)
    raise InvalidInput(
        f"cannot register a {type(obj).__module__}.{type(obj).__qualname__}: expected a path, "
        "an onnx.ModelProto, a torch.nn.Module, a Keras model or a scikit-learn estimator"
    )
