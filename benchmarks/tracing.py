"""The cost of tracing, side by side: one server with tracing off, one sampling 1% of requests,
one sampling 100%, all exporting over OTLP/HTTP to a receiver in this process.

    .venv/bin/python benchmarks/tracing.py [--blocks 5] [--round-seconds 2] [--paced-blocks 5]
        [--paced-seconds 3] [--rate-fraction 0.6] [--connections 8] [--markdown]

Same model (the tutorial MLP 784 -> 128 -> 64 -> 10), same request (one KServe V2 JSON sample,
no traceparent: every request is a new trace), the three servers started once and kept
running, measured with benchmarks/load.py: closed-loop blocks (`wrk`, off 1% 100% 100% 1% off,
``--round-seconds`` each), then fixed-rate blocks of off and 1% (open loop at
``--rate-fraction`` of the closed-loop req/s of off, latency timed from each request's due
time). Each round reads the server's CPU time (/proc) over the requests answered. The costs are
paired by block (1% over off in the same block), with the median over blocks and a
distribution-free interval for it; the verdict is met only when the whole interval is within
the target. A last table measures the tracing work itself in this process (CPU time, exporter
thread included): what an unsampled request adds (the sampling decision) and what a sampled one
costs (its spans, batched, encoded and exported), and the cost of 1% sampling it predicts.
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

import load as bench
from rich.console import Console

from serving import (
    ensure_wrk,
    free_port,
    lua_post,
    print_table,
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
    bench.add_options(parser)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
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
    servers, procs = {}, []
    try:
        for name, ratio in CONFIGS.items():
            port = free_port()
            procs.append(start(work / "home", port, ratio, receiver.endpoint))
            servers[name] = bench.Server(procs[-1].pid, url(port))
        for server in servers.values():
            run_wrk(wrk, server.url, script, args.connections, 2)  # warm-up
        closed = bench.interleave(servers, lambda s: run_wrk(wrk, s.url, script, args.connections,
                                                       args.round_seconds), args.blocks,
                            log=console.print)  # fmt: skip
        rate = args.rate_fraction * statistics.median(
            r["rps"] for r in bench.flatten(closed["off"])
        )
        pair = {name: servers[name] for name in ("off", "1%")}  # the target's comparison
        paced = bench.interleave(pair, lambda s: bench.fixed_rate(s.url, body.read_bytes(), rate,
                                                      args.paced_seconds,
                                                      connections=args.connections),
                           args.paced_blocks, log=console.print)  # fmt: skip
    finally:
        for proc in procs:
            stop(proc)
    report(closed, paced, rate, receiver, args, tracing_work(receiver.endpoint))


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v2/models/tutorial-mlp/infer"


def report(closed: dict, paced: dict, rate: float, receiver: Receiver, args: argparse.Namespace,
           work: dict[str, float]) -> None:  # fmt: skip
    rows = bench.rounds_rows(closed, f"wrk, {args.connections} connections")
    rows += bench.rounds_rows(paced, f"fixed {rate:,.0f} req/s")
    console.print(f"V2 REST: medians of the rounds ({args.blocks} closed-loop blocks of "
                  f"{args.round_seconds:g} s rounds, {args.paced_blocks} fixed-rate blocks of "
                  f"{args.paced_seconds:g} s)")  # fmt: skip
    print_table("tracing rounds", bench.ROUNDS_HEAD, rows, args.markdown)
    verdicts = [
        bench.judged("req/s, closed loop", closed, "off", "1%", bench.throughput, at_least=0.99,
               target=">= -1%"),
        bench.judged("CPU us/req, closed loop", closed, "off", "1%", bench.cpu_per_request,
                     at_most=1.01, target="<= +1%"),
        bench.judged("CPU us/req, fixed rate", paced, "off", "1%", bench.cpu_per_request,
                     at_most=1.01, target="<= +1%"),
        bench.judged("p99 ms, fixed rate", paced, "off", "1%", bench.p99, difference=True),
        bench.judged("req/s, closed loop", closed, "off", "100%", bench.throughput),
        bench.judged("CPU us/req, closed loop", closed, "off", "100%", bench.cpu_per_request),
    ]  # fmt: skip
    console.print("tracing costs: paired by block (off, 1%, 100%, and back)")
    print_table("tracing costs", bench.JUDGED_HEAD, verdicts, args.markdown)
    console.print(f"OTLP receiver: {receiver.calls} export calls, {receiver.bytes / 1e6:.1f} MB")
    base = statistics.median(bench.cpu_per_request(block) for block in closed["off"])
    extra = statistics.median(bench.cpu_per_request(block) for block in closed["100%"]) - base
    predicted = (work["unsampled"] + 0.01 * work["sampled"]) / base * 100
    from_servers = (0.01 * extra + work["unsampled"]) / base * 100
    console.print("tracing work per request (CPU us, in process)")
    print_table("tracing work", ["unsampled", "sampled",
                                 "1% sampling, of the server's CPU per request",
                                 "1% of 100%'s extra CPU + unsampled"],
                [[f"{work['unsampled']:.2f}", f"{work['sampled']:.0f}", f"{predicted:.2f}%",
                  f"{from_servers:.2f}%"]], args.markdown)  # fmt: skip


if __name__ == "__main__":
    main()
