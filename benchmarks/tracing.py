"""The cost of tracing, side by side: one server with tracing off, one sampling 1% of requests,
one sampling 100%, all exporting over OTLP/HTTP to a receiver in this process.

    .venv/bin/python benchmarks/tracing.py [--rounds 5] [--duration 5] [--connections 8]
                                           [--together]

Same model (the tutorial MLP 784 -> 128 -> 64 -> 10), same load (`wrk` POSTing one KServe V2 JSON
request with one sample, no traceparent: every request is a new trace), the three servers
measured in interleaved rounds, the order rotated from round to round, so that load from
elsewhere on the machine falls on all three alike. Besides req/s, each round reads each
server's own CPU time (/proc) over the requests it counted (/metrics): CPU per request moves
far less with other load than throughput does. The costs are the medians over rounds of each
round's own ratio to "off" (with their range over rounds), so load that changes between rounds
cancels; with ``--together`` each round loads the three servers at the same time, so the CPU
per request of each is measured under the same load from elsewhere. A second table measures
the tracing work itself in this process (CPU time, exporter thread included): what an
unsampled request adds (the sampling decision) and what a sampled one costs (its spans,
batched, encoded and exported), and the cost of 1% sampling it predicts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console
from rich.table import Table

from monitoring import cpu_seconds, served
from serving import (
    ensure_wrk,
    free_port,
    lua_post,
    run_wrk,
    stop,
    tutorial_mlp,
    v2_body,
    wait_ready,
)

CONFIGS = {"off": None, "1%": "0.01", "100%": "1.0"}
console = Console(width=140)  # the tables whole, also when the output is a file


class Receiver:
    """Counts OTLP/HTTP export calls and bytes; answers each with an empty (valid) response."""

    def __init__(self) -> None:
        self.calls = self.bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                size = int(self.headers.get("content-length", 0))
                self.rfile.read(size)
                receiver.calls += 1
                receiver.bytes += size
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start(home: Path, port: int, ratio: str | None, endpoint: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if ratio is not None:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_TRACES_SAMPLER="traceidratio",
                   OTEL_TRACES_SAMPLER_ARG=ratio)  # fmt: skip
    args = [sys.executable, "-m", "modelport", "--home", str(home), "serve", "tutorial-mlp",
            "--http-port", str(port), "--grpc-port", "0", "--intra-op-threads", "1"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_ready(f"http://127.0.0.1:{port}/v2/models/tutorial-mlp/ready", proc)
    return proc


async def _asgi_reply(scope: dict, receive: object, send: object) -> None:
    """An app doing no work but stamping a sampled request's stages, as the server does."""
    from modelport.monitoring.tracing import TRACE

    trace = TRACE.get()
    if trace is not None:
        trace.entered("tutorial-mlp", 1)
        now = time.perf_counter()
        trace.computed(now, now, now, 1)
        trace.answered()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def tracing_work(endpoint: str, requests: int = 20_000) -> dict[str, float]:
    """CPU microseconds the tracing wrapper adds per request: unsampled, and sampled (300
    requests: their 1,500 spans fit the exporter's queue, none is dropped uncounted)."""
    import asyncio

    from modelport.monitoring.traced import traced_asgi
    from modelport.monitoring.tracing import Tracing

    scope = {"type": "http", "method": "POST", "path": "/v2/models/tutorial-mlp/infer",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", b"3200")]}  # fmt: skip

    async def send(message: dict) -> None:
        pass

    async def loop(app: object, n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            await app(scope, None, send)
        return time.process_time() - started

    out = {}
    for name, ratio, n in (("unsampled", "0", requests), ("sampled", "1", 300)):
        tracing = Tracing.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                            "OTEL_TRACES_SAMPLER": "traceidratio",
                                            "OTEL_TRACES_SAMPLER_ARG": ratio})  # fmt: skip
        plain = asyncio.run(loop(_asgi_reply, n))
        started = time.process_time()
        traced = asyncio.run(loop(traced_asgi(_asgi_reply, tracing), n))
        tracing.shutdown()  # exports what is queued: its CPU time counts
        traced += time.process_time() - started - traced
        out[name] = max(traced - plain, 0.0) / n * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--together", action="store_true",
                        help="load the three servers at the same time in each round (their CPU "
                        "per request then sees the same load from elsewhere)")  # fmt: skip
    args = parser.parse_args()
    console.print("load average at the start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    import modelport
    from modelport.registry import Registry
    from modelport.settings import Settings

    wrk, receiver = ensure_wrk(), Receiver()
    work = Path(tempfile.mkdtemp(prefix="modelport-bench-tracing-"))
    registry = Registry(Settings(home=work / "home"))
    modelport.register(tutorial_mlp(work / "mlp.onnx"), "tutorial-mlp", registry=registry,
                       alias="production")  # fmt: skip
    registry.close()
    body = work / "one-sample.json"
    body.write_text(json.dumps(v2_body(1)))
    script = lua_post(work / "post.lua", body, {"Content-Type": "application/json"})
    servers = {}
    try:
        for name, ratio in CONFIGS.items():
            port = free_port()
            servers[name] = (start(work / "home", port, ratio, receiver.endpoint), port)
        for _proc, port in servers.values():
            run_wrk(wrk, url(port), script, args.connections, 2)  # warm-up
        results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        names = list(CONFIGS)
        for round_ in range(args.rounds):
            order = names[round_ % 3 :] + names[: round_ % 3]
            groups = [order] if args.together else [[name] for name in order]
            for group in groups:
                for name, result in measure(servers, group, wrk, script, args).items():
                    results[name].append(result)
                    console.print(f"round {round_ + 1} {name:>4}: {result['rps']:.0f} req/s, "
                                  f"p99 {result['p99_ms']:.2f} ms, "
                                  f"{result['cpu_us']:.0f} CPU us/request, "
                                  f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    finally:
        for proc, _port in servers.values():
            stop(proc)
    report(results, receiver, args, tracing_work(receiver.endpoint))


def measure(servers: dict, names: list[str], wrk: str, script: Path,
            args: argparse.Namespace) -> dict[str, dict]:  # fmt: skip
    """wrk on each of ``names``' servers at the same time; each server's CPU per request."""
    before = {n: (cpu_seconds(servers[n][0].pid), served(servers[n][1], "tutorial-mlp"))
              for n in names}  # fmt: skip
    results: dict[str, dict] = {}

    def load(name: str) -> None:
        results[name] = run_wrk(wrk, url(servers[name][1]), script, args.connections,
                                args.duration)  # fmt: skip

    threads = [threading.Thread(target=load, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in names:
        proc, port = servers[name]
        requests = served(port, "tutorial-mlp") - before[name][1]
        results[name]["cpu_us"] = (cpu_seconds(proc.pid) - before[name][0]) / requests * 1e6
    return results


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v2/models/tutorial-mlp/infer"


def report(results: dict[str, list[dict]], receiver: Receiver, args: argparse.Namespace,
           work: dict[str, float]) -> None:  # fmt: skip
    off = results["off"]
    title = (f"V2 REST, {args.connections} connections, {args.rounds} rounds of "
             f"{args.duration:g} s; costs: median of the rounds' own ratios to off")  # fmt: skip
    table = Table("tracing", "req/s (median)", "req/s vs off", "p99 ms", "CPU us/request",
                  "CPU vs off", "CPU vs off, range", "errors", title=title)  # fmt: skip
    cpu_costs = {}
    for name, rows in results.items():
        rps = [100 * (r["rps"] / o["rps"] - 1) for r, o in zip(rows, off, strict=True)]
        cpu = sorted(100 * (r["cpu_us"] / o["cpu_us"] - 1) for r, o in zip(rows, off, strict=True))
        cpu_costs[name] = statistics.median(cpu)
        errors = sum(r["errors"] + r["timeouts"] for r in rows)
        first = name == "off"
        table.add_row(name, f"{statistics.median(r['rps'] for r in rows):.0f}",
                      "-" if first else f"{statistics.median(rps):+.1f}%",
                      f"{statistics.median(r['p99_ms'] for r in rows):.2f}",
                      f"{statistics.median(r['cpu_us'] for r in rows):.0f}",
                      "-" if first else f"{cpu_costs[name]:+.2f}%",
                      "-" if first else f"{cpu[0]:+.1f}% to {cpu[-1]:+.1f}%",
                      str(errors))  # fmt: skip
    console.print(table)
    console.print(f"OTLP receiver: {receiver.calls} export calls, {receiver.bytes / 1e6:.1f} MB")
    base = statistics.median(r["cpu_us"] for r in off)
    predicted = (work["unsampled"] + 0.01 * work["sampled"]) / base * 100
    from_servers = cpu_costs["100%"] / 100 + (work["unsampled"] / base * 100)
    table = Table("tracing work per request (CPU us, in process)", "unsampled", "sampled",
                  "1% sampling, of the server's CPU per request",
                  "1% of 100%'s extra CPU + unsampled")  # fmt: skip
    table.add_row("", f"{work['unsampled']:.2f}", f"{work['sampled']:.0f}", f"{predicted:.2f}%",
                  f"{from_servers:.2f}%")  # fmt: skip
    console.print(table)
    console.print("load average at the end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
