"""Per-key limits, side by side in one run: a quiet key's latency alone, then while a noisy key
floods the server, with limits on and (the reference) with limits off.

    .venv/bin/python benchmarks/limits.py [--duration 10] [--markdown]

The tutorial MLP (784 -> 128 -> 64 -> 10, built here) served by one `modelport serve` process
with two API keys. The quiet key sends one V2 JSON request every 20 ms (50 a second, under its
limit) from a paced client and records each latency. The noisy key floods with `wrk` (16
connections, as fast as answers come). Limits: 100 requests a second per key, burst 20, 4 in
flight per key. Target: the quiet key's p99 under the flood stays within 2x of its unloaded p99,
and it is never refused.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import (  # noqa: E402
    ensure_wrk,
    free_port,
    lua_post,
    print_table,
    stop,
    tutorial_mlp,
    wait_ready,
)

from modelport import register  # noqa: E402
from modelport.registry import Registry  # noqa: E402
from modelport.settings import Settings  # noqa: E402

console = Console()
NOISY, QUIET = "noisy-key-0123456", "quiet-key-7654321"
LIMITS = ["--rate-limit", "100", "--burst", "20", "--concurrency-limit", "4"]
PACE = 0.02  # seconds between the quiet key's requests


def start(home: Path, limits: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [sys.executable, "-m", "modelport", "--home", str(home), "serve", "tutorial-mlp",
            "--http-port", str(port), "--grpc-port", "0", "--intra-op-threads", "1",
            *limits]  # fmt: skip
    env = {**os.environ, "MODELPORT_API_KEYS": f"noisy=infer:{NOISY},quiet=infer:{QUIET}"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/v2/health/ready", proc)  # the model route needs a key
    return proc, url


def quiet_client(url: str, body: bytes, duration: float) -> dict:
    """Paced requests of the quiet key: latencies of the answered ones, refusals counted."""
    latencies, refused = [], 0
    headers = {"X-API-Key": QUIET, "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for _ in range(20):  # warm the connection and the model
            client.post("/v2/models/tutorial-mlp/infer", content=body)
        end = time.perf_counter() + duration
        next_at = time.perf_counter()
        while next_at < end:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            began = time.perf_counter()
            reply = client.post("/v2/models/tutorial-mlp/infer", content=body)
            elapsed = (time.perf_counter() - began) * 1000
            if reply.status_code == 200:
                latencies.append(elapsed)
            else:
                refused += 1
            next_at += PACE
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return {"requests": len(latencies) + refused, "refused": refused,
            "p50": statistics.median(ordered), "p99": p99}  # fmt: skip


def flood(wrk: str, url: str, script: Path, duration: float) -> subprocess.Popen:
    seconds = f"{round(duration) + 2}s"
    command = [wrk, "-t", "1", "-c", "16", "-d", seconds, "-s", str(script),
               f"{url}/v2/models/tutorial-mlp/infer"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def measure(wrk: str, url: str, body: bytes, script: Path, duration: float, noisy: bool) -> dict:
    load = flood(wrk, url, script, duration) if noisy else None
    if load is not None:
        time.sleep(1.0)  # the flood is on before the quiet key measures
    row = quiet_client(url, body, duration)
    if load is not None:
        out = load.communicate()[0]
        total = int(_grab(out, r"(\d+) requests in"))
        non2xx = int(_grab(out, r"Non-2xx or 3xx responses:\s+(\d+)", "0"))
        row["noisy_rps"] = float(_grab(out, r"Requests/sec:\s+([\d.]+)"))
        row["noisy_refused"] = non2xx / max(1, total)
    return row


def _grab(text: str, pattern: str, default: str | None = None) -> str:
    import re

    found = re.search(pattern, text)
    if found is None:
        if default is None:
            raise SystemExit(f"wrk printed no {pattern!r}: {text[-500:]}")
        return default
    return found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registry = Registry(Settings(home=work / "home"))
        register(tutorial_mlp(work / "mlp.onnx"), "tutorial-mlp", registry=registry,
                 alias="production")  # fmt: skip
        registry.close()
        sample = np.random.default_rng(0).random((1, 784), np.float32)
        body = (b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,784],"data":%s}]}'
                % str(sample.ravel().tolist()).encode())  # fmt: skip
        (work / "body.json").write_bytes(body)
        script = lua_post(work / "noisy.lua", work / "body.json",
                          {"Content-Type": "application/json", "X-API-Key": NOISY})  # fmt: skip
        rows = []
        for label, limits in (("limits on", LIMITS), ("limits off (reference)", [])):
            proc, url = start(work / "home", limits)
            try:
                alone = measure(wrk, url, body, script, args.duration, noisy=False)
                flooded = measure(wrk, url, body, script, args.duration, noisy=True)
            finally:
                stop(proc)
            rows += [{"server": label, "load": "quiet key alone", **alone},
                     {"server": label, "load": "noisy key flooding", **flooded,
                      "ratio": flooded["p99"] / alone["p99"]}]  # fmt: skip
    report(rows, args.markdown)


def report(rows: list[dict], markdown: bool) -> None:
    head = ["server", "load", "quiet requests", "quiet refused", "quiet p50 ms", "quiet p99 ms",
            "p99 / alone", "noisy req/s", "noisy refused"]  # fmt: skip
    cells = [[r["server"], r["load"], str(r["requests"]), str(r["refused"]), f"{r['p50']:.2f}",
              f"{r['p99']:.2f}", f"{r['ratio']:.2f}x" if "ratio" in r else "-",
              f"{r['noisy_rps']:.0f}" if "noisy_rps" in r else "-",
              f"{r['noisy_refused']:.1%}" if "noisy_refused" in r else "-"]
             for r in rows]  # fmt: skip
    print_table("a quiet key beside a noisy one", head, cells, markdown)


if __name__ == "__main__":
    main()
