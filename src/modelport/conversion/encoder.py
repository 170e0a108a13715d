"""Hugging Face encoder checkpoint -> ONNX (fp32 or int8 with quantized embedding tables).

    version = convert_encoder(registry, "minilm:1", int8=True)   # a new version, with lineage

The export keeps the last hidden state; pooling (mean over the attention mask, then L2) runs
in the encoder engine with the checkpoint's own tokenizer. int8 quantizes MatMul weights and
the Gather embedding tables, which hold most of a small encoder's bytes. Every conversion is
checked against transformers on a fixed sentence set (cosine of pooled vectors) and refused
below the tolerance unless forced.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.generation.encoder import mean_pool, open_encoder
from modelport.registry import ModelVersion, Registry

PARITY_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A registry keeps every version of a model.",
    "Embeddings map sentences to vectors.",
    "short",
    "Serving large models on a CPU needs batching, caching and care with memory.",
    "Il pleut des cordes depuis ce matin.",
    "numbers 12345 and symbols #@!",
    "One more sentence to compare the two encoders on.",
)
TOLERANCE = {"fp32": 0.9999, "int8": 0.99}  # least mean cosine against transformers
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
)


def reference_vectors(checkpoint: Path, texts: list[str]) -> np.ndarray:
    """transformers' own answer: mean pooling over the mask, normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.numpy()
    return mean_pool(hidden, batch["attention_mask"].numpy())


def export_onnx(checkpoint: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    uses_types = getattr(model.config, "type_vocab_size", 0) > 0

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.int64)
    args = (ids, torch.ones_like(ids)) + ((torch.zeros_like(ids),) if uses_types else ())
    names = ["input_ids", "attention_mask", "token_type_ids"][: len(args)]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():  # tracer notes on shapes the export keeps dynamic anyway
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden(),
            args,
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul", "Gather"],
        weight_type=QuantType.QInt8,
        per_channel=False,
    )


def convert_encoder(
    registry: Registry, ref: str, int8: bool = False, force: bool = False
) -> ModelVersion:
    from modelport.importers.onnx import from_path

    parent = registry.resolve(ref)
    if parent.format != "hf" or parent.tags.get("task") != "feature-extraction":
        raise InvalidInput(f"{parent.ref} is not a Hugging Face encoder checkpoint")
    checkpoint = registry.path(parent).parent
    precision = "int8" if int8 else "fp32"
    with tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="encoder-") as work:
        out = Path(work) / "model"
        out.mkdir()
        fp32 = Path(work) / "fp32.onnx"
        export_onnx(checkpoint, fp32)
        if int8:
            quantize_int8(fp32, out / "model.onnx")
        else:
            shutil.move(fp32, out / "model.onnx")
        for name in TOKENIZER_FILES:
            if (checkpoint / name).is_file():
                shutil.copy(checkpoint / name, out / name)
        parity = _parity(checkpoint, out)
        if parity["min_cosine"] < TOLERANCE[precision] and not force:
            raise InvalidInput(
                f"the {precision} encoder drifts from transformers: least cosine "
                f"{parity['min_cosine']:.5f} < {TOLERANCE[precision]} (use --force to keep it)"
            )
        tags = {**parent.tags, "quantization": precision.upper()}
        artifact = replace(from_path(out), tags=tags)
        params: dict[str, Any] = {
            "to": "onnx-encoder",
            "precision": precision,
            "pooling": "mean",
            "normalize": True,
            **parity,
        }
        if int8:
            params["quantized_ops"] = ["MatMul", "Gather"]
        return registry.add(
            artifact,
            parent.name,
            parent=parent.ref,
            transform="convert",
            transform_params=params,
            metrics={"parity_mean_cosine": parity["mean_cosine"]},
        )


def _parity(checkpoint: Path, folder: Path) -> dict[str, float]:
    texts = list(PARITY_SENTENCES)
    expected = reference_vectors(checkpoint, texts)
    encoder = open_encoder(folder)
    got, _ = encoder.embed(texts)
    cosine = (expected * got).sum(axis=1)
    return {
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
        "sentences": len(texts),
    }
