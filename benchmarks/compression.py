"""Compression side by side, in one process, on this machine.

    .venv/bin/python benchmarks/compression.py [--rounds 41] [--skip-transformer]

Part 1, the tutorial MLP (dense 128 relu -> dense 64 relu -> 10 softmax) trained here on
scikit-learn's digits: every quantization recipe, structured pruning of half the hidden units with a
short fine-tune, and a distilled student, each measured against the fp32 parent (sizes, accuracy,
median latency of interleaved runs at batch 1, 32 and 256 on one thread).

Part 2, a small BERT-style encoder built from a config (no download): the default int8 recipe
(`modelport compress quantize REF --bits 8`) against fp32 at batch 8 x 128 tokens on one thread,
with the mean cosine similarity of the outputs; stock per-tensor weights shown beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from modelport.compression import (
    TrainConfig,
    cpu_info,
    distill_model,
    evaluate_models,
    prune_model,
    quantize_model,
)
from modelport.registry import Registry
from modelport.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from demo import TutorialMLP  # noqa: E402  (examples/demo.py)

console = Console(width=150)


def train_tutorial(x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    """The demo's tutorial MLP, trained with minibatch Adam on the logits."""
    torch.manual_seed(0)
    net = TutorialMLP(x.shape[1])
    logits = torch.nn.Sequential(*list(net)[:-1])  # the same layers, without the softmax
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(40):
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 32):
            idx = order[start : start + 32]
            loss = torch.nn.functional.cross_entropy(logits(xt[idx]), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def row(table: Table, label: str, outcome, batches: tuple[int, ...]) -> None:
    c = outcome.comparison
    drop = c.accuracy_drop
    table.add_row(
        label,
        f"{c.child.size / 1024:.1f} KiB",
        f"{c.parent.size / c.child.size:.2f}x",
        f"{c.parent.gzip_size / c.child.gzip_size:.2f}x",
        f"{c.child.parameters:,} ({c.child.parameters / c.parent.parameters:.0%})",
        f"{c.child.accuracy * 100:.2f}%",
        f"{-drop * 100:+.2f}",
        *[
            f"{c.parent.latency_ms[b] * 1000:.1f} / {c.child.latency_ms[b] * 1000:.1f} us = "
            f"{c.speedup(b):.2f}x"
            for b in batches
        ],
    )


def tutorial(reg: Registry, rounds: int) -> tuple[str, dict[str, object]]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, random_state=0, stratify=digits.target
    )
    import modelport

    parent = modelport.register(
        train_tutorial(x_train, y_train), "digits", registry=reg, sample_input=x_train[:2]
    ).ref
    batches = (1, 32, 256)
    ev = {
        "eval_data": x_test,
        "eval_labels": y_test,
        "registry": reg,
        "threads": 1,
        "batches": batches,
        "rounds": rounds,
    }
    table = Table(
        title=f"tutorial MLP ({parent}, fp32, {reg.resolve(parent).size / 1024:.1f} KiB) "
        "vs each compressed child; latency fp32 / child, 1 thread",
        title_justify="left",
    )
    for col in (
        "child",
        "size",
        "smaller",
        "gzip smaller",
        "parameters",
        "accuracy",
        "points",
        *[f"batch {b}" for b in batches],
    ):
        table.add_column(col, justify="left" if col == "child" else "right")
    recipes = [
        ("int8 dynamic, per-channel (--bits 8)", {"bits": 8}),
        ("int8 dynamic, per-tensor", {"bits": 8, "per_channel": False}),
        ("int8 static QDQ, per-channel, MinMax", {"bits": 8, "calibration": x_train}),
        (
            "int8 static QOperator, per-channel",
            {"bits": 8, "calibration": x_train, "format": "qoperator"},
        ),
        (
            "int8 static QOperator, per-tensor",
            {"bits": 8, "calibration": x_train, "format": "qoperator", "per_channel": False},
        ),
        ("fp16", {"bits": 16}),
        ("4-bit weights (MatMulNBits)", {"bits": 4}),
    ]
    outcomes = {}
    for label, kwargs in recipes:
        outcomes[label] = quantize_model(parent, **kwargs, **ev)
        row(table, label, outcomes[label], batches)
    pruned = prune_model(
        parent,
        structured=0.5,
        finetune_data=x_train,
        finetune_labels=y_train,
        train=TrainConfig(epochs=20),
        **ev,
    )
    row(table, "structured prune 50% units + 20-epoch fine-tune", pruned, batches)
    outcomes["structured prune 50%"] = pruned
    sparse = prune_model(parent, sparsity=0.5, **ev)
    row(table, "magnitude prune 50% (unstructured)", sparse, batches)
    student = distill_model(
        parent,
        data=x_train,
        labels=y_train,
        hidden=(48,),
        train=TrainConfig(epochs=60, temperature=4.0),
        **ev,
    )
    row(table, "distilled student 64-48-10", student, batches)
    outcomes["distilled student"] = student
    console.print(table)
    return parent, outcomes


def headline(reg: Registry, parent: str, outcomes: dict, rounds: int, repeats: int = 3) -> None:
    """The targets, re-measured: `modelport evaluate PARENT CHILD` repeated, median speed-up."""
    table = Table(
        title=f"targets: each pair re-measured {repeats} times with `evaluate` "
        f"({rounds} interleaved rounds, 1 thread); median speed-up",
        title_justify="left",
    )
    for col in ("child", "ref", "smaller", "points", "params", "speed-up b1", "speed-up b32"):
        table.add_column(col, justify="left" if col in ("child", "ref") else "right")
    picks = [
        "int8 static QOperator, per-tensor",
        "int8 static QDQ, per-channel, MinMax",
        "int8 dynamic, per-channel (--bits 8)",
        "structured prune 50%",
        "distilled student",
    ]
    for label in picks:
        out = outcomes[label]
        ref = out.version.ref
        runs = [
            evaluate_models(parent, ref, registry=reg, threads=1, rounds=rounds)
            for _ in range(repeats)
        ]
        c = out.comparison
        table.add_row(
            label,
            ref,
            f"{c.parent.size / c.child.size:.2f}x",
            f"{-c.accuracy_drop * 100:+.2f}",
            f"{c.child.parameters / c.parent.parameters:.0%}",
            f"{statistics.median(r.speedup(1) for r in runs):.2f}x",
            f"{statistics.median(r.speedup(32) for r in runs):.2f}x",
        )
    console.print(table)


class Encoder(torch.nn.Module):
    """BERT-style: token + position embeddings, LayerNorm, post-norm GELU encoder layers."""

    def __init__(
        self, vocab: int, hidden: int, layers: int, heads: int, ff: int, max_len: int
    ) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, hidden)
        self.pos = torch.nn.Embedding(max_len, hidden)
        self.norm = torch.nn.LayerNorm(hidden)
        layer = torch.nn.TransformerEncoderLayer(
            hidden, heads, ff, dropout=0.0, activation="gelu", batch_first=True
        )
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return self.encoder(self.norm(self.tok(ids) + self.pos(positions)))


CONFIG = {"vocab": 8000, "hidden": 384, "layers": 6, "heads": 12, "ff": 1536, "max_len": 128}


def add_outlier_weights(model: Encoder, channels: int = 4, scale: float = 12.0) -> None:
    """Trained encoders have a few weight rows far larger than the rest; random init has none.
    Give each feed-forward output projection a few such rows, so per-tensor scales are stressed."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.encoder.layers:
            rows = torch.randperm(layer.linear2.weight.shape[0], generator=gen)[:channels]
            layer.linear2.weight[rows] *= scale


def transformer(reg: Registry, rounds: int) -> None:
    import modelport

    torch.manual_seed(0)
    model = Encoder(**CONFIG).eval()
    add_outlier_weights(model)
    ids = torch.randint(0, CONFIG["vocab"], (8, 128)).numpy()
    parent = modelport.register(
        model,
        "encoder",
        registry=reg,
        sample_input=ids,
        input_names=["input_ids"],
        output_names=["hidden"],
    ).ref
    ev = {
        "eval_data": ids,
        "registry": reg,
        "threads": 1,
        "batches": (8,),
        "rounds": rounds,
        "max_accuracy_drop": 0.01,
    }
    table = Table(
        title=f"BERT-style encoder {CONFIG}, fp32 {reg.resolve(parent).size / 2**20:.1f} MiB; "
        "batch 8 x 128 tokens, 1 thread",
        title_justify="left",
    )
    for col in ("recipe", "size", "fp32 ms", "int8 ms", "speed-up", "mean cosine", "guard (0.99)"):
        table.add_column(col, justify="left" if col == "recipe" else "right")
    for label, kwargs in [
        ("default --bits 8 (dynamic, per-channel weights)", {}),
        ("stock dynamic, per-tensor weights", {"per_channel": False}),
    ]:
        out = quantize_model(parent, bits=8, **kwargs, **ev)
        c = out.comparison
        table.add_row(
            label,
            f"{c.child.size / 2**20:.1f} MiB",
            f"{c.parent.latency_ms[8]:.1f}",
            f"{c.child.latency_ms[8]:.1f}",
            f"{c.speedup(8):.2f}x",
            f"{c.cosine:.4f}",
            "registered " + out.version.ref if out.version else "refused",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--skip-transformer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    console.print(f"CPU: {cpu_info().summary()}", highlight=False)
    with tempfile.TemporaryDirectory() as home:
        reg = Registry(Settings(home=Path(home)))
        parent, outcomes = tutorial(reg, args.rounds)
        headline(reg, parent, outcomes, args.rounds * 2)
        if not args.skip_transformer:
            transformer(reg, max(5, args.rounds // 8))


if __name__ == "__main__":
    main()
