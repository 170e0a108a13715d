"""Encoders: ONNX export served with the tokenizers library; vectors match transformers."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.api import register
from modelport.conversion.encoder import convert_encoder, reference_vectors
from modelport.errors import InvalidInput
from modelport.generation.encoder import open_encoder
from modelport.registry import Registry
from modelport.settings import Settings
from tests.generation.conftest import build_bert

TEXTS = ["hello world", "the lazy dog sleeps", "vectors for every sentence, even long ones " * 3]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("encoder")
    reg = Registry(Settings(home=tmp / "home", user="tester"))
    # MiniLM-L6's shape, random weights: the embedding tables dominate the file, as in MiniLM
    register(
        build_bert(
            tmp / "bert",
            {
                "hidden_size": 384,
                "num_hidden_layers": 2,
                "intermediate_size": 1536,
                "vocab_size": 30522,
            },
        ),
        "bert",
        registry=reg,
    )
    yield reg
    reg.close()


def test_fp32_encoder_matches_transformers(registry) -> None:
    version = convert_encoder(registry, "bert:1")
    assert version.format == "onnx" and version.parent == "bert:1"
    assert version.tags["task"] == "feature-extraction"
    assert version.transform_params["min_cosine"] >= 0.9999
    # one fused Attention per layer, residual + LayerNorm and bias + GELU fused too
    fused = version.transform_params["fused"]
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] == 4
    assert fused["BiasGelu"] == 2
    folder = registry.path(version).parent
    got, tokens = open_encoder(folder).embed(TEXTS)
    expected = reference_vectors(registry.path("bert:1").parent, TEXTS)
    assert ((got * expected).sum(axis=1) >= 0.9999).all()
    assert tokens > len(TEXTS)


def test_int8_quantizes_the_embedding_tables(registry) -> None:
    fp32 = registry.resolve("bert:2")
    int8 = convert_encoder(registry, "bert:1", int8=True)
    assert int8.transform_params["quantized_ops"] == ["MatMul", "Attention", "Gather"]
    assert fp32.size / int8.size >= 3.5
    assert int8.transform_params["weights"] == "int8 per-channel"
    assert isinstance(int8.transform_params["reduce_range"], bool)
    a, _ = open_encoder(registry.path(fp32).parent).embed(TEXTS)
    b, _ = open_encoder(registry.path(int8).parent).embed(TEXTS)
    assert (a * b).sum(axis=1).mean() >= 0.99


def test_long_lists_are_split_into_batches(registry) -> None:
    encoder = open_encoder(registry.path("bert:2").parent)
    many = [f"sentence number {i}" for i in range(70)]
    vectors, _ = encoder.embed(many)
    assert vectors.shape[0] == 70
    np.testing.assert_allclose(vectors[65], encoder.embed([many[65]])[0][0], atol=1e-5)


def test_mixed_lengths_are_batched_by_length_and_answered_in_order(registry) -> None:
    """Sorting by token count pads each batch to its own longest text; the answers still come
    back in the caller's order, each the vector the text gets alone."""
    encoder = open_encoder(registry.path("bert:2").parent)
    encoder.batch = 4
    texts = [("word " * n).strip() for n in (30, 1, 12, 2, 25, 3, 8, 40, 5, 1)]
    vectors, tokens = encoder.embed(texts)
    alone = np.concatenate([encoder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)
    assert tokens == sum(len(encoder.tokenizer.encode(t).ids) for t in texts)
    with pytest.raises(InvalidInput, match="no texts"):
        encoder.embed([])


def test_only_encoder_checkpoints_convert(registry, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="not a Hugging Face encoder or sequence classifier"):
        convert_encoder(registry, "bert:2")


def test_sequence_classifiers_convert_with_a_probability_parity(registry, tmp_path) -> None:
    """Through the real command line, which prints the parity."""
    import subprocess
    import sys

    folder = build_bert(tmp_path / "clf", classes=2)
    base = [sys.executable, "-m", "modelport", "--home", str(registry.settings.home)]
    for args in (["register", str(folder), "--name", "clf"],
                 ["convert", "clf:1", "--to", "onnx-encoder"]):  # fmt: skip
        proc = subprocess.run(base + args, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert "registered clf:2 (onnx, fp32" in proc.stdout
    assert "same class on 100% of 8 sentences" in proc.stdout
    assert registry.resolve("clf:1").tags["task"] == "text-classification"
    fp32 = registry.resolve("clf:2")
    assert fp32.transform_params["output"] == "logits"
    assert fp32.transform_params["max_prob_diff"] <= 1e-4
    assert fp32.transform_params["argmax_agreement"] == 1.0
    assert fp32.metrics["parity_max_prob_diff"] == fp32.transform_params["max_prob_diff"]
    classifier = open_encoder(registry.path(fp32).parent)
    logits, _ = classifier.classify(TEXTS)
    expected = reference_vectors(folder, TEXTS, classify=True)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    with pytest.raises(InvalidInput, match="not an encoder"):
        classifier.embed(TEXTS)
