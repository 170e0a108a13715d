"""ONNX Runtime on the CPU."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.boundary import inputs_for, translated
from modelport.signature import Signature

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}  # fmt: skip


class OnnxRuntime:
    name: ClassVar[str] = "onnxruntime"
    formats: ClassVar[tuple[str, ...]] = ("onnx",)

    def __init__(self, session: Any, signature: Signature,
                 feature_major: frozenset[str] = frozenset()) -> None:  # fmt: skip
        self._session = session
        self.signature = signature
        self.feature_major = feature_major  # inputs taken as [features, batch]
        self._output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def load(
        cls, path: Path, signature: Signature | None = None, options: RuntimeOptions | None = None
    ) -> OnnxRuntime:
        import onnxruntime as ort

        options = options or RuntimeOptions()
        if options.graph_optimization not in _LEVELS:
            raise InvalidInput(
                f"graph optimisation level {options.graph_optimization!r} is not one of "
                f"{', '.join(_LEVELS)}"
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _LEVELS[options.graph_optimization]
        )
        so.log_severity_level = 3
        for key, value in options.extra.items():
            so.add_session_config_entry(str(key), str(value))
        source: str | bytes = str(path)
        transposed: frozenset[str] = frozenset()
        with translated(f"ONNX Runtime could not load {path}", inputs=False):
            if options.feature_major:
                signature = signature or _signature(path)
                source, transposed, signature = _feature_major(path, signature,
                                                               options.feature_major)  # fmt: skip
            session = ort.InferenceSession(source, sess_options=so,
                                           providers=["CPUExecutionProvider"])  # fmt: skip
        return cls(session, signature or _signature(path), transposed)

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feed = inputs_for(self.signature, inputs)
        with translated("ONNX Runtime failed"):
            results = self._session.run(self._output_names, feed)
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


def _signature(path: Path) -> Signature:
    import onnx

    from modelport.importers.onnx import signature_of

    return signature_of(onnx.load(str(path), load_external_data=False))


def _feature_major(
    path: Path, signature: Signature, names: tuple[str, ...]
) -> tuple[str | bytes, frozenset[str], Signature]:
    """The model with a Transpose in front of each named 2-D input, which then takes
    [features, batch]. ONNX Runtime folds such a Transpose into a first Gemm (``transA``), so
    columns are scored without ever being turned into rows; the results are bit-identical.
    Models whose weights live in external files are left as they are."""
    import onnx
    from onnx import helper

    from modelport.signature import TensorSpec

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        return str(path), frozenset(), signature
    done: list[str] = []
    for value in list(graph.input):
        dims = value.type.tensor_type.shape.dim
        if value.name not in names or len(dims) != 2:
            continue
        rows = f"{value.name}__rows"
        for node in graph.node:
            node.input[:] = [rows if i == value.name else i for i in node.input]
        swapped = helper.make_tensor_value_info(value.name, value.type.tensor_type.elem_type,
                                                [_dim(dims[1]), _dim(dims[0])])  # fmt: skip
        graph.input.insert(list(graph.input).index(value), swapped)
        graph.input.remove(value)
        graph.node.insert(0, helper.make_node("Transpose", [value.name], [rows], perm=[1, 0],
                                              name=f"{value.name}__feature_major"))  # fmt: skip
        done.append(value.name)
    if not done:
        return str(path), frozenset(), signature
    inputs = tuple(TensorSpec(s.name, s.dtype, tuple(reversed(s.shape))) if s.name in done
                   else s for s in signature.inputs)  # fmt: skip
    return model.SerializeToString(), frozenset(done), Signature(inputs, signature.outputs)


def _dim(dim: Any) -> int | str | None:
    if dim.HasField("dim_value"):
        return dim.dim_value
    return dim.dim_param or None
