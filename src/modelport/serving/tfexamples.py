"""tf.Examples in, classes and scores or regression values out: TF Serving's Classify and Regress
on models that take tensors.

    inputs = example_inputs(request.input, plane, neutral)   # one Tensor per model input
    scores, labels = classification(response)                # [batch, classes], their labels
    values = regression(response)                            # [batch]

Each input of the model is read from the feature of the same name in every example (and the
context of ``example_list_with_context``): a value for a ``[batch]`` input, a list for
``[batch, n]``, reshaped for more dimensions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.serving.grpc_v2 import _text
from modelport.serving.messages import InferenceRequest, InferenceResponse, Tensor

if TYPE_CHECKING:
    from modelport.serving.dataplane import DataPlane


def example_inputs(source: Any, plane: DataPlane, request: InferenceRequest) -> list[Tensor]:
    """Each input of the model from the feature of the same name in every example."""
    kind = source.WhichOneof("kind")
    if kind is None:
        raise InvalidInput("Input is empty")
    if kind == "example_list":
        examples, context = list(source.example_list.examples), None
    else:
        examples = list(source.example_list_with_context.examples)
        context = source.example_list_with_context.context
    if not examples:
        raise InvalidInput("Input is empty")
    model = plane.model(request.model, request.version, request.label)
    tensors = []
    for spec in model.signature.inputs:
        rows = []
        for example in examples:
            feature = example.features.feature.get(spec.name)
            if feature is None and context is not None:
                feature = context.features.feature.get(spec.name)
            if feature is None:
                raise InvalidInput(f"an example has no feature {spec.name!r}")
            rows.append(_feature_values(feature, spec))
        tensors.append(Tensor(spec.name, rows))
    return tensors


def _feature_values(feature: Any, spec: Any) -> Any:
    """One example's feature as one row of ``spec``: a value for [batch], a list for
    [batch, n], reshaped for more dimensions."""
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if kind == "bytes_list":
        values = [_text(v) for v in values]
    inner = list(spec.shape[1:])
    if not inner:
        if len(values) != 1:
            raise InvalidInput(f"feature {spec.name!r} must hold one value, not {len(values)}")
        return values[0]
    if len(inner) > 1 and all(isinstance(d, int) and d >= 0 for d in inner):
        try:
            return np.asarray(values).reshape(inner).tolist()
        except ValueError:
            raise InvalidInput(f"feature {spec.name!r} does not fill the shape {inner}") from None
    return values


def classification(answer: InferenceResponse) -> tuple[np.ndarray, list[list[str]]]:
    """Scores [batch, classes] and their labels: outputs named "scores" and "classes", else the
    one float output, labelled by class index."""
    outputs = answer.outputs
    scores = outputs.get("scores")
    if scores is None:
        floats = [a for a in outputs.values() if a.dtype.kind == "f" and a.ndim == 2]
        if len(floats) != 1:
            raise InvalidInput(
                f"model {answer.model!r} has no classification output: name it 'scores' "
                "(and 'classes'), or give it one [batch, classes] float output"
            )
        scores = floats[0]
    scores = scores.reshape(len(scores), -1)
    classes = outputs.get("classes")
    if classes is None:
        labels = [[str(i) for i in range(scores.shape[1])] for _ in range(len(scores))]
    else:
        labels = [[_text(v) if isinstance(v, bytes) else str(v) for v in row]
                  for row in classes.reshape(len(scores), -1)]  # fmt: skip
    return scores, labels


def regression(answer: InferenceResponse) -> np.ndarray:
    outputs = answer.outputs
    value = outputs.get("outputs")
    if value is None:
        floats = [a for a in outputs.values() if a.dtype.kind == "f"]
        if len(floats) != 1 or (floats[0].ndim == 2 and floats[0].shape[1] != 1):
            raise InvalidInput(
                f"model {answer.model!r} has no regression output: name it 'outputs', or give it "
                "one [batch] or [batch, 1] float output"
            )
        value = floats[0]
    return value.reshape(-1)
