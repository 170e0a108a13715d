"""Hugging Face encoder checkpoint -> ONNX (fp32 or int8 with quantized embedding tables).

    version = convert_encoder(registry, "minilm:1", int8=True)   # a new version, with lineage
    version = convert_encoder(registry, "sentiment:1")           # a sequence classifier too

The export keeps the last hidden state; pooling (mean over the attention mask, then L2) runs
in the encoder engine with the checkpoint's own tokenizer. The exported graph is fused for
ONNX Runtime (one Attention node per layer, SkipLayerNormalization, BiasGelu: see
``conversion/fusion.py``) and the fused operator counts are recorded. int8 quantizes the fused
graph: MatMul and Attention weights per channel and the Gather embedding tables, which hold
most of a small encoder's bytes. Every conversion is
checked against transformers on a fixed sentence set (cosine of pooled vectors; for a
classifier, the largest difference of class probabilities) and refused past the tolerance
unless forced.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modelport.conversion.fusion import fuse_encoder, quantize_encoder
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
PROB_TOLERANCE = {"fp32": 1e-4, "int8": 0.05}  # a classifier's largest probability difference
TASKS = ("feature-extraction", "text-classification")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
)


def _transformers_model(checkpoint: Path, classify: bool, **options: Any) -> Any:
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    kind = AutoModelForSequenceClassification if classify else AutoModel
    return kind.from_pretrained(checkpoint, dtype=torch.float32, **options).eval()


def reference_vectors(checkpoint: Path, texts: list[str], classify: bool = False) -> np.ndarray:
    """transformers' own answer: mean pooling over the mask, normalised (a classifier's
    logits when ``classify``)."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = _transformers_model(checkpoint, classify)
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    if classify:
        return out.logits.numpy()
    return mean_pool(out.last_hidden_state.numpy(), batch["attention_mask"].numpy())


def export_onnx(checkpoint: Path, target: Path, classify: bool = False) -> None:
    import torch

    # eager attention traces to the plain MatMul/Softmax pattern the fusion recognises
    model = _transformers_model(checkpoint, classify, attn_implementation="eager")
    uses_types = getattr(model.config, "type_vocab_size", 0) > 0
    output = "logits" if classify else "last_hidden_state"

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return getattr(out, output)

    ids = torch.ones((2, 8), dtype=torch.int64)
    args = (ids, torch.ones_like(ids)) + ((torch.zeros_like(ids),) if uses_types else ())
    names = ["input_ids", "attention_mask", "token_type_ids"][: len(args)]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch"} if classify else {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():  # tracer notes on shapes the export keeps dynamic anyway
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden(),
            args,
            str(target),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def convert_encoder(
    registry: Registry, ref: str, int8: bool = False, force: bool = False
) -> ModelVersion:
    from modelport.importers.onnx import from_path

    parent = registry.resolve(ref)
    if parent.format != "hf" or parent.tags.get("task") not in TASKS:
        raise InvalidInput(
            f"{parent.ref} is not a Hugging Face encoder or sequence classifier checkpoint"
        )
    classify = parent.tags["task"] == "text-classification"
    checkpoint = registry.path(parent).parent
    precision = "int8" if int8 else "fp32"
    with tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="encoder-") as work:
        out = Path(work) / "model"
        out.mkdir()
        exported, fused = Path(work) / "export.onnx", Path(work) / "fused.onnx"
        export_onnx(checkpoint, exported, classify)
        config = json.loads((checkpoint / "config.json").read_text())
        graph = fuse_encoder(
            exported, fused, config.get("num_attention_heads", 0), config.get("hidden_size", 0)
        )
        if int8:
            graph.update(quantize_encoder(fused, out / "model.onnx"))
        else:
            shutil.move(fused, out / "model.onnx")
        for name in TOKENIZER_FILES:
            if (checkpoint / name).is_file():
                shutil.copy(checkpoint / name, out / name)
        parity = _parity(checkpoint, out, classify)
        _check_parity(parity, precision, force)
        tags = {**parent.tags, "quantization": precision.upper()}
        artifact = replace(from_path(out), tags=tags)
        params: dict[str, Any] = {
            "to": "onnx-encoder",
            "precision": precision,
            **({"output": "logits"} if classify else {"pooling": "mean", "normalize": True}),
            **graph,
            **parity,
        }
        return registry.add(
            artifact,
            parent.name,
            parent=parent.ref,
            transform="convert",
            transform_params=params,
            metrics={
                f"parity_{k}": v for k, v in parity.items() if k in ("mean_cosine", "max_prob_diff")
            },
        )


def _check_parity(parity: dict[str, float], precision: str, force: bool) -> None:
    if force:
        return
    if "max_prob_diff" in parity and parity["max_prob_diff"] > PROB_TOLERANCE[precision]:
        raise InvalidInput(
            f"the {precision} classifier drifts from transformers: class probabilities differ "
            f"by up to {parity['max_prob_diff']:.5f} > {PROB_TOLERANCE[precision]} "
            "(use --force to keep it)"
        )
    if "min_cosine" in parity and parity["min_cosine"] < TOLERANCE[precision]:
        raise InvalidInput(
            f"the {precision} encoder drifts from transformers: least cosine "
            f"{parity['min_cosine']:.5f} < {TOLERANCE[precision]} (use --force to keep it)"
        )


def _parity(checkpoint: Path, folder: Path, classify: bool) -> dict[str, float]:
    texts = list(PARITY_SENTENCES)
    expected = reference_vectors(checkpoint, texts, classify)
    encoder = open_encoder(folder)
    if classify:
        got, _ = encoder.classify(texts)
        probs = [np.exp(x - x.max(axis=1, keepdims=True)) for x in (expected, got)]
        a, b = (p / p.sum(axis=1, keepdims=True) for p in probs)
        agree = float((expected.argmax(axis=1) == got.argmax(axis=1)).mean())
        return {"max_prob_diff": float(np.abs(a - b).max()), "argmax_agreement": agree,
                "sentences": len(texts)}  # fmt: skip
    got, _ = encoder.embed(texts)
    cosine = (expected * got).sum(axis=1)
    return {
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
        "sentences": len(texts),
    }
