"""scikit-learn estimators and pipelines -> ONNX (skl2onnx), class probabilities as a tensor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BackendError, InvalidInput, MissingDependency, first_line
from modelport.importers import onnx as onnx_importer
from modelport.registry.artifact import Artifact


def is_estimator(obj: Any) -> bool:
    return any(cls.__module__.startswith("sklearn.") for cls in type(obj).__mro__) and hasattr(
        obj, "get_params"
    )


def _n_features(estimator: Any, sample_input: Any) -> int:
    if sample_input is not None:
        sample = np.asarray(sample_input)
        if sample.ndim != 2:
            raise InvalidInput("sample_input for a scikit-learn model must be 2-D (rows, features)")
        return int(sample.shape[1])
    n = getattr(estimator, "n_features_in_", None)
    if n is None:
        raise InvalidInput(
            "the estimator is not fitted or does not record n_features_in_; pass sample_input"
        )
    return int(n)


def from_estimator(
    estimator: Any, folder: Path, sample_input: Any = None, opset: int | None = None
) -> Artifact:
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise MissingDependency("skl2onnx", "sklearn") from None
    n_features = _n_features(estimator, sample_input)
    options = None
    if hasattr(estimator, "predict_proba"):
        options = {id(estimator): {"zipmap": False}}
    try:
        model = to_onnx(
            estimator,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            options=options,
            target_opset=opset,
        )
    except Exception as exc:  # skl2onnx raises many types; report one line
        raise BackendError(
            f"skl2onnx could not convert {type(estimator).__name__}: {first_line(exc)}"
        ) from None
    return onnx_importer.from_proto(model, folder)
