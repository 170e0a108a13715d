"""Explanation latency, side by side: `POST /v2/models/digits/explain` on a real `modelport serve`
against the same shap explainer called in this process (the floor: no HTTP, no JSON).

    .venv/bin/python benchmarks/explain.py [--requests 40]

The model is scikit-learn's digits MLP (64 features -> 10 probabilities, trained here), the
background set 100 training rows stored on the version; each request explains one test row,
one after the other. The first request of each method pays for shap's import and its
compiled code (numba) and is reported apart; the table gives the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
from rich.table import Table

from serving import console, free_port, stop, wait_ready

METHODS = ("permutation", "kernel")


def build(home: Path) -> tuple[np.ndarray, np.ndarray]:
    """digits:1 with a 100-row background; returns (background, test rows)."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    import modelport
    from modelport.registry import Registry
    from modelport.registry.attachments import attach
    from modelport.settings import Settings

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier((64,), max_iter=300, random_state=0).fit(x[:1200], y[:1200])
    registry = Registry(Settings(home=home))
    modelport.register(clf, "digits", registry=registry, sample_input=x[:2], alias="production")
    np.save(home / "background.npy", x[:100])
    attach(registry, "digits:1", "explain-background", home / "background.npy")
    registry.close()
    return x[:100], x[1200:]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def over_http(url: str, rows: np.ndarray, method: str) -> tuple[float, list[float], int]:
    """(first request's time, the others' times, how many answered 202: past the budget)."""
    times, late = [], 0
    for row in rows:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                            "data": row.tolist()}], "parameters": {"method": method}}  # fmt: skip
        request = urllib.request.Request(url, json.dumps(body).encode(),
                                         {"content-type": "application/json"})  # fmt: skip
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as reply:
            status, location = reply.status, reply.headers.get("location")
            reply.read()
        while status == 202:  # past the budget: fetch the job until it is done
            time.sleep(0.05)
            with urllib.request.urlopen(url.split("/v2/")[0] + location, timeout=120) as reply:
                status = reply.status
                reply.read()
            late += len(times) > 0 and status != 202
        times.append(time.perf_counter() - started)
    return times[0], times[1:], late


def in_process(home: Path, background: np.ndarray, rows: np.ndarray, method: str) -> tuple:
    from modelport.api import load
    from modelport.monitoring.explain import explain
    from modelport.registry import Registry
    from modelport.settings import Settings

    with Registry(Settings(home=home)) as registry:
        runtime = load(registry.resolve("digits:1"), registry=registry)
    times = []
    try:
        for row in rows:
            started = time.perf_counter()
            explain(runtime, row[None], background, method=method)
            times.append(time.perf_counter() - started)
    finally:
        runtime.close()
    return times[0], times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="explanations per method")
    args = parser.parse_args()
    import subprocess

    home = Path(tempfile.mkdtemp(prefix="modelport-bench-explain-"))
    background, rows = build(home)
    rows = rows[: args.requests]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelport", "--home", str(home), "serve",
                             "--http-port", str(port), "--grpc-port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    results = []
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/models/digits/ready", proc)
        url = f"http://127.0.0.1:{port}/v2/models/digits/explain"
        for method in METHODS:
            first, times, late = over_http(url, rows, method)
            results.append(("modelport POST /explain", method, first, times, late))
            console.print(f"served {method}: p95 {percentile(times, 95) * 1e3:.0f} ms")
    finally:
        stop(proc)
    for method in METHODS:
        first, times = in_process(home, background, rows, method)
        results.append(("shap in process (floor)", method, first, times, 0))
    table = Table(
        "how",
        "method",
        "first (import, compile)",
        "p50 ms",
        "p95 ms",
        "max ms",
        "n",
        title="digits MLP, 64 features, 100-row background, one row per request",
    )
    for how, method, first, times, late in results:
        table.add_row(how, method, f"{first * 1e3:.0f}", f"{statistics.median(times) * 1e3:.0f}",
                      f"{percentile(times, 95) * 1e3:.0f}", f"{max(times) * 1e3:.0f}",
                      str(len(times)), str(late))  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
