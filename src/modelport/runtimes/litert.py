"""LiteRT (TensorFlow Lite) interpreter on the CPU, from the ``ai-edge-litert`` package.

A ``.tflite`` file with one SignatureDef runs through its signature runner, which resizes the
batch dimension per call. Names in the file (``output_0``...) are matched to the registry
signature by name, else by position. The interpreter is not thread-safe: calls are serialised.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import BackendError, MissingDependency
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.boundary import inputs_for, translated
from modelport.signature import Signature, TensorSpec


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingDependency("ai-edge-litert", "litert") from None
    return Interpreter


class LiteRtRuntime:
    name: ClassVar[str] = "litert"
    formats: ClassVar[tuple[str, ...]] = ("tflite",)

    def __init__(
        self, runner: Any, signature: Signature, in_map: dict[str, str], out_map: dict[str, str]
    ) -> None:
        self._runner = runner
        self.signature = signature
        self._in_map = in_map  # registry input name -> name in the file
        self._out_map = out_map  # registry output name -> name in the file
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, path: Path, signature: Signature | None = None, options: RuntimeOptions | None = None
    ) -> LiteRtRuntime:
        interpreter_class = _interpreter_class()
        options = options or RuntimeOptions()
        threads = int(options.intra_op_threads) or None
        with translated(f"LiteRT could not load {path}", inputs=False):
            interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            signatures = interpreter.get_signature_list()
            if len(signatures) != 1:
                raise ValueError(
                    f"expected one SignatureDef, found {len(signatures)} ({', '.join(signatures)})"
                )
            runner = interpreter.get_signature_runner(next(iter(signatures)))
        found = Signature(
            tuple(_spec(n, d) for n, d in runner.get_input_details().items()),
            tuple(_spec(n, d) for n, d in runner.get_output_details().items()),
        )
        signature = signature or found
        in_map = _match(signature.input_names, found.input_names, "inputs", path)
        out_map = _match(signature.output_names, found.output_names, "outputs", path)
        return cls(runner, signature, in_map, out_map)

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feed = inputs_for(self.signature, inputs)
        kwargs = {self._in_map[name]: value for name, value in feed.items()}
        with translated("LiteRT failed"), self._lock:
            result = self._runner(**kwargs)
        return {name: result[inner] for name, inner in self._out_map.items()}  # already copies

    def close(self) -> None:
        self._runner = None


def _spec(name: str, details: Mapping[str, Any]) -> TensorSpec:
    shape = details.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = details["shape"]
    return TensorSpec(name, np.dtype(details["dtype"]).name, tuple(int(d) for d in shape))


def _natural(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def _match(wanted: list[str], found: list[str], what: str, path: Path) -> dict[str, str]:
    if sorted(wanted) == sorted(found):
        return {name: name for name in wanted}
    if len(wanted) != len(found):
        raise BackendError(f"{path} has {what} {found}; the registry signature expects {wanted}")
    return dict(zip(wanted, sorted(found, key=_natural), strict=True))
