"""Text in, tensors out: an ONNX encoder or sequence classifier with its tokenizer, as a
``Runtime`` the V2 routes (REST and gRPC) serve with BYTES inputs.

    if is_text_model(version):                      # an ONNX version tagged as an encoder
        runtime = TextRuntime.load(Path("folder/model.onnx"))
    runtime.signature    # text_input: string[-1] -> embedding float32[-1, 384] (or logits)
    runtime.predict({"text_input": np.array(["a sentence"], dtype=object)})

Each element, a string or UTF-8 bytes (the binary extension's length-prefixed elements), is
one text; an encoder answers mean-pooled, normalised vectors, a classifier its logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput
from modelport.runtimes.base import RuntimeOptions
from modelport.signature import Signature, TensorSpec

INPUT = "text_input"
TASKS = ("feature-extraction", "text-classification")


def is_text_model(version: Any) -> bool:
    """An ONNX encoder or classifier version (converted with its tokenizer)."""
    return version.format == "onnx" and version.tags.get("task") in TASKS


class TextRuntime:
    name: ClassVar[str] = "text"
    formats: ClassVar[tuple[str, ...]] = ("onnx",)

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        output = "logits" if encoder.classifier else "embedding"
        self.signature = Signature(
            (TensorSpec(INPUT, "string", (-1,)),),
            (TensorSpec(output, "float32", (-1, encoder.width)),),
        )
        self._output = output

    @classmethod
    def load(
        cls, path: Path, signature: Signature | None = None, options: RuntimeOptions | None = None
    ) -> TextRuntime:
        from modelport.generation.encoder import open_encoder

        threads = (options or RuntimeOptions()).intra_op_threads
        return cls(open_encoder(Path(path).parent, threads))

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        values = np.asarray(inputs[INPUT], dtype=object)
        texts = []
        for item in values.reshape(-1):
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidInput(f"{INPUT!r} holds bytes that are not UTF-8") from None
            if not isinstance(item, str):
                raise InvalidInput(f"{INPUT!r} must hold strings")
            texts.append(item)
        if not texts:
            width = max(self.encoder.width, 0)
            return {self._output: np.zeros((*values.shape, width), dtype=np.float32)}
        run = self.encoder.classify if self.encoder.classifier else self.encoder.embed
        result, _ = run(texts)
        return {self._output: result.reshape(*values.shape, result.shape[-1])}

    def close(self) -> None:
        self.encoder.close()
