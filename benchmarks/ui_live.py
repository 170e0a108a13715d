"""What an open Serving page costs the server it watches: ``modelport serve`` under ``wrk`` with
nobody looking, with one Serving page open, and with ten pages polling ten times faster than
the page does; then the dashboard's own sampling (``ui/live.py``) on its own.

    .venv/bin/python benchmarks/ui_live.py [--duration 8] [--rounds 2]

The digits-sized MLP (64 -> 128 -> 64 -> 10), one V2 JSON row per request, 8 connections; each
configuration in a fresh server process, rounds alternating. A "viewer" is a thread reading
``GET /ui/api/serving`` (what the page polls: the whole history once, then ``?since=`` its last
point) every ``period`` seconds with a viewer key, so
the server samples its metrics and computes the charts on a worker thread while it serves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.serving import (  # noqa: E402
    ensure_wrk,
    free_port,
    lua_post,
    run_wrk,
    stop,
    tutorial_mlp,
    wait_ready,
)

console = Console()
CONNECTIONS = 8
KEY = "viewer-key-bench"
CONFIGS = (
    ("nobody looking", 0, 0.0),
    ("one Serving page", 1, 2.0),
    ("ten pages at 0.2 s", 10, 0.2),
)


def start(home: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [sys.executable, "-m", "modelport", "--home", str(home), "serve", "digits",
            "--http-port", str(port), "--grpc-port", "0", "--intra-op-threads", "1",
            "--api-key", f"viewer=infer:{KEY}"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc)
    return proc, port


def viewers(url: str, count: int, period: float, stop_at: threading.Event) -> list[float]:
    """Start ``count`` pollers; returns the list their answer times (ms) are appended to."""
    times: list[float] = []

    def poll() -> None:  # as the page does: the whole history once, then what is new
        last = 0.0
        with httpx.Client(headers={"x-api-key": KEY}, timeout=10) as client:
            while not stop_at.wait(period):
                started = time.perf_counter()
                answer = client.get(url, params={"since": math.ceil(last * 1000)} if last else {})
                answer.raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
                series = answer.json()["series"]["all"]["rps"]
                last = max([last, *(t for t, _ in series)])

    for _ in range(count):
        threading.Thread(target=poll, daemon=True).start()
    return times


def serving_cost(work: Path, script: Path, duration: float, rounds: int) -> list[dict]:
    wrk = ensure_wrk()
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in CONFIGS}
    for n in range(rounds):
        for name, count, period in CONFIGS:
            proc, port = start(work / "home")
            done = threading.Event()
            try:
                url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
                run_wrk(wrk, url, script, CONNECTIONS, 2)  # warm-up
                reads = viewers(f"http://127.0.0.1:{port}/ui/api/serving", count, period, done)
                result = run_wrk(wrk, url, script, CONNECTIONS, duration)
                done.set()
                result["reads"] = len(reads)
                result["read_p50_ms"] = statistics.median(reads) if reads else None
            finally:
                done.set()
                stop(proc)
            runs[name].append(result)
            console.print(f"round {n + 1} {name}: {result['rps']:.0f} req/s, p99 "
                          f"{result['p99_ms']:.2f} ms, {result['reads']} page reads",
                          highlight=False)  # fmt: skip
    rows = []
    for name, _, _ in CONFIGS:
        found = runs[name]
        reads = [r["read_p50_ms"] for r in found if r["read_p50_ms"] is not None]
        rows.append({"config": name, "rps": statistics.median(r["rps"] for r in found),
                     "p99_ms": statistics.median(r["p99_ms"] for r in found),
                     "reads": sum(r["reads"] for r in found),
                     "read_p50_ms": statistics.median(reads) if reads else None,
                     "errors": sum(r["errors"] for r in found)})  # fmt: skip
    for row in rows:
        row["throughput_cost_pct"] = 100 * (1 - row["rps"] / rows[0]["rps"])
        row["p99_delta_ms"] = row["p99_ms"] - rows[0]["p99_ms"]
    return rows


def sampling_cost() -> list[dict]:
    """``Ring.sample`` and ``Ring.series`` over a real ``Metrics`` with 5 and 50 versions that
    each served a request between two samples, 300 samples kept (the ring full)."""
    import orjson

    from modelport.monitoring.metrics import Metrics
    from modelport.ui.live import KEEP, Ring

    class Server:
        monitor = None

        def __init__(self) -> None:
            self.metrics = Metrics()

    out = []
    for versions in (5, 50):
        server = Server()
        ring = Ring(server, every=0.0)
        costs = []
        for _ in range(KEEP):
            for v in range(versions):
                with server.metrics.request(f"m{v}", 1, "rest"):
                    pass
            started = time.perf_counter()
            ring.sample()
            costs.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        body = orjson.dumps(ring.series())  # the whole history: a page's first read
        whole = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        newest = orjson.dumps(ring.series(since=ring.intervals[-2][0]))  # a page's next read
        out.append({"versions": versions, "sample_p50_ms": statistics.median(costs),
                    "series_ms": whole, "json_kib": len(body) / 1024,
                    "next_ms": (time.perf_counter() - started) * 1000,
                    "next_kib": len(newest) / 1024})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import modelport
    from modelport.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = tutorial_mlp(work / "mlp64.onnx", n_in=64)
        with Registry.open(work / "home") as registry:
            modelport.register(model, "digits", registry=registry, alias="production")
        body = work / "body.json"
        row = {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}
        body.write_text(json.dumps({"inputs": [row]}))
        script = lua_post(work / "post.lua", body, {"Content-Type": "application/json"})
        rows = serving_cost(work, script, args.duration, args.rounds)
    table = Table(title="modelport serve under wrk, with Serving pages open (medians of rounds)")
    for col in ("config", "req/s", "cost", "p99 ms", "p99 +ms", "page reads", "read p50 ms"):
        table.add_column(col)
    for r in rows:
        read = "-" if r["read_p50_ms"] is None else f"{r['read_p50_ms']:.1f}"
        table.add_row(r["config"], f"{r['rps']:.0f}", f"{r['throughput_cost_pct']:+.1f}%",
                      f"{r['p99_ms']:.2f}", f"{r['p99_delta_ms']:+.2f}", str(r["reads"]),
                      read)  # fmt: skip
    console.print(table)
    own = Table(title="the dashboard's sampling on its own (one thread, 300 samples kept)")
    for col in ("versions", "sample() p50 ms", "first read ms", "KiB", "next read ms", "KiB"):
        own.add_column(col)
    for r in sampling_cost():
        own.add_row(str(r["versions"]), f"{r['sample_p50_ms']:.2f}", f"{r['series_ms']:.1f}",
                    f"{r['json_kib']:.0f}", f"{r['next_ms']:.2f}",
                    f"{r['next_kib']:.1f}")  # fmt: skip
    console.print(own)
    console.print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
