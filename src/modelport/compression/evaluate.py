"""Side-by-side evaluation of a parent model and a compressed child, in one process.

Sizes (raw and gzip), parameter counts, latency at several batch sizes (the median of interleaved
runs: parent, child, parent, child ... so that machine noise hits both alike), accuracy on labelled
data, otherwise agreement with the parent (top-1 agreement, max abs difference, mean cosine).
"""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.compression import graph as gx
from modelport.compression.data import Dataset
from modelport.errors import BackendError, InvalidInput, first_line
from modelport.signature import Signature


@dataclass
class Side:
    label: str
    size: int
    gzip_size: int
    parameters: int | None  # None: not an ONNX graph, not counted
    latency_ms: dict[int, float] = field(default_factory=dict)
    accuracy: float | None = None


@dataclass
class Comparison:
    parent: Side
    child: Side
    rows: int  # evaluation rows
    agreement: float | None  # top-1 agreement with the parent
    max_abs_diff: float
    cosine: float  # mean cosine similarity of the first output's last-axis vectors
    threads: int
    synthetic: bool = False  # no evaluation data: random inputs drove agreement and latency

    @property
    def accuracy_drop(self) -> float | None:
        if self.parent.accuracy is None or self.child.accuracy is None:
            return None
        return self.parent.accuracy - self.child.accuracy

    def guard_drop(self) -> tuple[float, str]:
        """What the accuracy budget is checked against, and its name."""
        if self.accuracy_drop is not None:
            return self.accuracy_drop, "accuracy drop"
        if self.agreement is not None:
            return 1.0 - self.agreement, "top-1 disagreement with the parent"
        return 1.0 - self.cosine, "1 - mean cosine similarity to the parent"

    def speedup(self, batch: int) -> float:
        return self.parent.latency_ms[batch] / self.child.latency_ms[batch]

    def metrics(self) -> dict[str, float]:
        """Flat metrics stored on the new version."""
        out: dict[str, float] = {
            "size_bytes": self.child.size,
            "gzip_bytes": self.child.gzip_size,
            "parent_size_bytes": self.parent.size,
            "size_ratio": self.parent.size / self.child.size,
            "max_abs_diff": self.max_abs_diff,
            "cosine": self.cosine,
            "eval_rows": self.rows,
        }
        if self.child.parameters is not None:
            out["parameters"] = self.child.parameters
        for batch, ms in self.child.latency_ms.items():
            out[f"latency_ms_b{batch}"] = ms
            out[f"parent_latency_ms_b{batch}"] = self.parent.latency_ms[batch]
            out[f"speedup_b{batch}"] = self.speedup(batch)
        if self.agreement is not None:
            out["agreement"] = self.agreement
        if self.child.accuracy is not None:
            out["accuracy"] = self.child.accuracy
            out["parent_accuracy"] = float(self.parent.accuracy)
            out["accuracy_drop"] = float(self.accuracy_drop)
        return {k: float(v) for k, v in out.items()}


def file_sizes(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=6))


def session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # translate ORT's own exception types once, here
        raise BackendError(
            f"ONNX Runtime could not load {Path(path).name}: {first_line(exc)}"
        ) from None


def run_all(sess: Any, data: Dataset, chunk: int = 256) -> np.ndarray:
    """The first output over all rows."""
    outs = [sess.run(None, batch)[0] for batch in data.batches(chunk)]
    return np.concatenate(outs, axis=0)


def sample_inputs(
    signature: Signature, batch: int, data: Dataset | None, seq: int = 16
) -> dict[str, np.ndarray]:
    """``batch`` rows: from the data (repeated if short) or synthetic for the signature."""
    if data is not None:
        idx = np.arange(batch) % len(data)
        return {k: np.ascontiguousarray(v[idx]) for k, v in data.inputs.items()}
    from modelport.samples import synthetic_inputs

    return synthetic_inputs(signature, batch, free=seq)


def interleaved_latency(
    sessions: Sequence[Any],
    inputs: dict[str, np.ndarray],
    rounds: int = 15,
    min_round_s: float = 0.01,
    max_seconds: float = 30.0,
) -> list[float]:
    """Median milliseconds per call for each session, measured in alternating rounds; a big model
    gets fewer rounds (at least 3) so that one measurement stays near ``max_seconds``."""
    for s in sessions:  # warm-up
        for _ in range(2):
            s.run(None, inputs)
    start = time.perf_counter()
    sessions[0].run(None, inputs)
    one = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(min_round_s / one))
    rounds = max(3, min(rounds, int(max_seconds / (one * calls * len(sessions)))))
    samples: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            start = time.perf_counter()
            for _ in range(calls):
                s.run(None, inputs)
            samples[i].append((time.perf_counter() - start) * 1000.0 / calls)
    return [statistics.median(x) for x in samples]


@dataclass(frozen=True)
class Measured:
    """What ``compare`` learns of one model apart from latency: its sizes, parameter count and
    outputs on the evaluation rows. A parent compared with many children is measured once."""

    size: int
    gzip_size: int
    parameters: int | None
    outputs: np.ndarray


def measure(path: Path, sess: Any, evaluation: Dataset) -> Measured:
    size, gz = file_sizes(path)
    try:
        outputs = run_all(sess, evaluation)
    except InvalidInput:
        raise
    except Exception as exc:  # ORT run failures on data that passed the signature check
        raise _run_failed(exc) from None
    return Measured(size, gz, gx.parameter_count(gx.load(path)), outputs)


def _run_failed(exc: Exception) -> BackendError:
    return BackendError(f"ONNX Runtime failed while evaluating: {first_line(exc)}")


def evaluation_rows(signature: Signature, data: Dataset | None) -> Dataset:
    """The rows outputs are compared on: the data, or 256 synthetic rows (the same every time)."""
    return data if data is not None else Dataset(sample_inputs(signature, 256, None))


def compare(
    parent_path: Path,
    child_path: Path,
    signature: Signature,
    data: Dataset | None = None,
    *,
    labels: tuple[str, str] = ("parent", "child"),
    batches: Sequence[int] = (1, 32),
    threads: int = 0,
    rounds: int = 15,
    parent: Measured | None = None,
    child: Measured | None = None,
    sessions: Sequence[Any] | None = None,
) -> Comparison:
    """Measure ``child`` against ``parent`` side by side; ``data`` drives accuracy and agreement.
    ``parent``/``child``: already measured on the same rows (``measure``); ``sessions``: the two
    already open (anything with ORT's ``run(None, feed)``)."""
    if sessions is None:
        sessions = [session(parent_path, threads), session(child_path, threads)]
    evaluation = evaluation_rows(signature, data)
    try:
        if parent is None:
            parent = measure(parent_path, sessions[0], evaluation)
        if child is None:
            child = measure(child_path, sessions[1], evaluation)
        sides = [Side(label, m.size, m.gzip_size, m.parameters)
                 for label, m in zip(labels, (parent, child), strict=True)]  # fmt: skip
        outs = [parent.outputs, child.outputs]
        for batch in batches:
            inputs = sample_inputs(signature, batch, data)
            for side, ms in zip(sides, interleaved_latency(sessions, inputs, rounds), strict=False):
                side.latency_ms[batch] = ms
    except (InvalidInput, BackendError):
        raise
    except Exception as exc:  # ORT run failures on data that passed the signature check
        raise _run_failed(exc) from None
    a, b = (o.astype(np.float64) for o in outs)
    if a.shape != b.shape:
        raise BackendError(f"the outputs differ in shape: {list(a.shape)} vs {list(b.shape)}")
    agreement = None
    if a.ndim == 2 and a.shape[1] > 1:
        agreement = float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
        if data is not None and data.labels is not None:
            for side, out in zip(sides, (a, b), strict=False):
                side.accuracy = float(np.mean(out.argmax(axis=1) == data.labels))
    # cosine per vector along the last axis: per row of a classifier, per token of an encoder
    width = a.shape[-1] if a.ndim >= 2 else 1
    fa, fb = a.reshape(-1, width), b.reshape(-1, width)
    cos = np.sum(fa * fb, axis=1) / np.maximum(
        np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1), 1e-12
    )
    return Comparison(
        sides[0],
        sides[1],
        len(evaluation),
        agreement,
        float(np.max(np.abs(a - b))),
        float(np.mean(cos)),
        threads,
        data is None,
    )
