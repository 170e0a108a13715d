"""Feature attributions of tabular and vector models with shap's model-agnostic explainers.

    background = background_of(registry, version)          # [rows, features], or None
    result = explain(runtime, x, background, method="permutation")
    result.values.sum(axis=1) + result.base_values         # == result.prediction (additive)

A model is explainable when it takes one input of shape [batch, features]. The background set
stands for "no information": attributions are measured against the mean output over it (the
base values), so for the additive methods (``permutation``, ``kernel``, ``exact``) a row's
attributions sum to f(x) - E[f]. It is stored on the version as a content-addressed attachment
(``modelport explain background REF --data FILE``). shap is imported only here, when the first
explanation runs; the model is called directly, in the caller's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput, MissingDependency

if TYPE_CHECKING:
    from modelport.registry import ModelVersion, Registry
    from modelport.runtimes import Runtime
    from modelport.signature import Signature, TensorSpec

KIND = "explain-background"  # the attachment holding a version's background set
METHODS = ("permutation", "kernel", "exact")
MAX_ROWS = 16  # rows explained by one request: each costs thousands of model rows
MAX_BACKGROUND = 100  # background rows used (a larger set is subsampled, as shap does)
EXACT_FEATURES = 16  # the exact method evaluates 2**features coalitions


def how_to_add(ref: str) -> str:
    return (f"model {ref} has no background set for explanations; add one with: modelport "
            f"explain background {ref} --data FILE (rows of typical inputs, e.g. 100)")  # fmt: skip


@dataclass(frozen=True)
class Explanation:
    output: str
    method: str
    values: np.ndarray  # [rows, features] or [rows, features, output columns]
    base_values: np.ndarray  # [rows] or [rows, output columns]: E[f] over the background
    prediction: np.ndarray  # f(x): [rows] or [rows, output columns]

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "method": self.method,
                "shape": list(self.values.shape), "attributions": self.values,
                "base_values": self.base_values, "prediction": self.prediction}  # fmt: skip


def tabular_input(signature: Signature, ref: str) -> TensorSpec:
    """The model's one input of shape [batch, features], or InvalidInput saying why not."""
    specs = signature.inputs
    if len(specs) != 1 or len(specs[0].shape) != 2 or specs[0].shape[1] in (-1, None):
        shapes = ", ".join(s.describe() for s in specs)
        raise InvalidInput(f"model {ref} takes {shapes}: explanations need one input of shape "
                           "[batch, features] with a fixed number of features")  # fmt: skip
    if specs[0].numpy_dtype.kind not in "fiub":
        raise InvalidInput(f"model {ref} takes {specs[0].describe()}: explanations need numbers")
    return specs[0]


def check_background(signature: Signature, ref: str, data: Any) -> np.ndarray:
    """``data`` as a background set for the model: [rows, features] of finite numbers."""
    spec = tabular_input(signature, ref)
    if isinstance(data, dict):
        if set(data) != {spec.name} and len(data) != 1:
            raise InvalidInput(f"the background data must hold the one input {spec.name!r}")
        data = next(iter(data.values()))
    try:
        array = np.asarray(data, dtype=spec.numpy_dtype)
    except (TypeError, ValueError):
        raise InvalidInput(f"the background data is not numbers of {spec.describe()}") from None
    features = spec.shape[1]
    if array.ndim != 2 or array.shape[1] != features or not len(array):
        raise InvalidInput(f"the background data has shape {list(array.shape)}; model {ref} "
                           f"needs [rows, {features}] ({spec.describe()})")  # fmt: skip
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput("the background data holds NaN or infinite values")
    return array


def background_of(registry: Registry, version: ModelVersion) -> np.ndarray | None:
    """The version's stored background set, None when it has none."""
    from modelport.registry.attachments import attachment

    path = attachment(registry, version, KIND)
    return None if path is None else np.load(Path(path), allow_pickle=False)


def output_name(signature: Signature, ref: str, wanted: str | None) -> str:
    """The output to explain: ``wanted``, else the first floating-point one."""
    names = signature.output_names
    if wanted is not None:
        if wanted not in names:
            raise InvalidInput(f"model {ref} has no output {wanted!r}; outputs: {names}")
        return wanted
    floats = [s.name for s in signature.outputs if s.numpy_dtype.kind == "f"]
    return (floats or names)[0]


def explain(runtime: Runtime, x: np.ndarray, background: np.ndarray, output: str | None = None,
            method: str = "permutation", ref: str = "the model") -> Explanation:  # fmt: skip
    """Attributions of ``x`` ([rows, features]) for one output of ``runtime``."""
    signature = runtime.signature
    spec = tabular_input(signature, ref)
    name = output_name(signature, ref, output)
    if method not in METHODS:
        raise InvalidInput(f"explanation method {method!r} is not one of {', '.join(METHODS)}")
    features = spec.shape[1]
    if method == "exact" and features > EXACT_FEATURES:
        raise InvalidInput(
            f"the exact method evaluates 2**features coalitions; model {ref} has "
            f"{features} features (at most {EXACT_FEATURES}): use permutation"
        )
    if not 1 <= len(x) <= MAX_ROWS:
        raise InvalidInput(f"explain 1 to {MAX_ROWS} rows a request, not {len(x)}")
    try:
        import shap
    except ImportError:
        raise MissingDependency("shap", "explain") from None
    dtype, input_name = spec.numpy_dtype, spec.name

    def model(rows: np.ndarray) -> np.ndarray:
        out = runtime.predict({input_name: np.asarray(rows, dtype=dtype)})[name]
        return np.asarray(out, dtype=np.float64)

    if len(background) > MAX_BACKGROUND:
        background = shap.utils.sample(background, MAX_BACKGROUND, random_state=0)
    background = np.asarray(background, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if method == "kernel":
        explainer = shap.KernelExplainer(model, background, silent=True)
        values = np.asarray(explainer.shap_values(x, silent=True))
        base = np.broadcast_to(np.asarray(explainer.expected_value), (len(x), *values.shape[2:]))
    else:
        masker = shap.maskers.Independent(background, max_samples=MAX_BACKGROUND)
        if method == "exact":
            result = shap.explainers.Exact(model, masker)(x)
        else:
            explainer = shap.explainers.Permutation(model, masker, seed=0)
            result = explainer(x, max_evals=max(500, 2 * features + 1), silent=True)
        values, base = np.asarray(result.values), np.asarray(result.base_values)
    return Explanation(name, method, values, np.array(base), model(x))


def warm_up() -> None:
    """Import shap and compile its numba code on a toy model (seconds, once per process), so
    the first real explanation does not pay for it."""
    try:
        import shap
    except ImportError:
        return
    masker = shap.maskers.Independent(np.zeros((2, 4)), max_samples=MAX_BACKGROUND)
    for model in (lambda rows: rows.sum(axis=1), lambda rows: rows[:, :2]):  # 1-D, 2-D outputs
        shap.explainers.Permutation(model, masker, seed=0)(np.ones((1, 4)), max_evals=500,
                                                           silent=True)  # fmt: skip
