"""ONNX Runtime vs OpenVINO vs LiteRT on the same models, side by side in one run.

    python benchmarks/runtimes.py [--rounds 7] [--threads 1] [--markdown]

Trains the tutorial MLP (dense 128 relu -> 64 relu -> 10 softmax) and a small CNN (conv -> pool ->
dense) in Keras on scikit-learn's digits, registers each (ONNX), converts each to OpenVINO IR and
TFLite (fp32, fp16 and int8 each), then times ``modelport.load(ref).predict`` at batch 1 and
32 for every version. Rounds interleave the runtimes so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import modelport  # noqa: E402
from modelport.conversion import convert  # noqa: E402
from modelport.importers.keras import SAVED_MODEL  # noqa: E402
from modelport.registry import Registry  # noqa: E402
from modelport.runtimes import RuntimeOptions  # noqa: E402
from modelport.settings import Settings  # noqa: E402

VARIANTS = [("onnx", None, "fp32"), ("openvino", "openvino", "fp32"),
            ("openvino", "openvino", "fp16"), ("openvino", "openvino", "int8"),
            ("tflite", "tflite", "fp32"), ("tflite", "tflite", "fp16"),
            ("tflite", "tflite", "int8")]  # fmt: skip


def build(kind: str, x: np.ndarray, y: np.ndarray) -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    if kind == "mlp":
        stack = [keras.Input((64,)), layers.Dense(128, activation="relu"),
                 layers.Dense(64, activation="relu"),
                 layers.Dense(10, activation="softmax")]  # fmt: skip
    else:
        stack = [keras.Input((8, 8, 1)), layers.Conv2D(8, 3, padding="same", activation="relu"),
                 layers.MaxPooling2D(2), layers.Flatten(),
                 layers.Dense(10, activation="softmax")]  # fmt: skip
    model = keras.Sequential(stack)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(shape(kind, x[:1400]), y[:1400], epochs=15, batch_size=32, verbose=0)
    return model


def shape(kind: str, x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 8, 8, 1) if kind == "cnn" else x


def timed(runtime: Any, batch: np.ndarray, calls: int) -> list[float]:
    feed = {"input": batch}
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        runtime.predict(feed)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="calls per runtime per round")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, every runtime")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    console = Console()
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    home = Path(tempfile.mkdtemp(prefix="modelport-bench-"))
    registry = Registry(Settings(home=home))
    options = RuntimeOptions(intra_op_threads=args.threads, inter_op_threads=1)
    rows: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training, converting", total=2 * len(VARIANTS))
        for kind in ("mlp", "cnn"):
            model = build(kind, x, y)
            parent = modelport.register(model, kind, registry=registry)
            for fmt, target, precision in VARIANTS:
                if target is None:
                    version, report = parent, None
                else:
                    calibration = {"input": shape(kind, x[:200])} if precision == "int8" else None
                    result = convert(parent.ref, target, registry=registry, precision=precision,
                                     calibration=calibration,
                                     sample={"input": shape(kind, x[1400:])})  # fmt: skip
                    version, report = result.version, result.report
                runtime = modelport.load(version.ref, registry=registry, options=options)
                probabilities = runtime.predict({"input": shape(kind, x[1400:])})["output"]
                accuracy = float((probabilities.argmax(1) == y[1400:]).mean())
                size = sum(f.size for f in version.files if not f.path.startswith(SAVED_MODEL))
                rows.append({"model": kind, "format": fmt, "precision": precision,
                             "backend": runtime.name, "runtime": runtime, "size": size,
                             "accuracy": accuracy, "report": report,
                             "times": {1: [], 32: []}})  # fmt: skip
                progress.advance(task)
        timing = progress.add_task("timing", total=args.rounds)
        for _ in range(args.rounds):
            for batch_size in (1, 32):
                for row in rows:
                    batch = shape(row["model"], x[:batch_size])
                    timed(row["runtime"], batch, 5)  # warm-up after switching runtimes
                    row["times"][batch_size].extend(timed(row["runtime"], batch, args.calls))
            progress.advance(timing)
    show(console, rows, args)
    for row in rows:
        row["runtime"].close()
    registry.close()


def show(console: Console, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    head = ["model", "format", "precision", "backend", "size", "max abs err", "top-1 agree",
            "accuracy", "p50 b=1 (µs)", "p95 b=1 (µs)", "p50 b=32 (µs)", "rows/s b=32",
            "vs ORT b=1", "vs ORT b=32"]  # fmt: skip
    base: dict[str, dict[int, float]] = {}
    lines = []
    for row in rows:
        p50 = {b: statistics.median(t) for b, t in row["times"].items()}
        p95_1 = float(np.percentile(row["times"][1], 95))
        if row["format"] == "onnx":
            base[row["model"]] = p50
        ref = base[row["model"]]
        report = row["report"]
        lines.append([
            row["model"], row["format"], row["precision"], row["backend"],
            f"{row['size'] / 1024:.1f} KiB",
            "-" if report is None else f"{report.max_abs:.2g}",
            "-" if report is None or report.top1 is None else f"{report.top1:.3f}",
            f"{row['accuracy']:.3f}",
            f"{p50[1] * 1e6:.1f}", f"{p95_1 * 1e6:.1f}", f"{p50[32] * 1e6:.1f}",
            f"{32 / p50[32]:,.0f}",
            f"{ref[1] / p50[1]:.2f}x", f"{ref[32] / p50[32]:.2f}x",
        ])  # fmt: skip
    title = (
        f"modelport.load(ref).predict latency, {args.threads} thread(s), "
        f"{args.rounds} rounds x {args.calls} calls; parity and accuracy on 397 held-out "
        "digits; size without the kept SavedModel"
    )
    if args.markdown:
        print(f"{title}\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    table = Table(*head, title=title)
    for line in lines:
        table.add_row(*line)
    console.print(table)


if __name__ == "__main__":
    main()
