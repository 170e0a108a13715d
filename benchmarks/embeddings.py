"""Sentence embeddings side by side: modelport ONNX (fp32, int8) vs sentence-transformers.

    .venv/bin/python benchmarks/embeddings.py [--sentences 2048] [--markdown]

Same encoder: a BERT built from the all-MiniLM-L6-v2 config (6 layers, hidden 384, 12 heads,
vocabulary 30,522) with random weights (speed does not depend on the weights), same WordPiece
tokenizer file, same sentences, batch 32, mean pooling and normalisation in both, every core.
sentence-transformers runs the transformers model on PyTorch; modelport runs the converted
versions on ONNX Runtime with the ``tokenizers`` library. Reported: sentences per second,
the artifact size, and the int8 version's mean cosine against fp32.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.generation.conftest import build_bert  # noqa: E402

console = Console()
THREADS = len(os.sched_getaffinity(0))
MINILM_L6 = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
}
WORDS = (
    "the a model registry keeps every version serving language encoder vectors sentence "
    "quick brown fox jumps over lazy dog numbers symbols words cloud river"
).split()


def sentences(n: int) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def rate(embed, texts: list[str]) -> tuple[float, np.ndarray]:
    embed(texts[:64])  # warm up
    start = time.perf_counter()
    vectors = embed(texts)
    return len(texts) / (time.perf_counter() - start), np.asarray(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2048)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer, models

    from modelport.api import register
    from modelport.conversion.encoder import convert_encoder
    from modelport.generation.encoder import open_encoder
    from modelport.registry import Registry

    torch.set_num_threads(THREADS)
    texts = sentences(args.sentences)
    work = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    folder = build_bert(work / "minilm-l6", MINILM_L6)
    reg = Registry.open(work / "home")
    register(folder, "minilm", registry=reg)
    fp32 = convert_encoder(reg, "minilm:1")
    int8 = convert_encoder(reg, "minilm:1", int8=True)
    st = SentenceTransformer(
        modules=[models.Transformer(str(folder)), models.Pooling(384, "mean"), models.Normalize()],
        device="cpu",
    )
    rows = []
    st_rate, st_vectors = rate(lambda t: st.encode(t, batch_size=32), texts)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    rows.append(("sentence-transformers (PyTorch fp32)", st_rate, 1.0, size, 1.0))
    vectors = {}
    for label, version in (("modelport ONNX fp32", fp32), ("modelport ONNX int8", int8)):
        encoder = open_encoder(reg.path(version).parent, THREADS)
        encoder.batch = 32
        speed, vectors[label] = rate(lambda t, e=encoder: e.embed(t)[0], texts)
        cosine = float((vectors[label] * st_vectors).sum(axis=1).mean())
        rows.append((label, speed, speed / st_rate, version.size, cosine))
    head = [
        "encoder",
        "sentences/s",
        "vs sentence-transformers",
        "size MiB",
        "mean cosine vs PyTorch fp32",
    ]
    table = Table(
        *head, title=f"MiniLM-L6-shaped BERT, batch 32, {len(texts)} sentences, {THREADS} threads"
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, speed, ratio, nbytes, cosine in rows:
        cells = [label, f"{speed:.0f}", f"{ratio:.2f}x", f"{nbytes / 2**20:.1f}", f"{cosine:.5f}"]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    console.print(
        f"int8 is {fp32.size / int8.size:.2f}x smaller than fp32 "
        f"({fp32.size / 2**20:.1f} -> {int8.size / 2**20:.1f} MiB)"
    )
    if args.markdown:
        print("\n".join(lines))
    reg.close()


if __name__ == "__main__":
    main()
