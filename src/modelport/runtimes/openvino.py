"""OpenVINO Runtime on the CPU: IR (``model.xml`` + ``model.bin``) and, on request, ONNX files.

Inference runs in float32 by default (``INFERENCE_PRECISION_HINT=f32``): on CPUs with bf16 units
OpenVINO would otherwise pick bf16 and drift by ~1e-3 from the ONNX parent. Pass
``RuntimeOptions(extra={"INFERENCE_PRECISION_HINT": "bf16"})`` to trade that accuracy for speed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import BackendError, MissingDependency
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.boundary import inputs_for, translated
from modelport.signature import Signature, TensorSpec

_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32",
           "i8": "int8", "u8": "uint8", "boolean": "bool", "bf16": "bfloat16"}  # fmt: skip


NOISE = ("Exception from", "Check '")  # OpenVINO's location lines before the message


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependency("openvino", "openvino") from None
    return openvino


class OpenVinoRuntime:
    name: ClassVar[str] = "openvino"
    formats: ClassVar[tuple[str, ...]] = ("openvino", "onnx")

    def __init__(self, compiled: Any, signature: Signature) -> None:
        self._tensor = _openvino().Tensor
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self.signature = signature
        self._inputs = _positions(signature.input_names, compiled.inputs)
        self._outputs = _positions(signature.output_names, compiled.outputs)
        self._lock = threading.Lock()  # one InferRequest: calls from several threads take turns

    @classmethod
    def load(
        cls, path: Path, signature: Signature | None = None, options: RuntimeOptions | None = None
    ) -> OpenVinoRuntime:
        ov = _openvino()
        options = options or RuntimeOptions()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if options.intra_op_threads:
            config["INFERENCE_NUM_THREADS"] = int(options.intra_op_threads)
        config.update({str(k): v for k, v in options.extra.items()})
        with translated(f"OpenVINO could not load {path}", NOISE, inputs=False):
            core = ov.Core()
            model = core.read_model(str(path))
            compiled = core.compile_model(model, "CPU", config)
        found = signature_of(compiled)
        if signature is None:
            signature = found
        elif len(signature.outputs) != len(found.outputs) or len(signature.inputs) != len(
            found.inputs
        ):
            raise BackendError(
                f"{path} has {len(found.inputs)} inputs and {len(found.outputs)} outputs; "
                f"the registry signature says {signature.describe()}"
            )
        return cls(compiled, signature)

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feed = inputs_for(self.signature, inputs, writable=True)  # OpenVINO shares the memory
        request = self._request
        # shared-memory tensors in, one copy out: the dict-returning infer() copies twice
        with translated("OpenVINO failed", NOISE), self._lock:
            for name, index in self._inputs.items():
                request.set_input_tensor(index, self._tensor(feed[name], shared_memory=True))
            request.infer()
            return {
                name: request.get_output_tensor(index).data.copy()
                for name, index in self._outputs.items()
            }

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _positions(names: list[str], ports: Any) -> dict[str, int]:
    """Registry tensor name -> port index: by name where the port carries it, else by position."""
    out = {}
    for position, name in enumerate(names):
        by_name = [i for i, port in enumerate(ports) if name in port.get_names()]
        out[name] = by_name[0] if by_name else position
    return out


def signature_of(model: Any) -> Signature:
    """The signature of an OpenVINO model or compiled model, read from its ports."""

    def spec(port: Any, fallback: str) -> TensorSpec:
        names = port.get_names()
        name = port.get_any_name() if names else fallback
        dtype = _DTYPES.get(port.get_element_type().get_type_name(), "float32")
        dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
        return TensorSpec(name, dtype, dims)

    inputs = tuple(spec(p, f"input_{i}") for i, p in enumerate(model.inputs))
    outputs = tuple(spec(p, f"output_{i}") for i, p in enumerate(model.outputs))
    return Signature(inputs, outputs)
