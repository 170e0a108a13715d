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

    def __init__(self, session: Any, signature: Signature) -> None:
        self._session = session
        self.signature = signature
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
        with translated(f"ONNX Runtime could not load {path}", inputs=False):
            session = ort.InferenceSession(str(path), sess_options=so,
                                           providers=["CPUExecutionProvider"])  # fmt: skip
        return cls(session, signature or _signature(path))

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
