"""Triton's perf_analyzer against `modelport serve`, over HTTP and gRPC, in one run.

    python benchmarks/perf_analyzer.py [--requests 2000] [--markdown]

Serves the tutorial MLP (784 -> 128 -> 64 -> 10) from a Triton-layout model repository twice:
``mlp`` without batching and ``mlp_batched`` with dynamic batching (up to 32 rows, 500 us), and
runs the perf_analyzer binary of the tritonclient wheel (``-i http`` and ``-i grpc``) at
concurrency 1 and 8, in count windows of ``--requests`` requests. Client latencies are
perf_analyzer's; the server columns come from modelport's statistics extension (per request,
microseconds). perf_analyzer links libcudart: it comes from nvidia-cuda-runtime-cu12 (no GPU used).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.table import Table

from serving import console, free_port, stop, tutorial_mlp, wait_ready

RUNS = (("mlp", 1), ("mlp", 8), ("mlp_batched", 8))


def perf_analyzer() -> tuple[str, dict[str, str]]:
    binary = shutil.which("perf_analyzer", path=str(Path(sys.executable).parent))
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if binary is None or spec is None:
        sys.exit("needs tritonclient and nvidia-cuda-runtime-cu12 in this environment")
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return binary, {**os.environ, "LD_LIBRARY_PATH": str(lib)}


def run(binary: str, env: dict, url: str, protocol: str, model: str, concurrency: int,
        requests: int, out: Path, extra: tuple[str, ...] = ()) -> dict:  # fmt: skip
    command = [binary, "-m", model, "-u", url, "-i", protocol, *extra,
               "--concurrency-range", str(concurrency), "--measurement-mode", "count_windows",
               "--measurement-request-count", str(requests), "--stability-percentage", "100",
               "--max-trials", "10", "-f", str(out)]  # fmt: skip
    if model == "mlp":
        command += ["--shape", "input:1,784"]  # no batching: the batch dimension is free
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        sys.exit(f"perf_analyzer failed:\n{done.stdout}\n{done.stderr}")
    with out.open() as f:
        row = next(csv.DictReader(f))
    return {
        "protocol": protocol, "model": model, "concurrency": concurrency,
        "throughput": float(row["Inferences/Second"]),
        "p50": float(row["p50 latency"]) / 1000, "p99": float(row["p99 latency"]) / 1000,
        "queue": float(row["Server Queue"]), "compute": float(row["Server Compute Infer"]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per count window")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    binary, env = perf_analyzer()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("mlp", "mlp_batched"):
            (work / "models" / name / "1").mkdir(parents=True)
            tutorial_mlp(work / "models" / name / "1" / "model.onnx")
        http, grpc = free_port(), free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "modelport", "--home", str(work / "home"), "serve",
             "--model-repository", str(work / "models"), "--batch", "mlp_batched=32:500",
             "--http-port", str(http), "--grpc-port", str(grpc), "--intra-op-threads", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{http}/v2/health/ready", server)
            rows = [
                run(
                    binary,
                    env,
                    f"127.0.0.1:{port}",
                    protocol,
                    model,
                    concurrency,
                    args.requests,
                    work / "out.csv",
                )  # fmt: skip
                for protocol, port in (("http", http), ("grpc", grpc))
                for model, concurrency in RUNS
            ]
        finally:
            stop(server)
    report(rows, args.markdown)


def report(rows: list[dict], markdown: bool) -> None:
    head = ["protocol", "model", "concurrency", "infer/s", "p50 ms", "p99 ms",
            "server queue us", "server compute us"]  # fmt: skip
    cells = [[r["protocol"], r["model"], str(r["concurrency"]), f"{r['throughput']:.0f}",
              f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['queue']:.0f}", f"{r['compute']:.0f}"]
             for r in rows]  # fmt: skip
    print_table(head, cells, markdown, "perf_analyzer against modelport serve")


def print_table(head: list[str], cells: list[list[str]], markdown: bool, title: str) -> None:
    """A rich table, or Markdown for benchmarks/README.md (first column text, others numbers)."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|" + "---:|" * (len(head) - 1))
        for line in cells:
            print("| " + " | ".join(line) + " |")
        return
    table = Table(*head, title=title)
    for line in cells:
        table.add_row(*line)
    console.print(table)


if __name__ == "__main__":
    main()
