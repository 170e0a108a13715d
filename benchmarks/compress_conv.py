"""int8 recipes on a convolutional image model, side by side with fp32, in one process.

    .venv/bin/python benchmarks/compress_conv.py [--channels 16] [--rounds 15]

The model is the residual CNN of the tests (conv-BN-ReLU stem, two residual blocks with
BatchNorm, global pool, linear; tests/imagecnn.py) on 3x96x96 images, trained here on synthetic
images. Each recipe is one ``quantize_model`` call measured against the fp32 parent (median of
interleaved runs on one thread at batch 1 and 32); the last row is the default recipe
(``--format auto``), which measures QDQ and QOperator and keeps the faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import modelport
from modelport.compression import cpu_info, quantize_model
from modelport.registry import Registry
from modelport.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.imagecnn import image_data, residual_cnn  # noqa: E402

RECIPES = [
    ("int8 dynamic (--bits 8)", {}),
    ("int8 static QDQ (--format qdq)", {"format": "qdq", "calibrated": True}),
    ("int8 static QOperator (--format qoperator)", {"format": "qoperator", "calibrated": True}),
    ("default static int8 (--format auto)", {"format": "auto", "calibrated": True}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = image_data(128, seed=7)
    reg = Registry(Settings(home=Path(tempfile.mkdtemp()) / "home", user="bench"))
    model = residual_cnn(channels=args.channels)
    ref = modelport.register(model, "rcnn", registry=reg, sample_input=torch.from_numpy(x[:2])).ref
    table = Table(title=f"residual CNN, {args.channels} channels, 3x96x96, one thread")
    for col in ("recipe", "kept", "size", "smaller", "accuracy", "agreement", "b1", "b32"):
        table.add_column(col, justify="left" if col in ("recipe", "kept") else "right")
    for label, recipe in RECIPES:
        calibration = x[:64] if recipe.get("calibrated") else None
        fmt = recipe.get("format", "auto")
        measure = {"eval_data": x, "eval_labels": y, "threads": 1, "rounds": args.rounds}
        outcome = quantize_model(
            ref, bits=8, calibration=calibration, format=fmt, registry=reg, **measure
        )
        c, params = outcome.comparison, outcome.candidate.params
        table.add_row(
            label, params.get("format", "-"), f"{c.child.size / 1024:.1f} KiB",
            f"{c.parent.size / c.child.size:.2f}x", f"{c.child.accuracy:.2%}",
            f"{c.agreement:.2%}", _speed(c, 1), _speed(c, 32),
        )  # fmt: skip
        choice = params.get("format_choice")
        if choice:
            tried = ", ".join(f"{f} {r['speedup']:.2f}x" for f, r in choice.items())
            table.add_row("", f"(measured {tried})", "", "", "", "", "", "")
    Console(width=160).print(table)
    print(f"parent: {c.parent.size / 1024:.1f} KiB, accuracy {c.parent.accuracy:.2%}")
    print(f"CPU: {cpu_info().summary()}")


def _speed(c: object, batch: int) -> str:
    p, k = c.parent.latency_ms[batch], c.child.latency_ms[batch]
    return f"{p:.2f} / {k:.2f} ms = {p / k:.2f}x"


if __name__ == "__main__":
    main()
