"""The Python API in two calls: ``register`` anything, ``load`` any reference."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelport.registry import ModelVersion, Registry
from modelport.registry.registry import borrowing
from modelport.runtimes import Runtime, RuntimeOptions, open_artifact
from modelport.uri import ModelRef


@borrowing
def register(
    model: Any,
    name: str,
    *,
    registry: Registry | None = None,
    sample_input: Any = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    alias: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str = "",
    parent: str | None = None,
    transform: str | None = None,
    transform_params: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Register a file, a folder, an ``onnx.ModelProto``, a ``torch.nn.Module`` or a scikit-learn
    estimator as the next version of ``name``. Framework objects are exported to ONNX first."""
    from modelport.importers import to_artifact
    from modelport.uri import validate_name

    validate_name(name)
    with tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="import-") as workdir:
        artifact = to_artifact(
            model,
            Path(workdir),
            sample_input=sample_input,
            input_names=input_names,
            output_names=output_names,
        )
        return registry.add(
            artifact,
            name,
            alias=alias,
            metrics=metrics,
            tags=tags,
            description=description,
            parent=parent,
            transform=transform,
            transform_params=transform_params,
        )


@borrowing
def load(
    ref: str | ModelRef | ModelVersion,
    *,
    registry: Registry | None = None,
    options: RuntimeOptions | None = None,
    backend: str | None = None,
) -> Runtime:
    """A ready Runtime for a reference; the artifact is checked against its sha256 first."""
    version = ref if isinstance(ref, ModelVersion) else registry.resolve(ref)
    if options is None:
        options = RuntimeOptions.from_settings(registry.settings)
    return open_artifact(
        registry.path(version), version.format, version.signature, options, backend
    )
