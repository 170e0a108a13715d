"""Rollouts, side by side in one run: serving with a rollout active against none, the cost of
shadowing every request on the primary's latency, and rollback delays under load.

    .venv/bin/python benchmarks/rollouts.py [--duration 10] [--only throughput|shadow|rollback]
        [--shadow-runners process,thread] [--blocks 5] [--round-seconds 2] [--paced-blocks 5]
        [--paced-seconds 3] [--rate-fractions 0.3,0.6] [--markdown]

1. Throughput: the tutorial MLP (784 -> 128 -> 64 -> 10, built here) served by one `modelport
   serve` process, `wrk` at concurrency 8 POSTing one V2 JSON sample, alternately with no
   rollout and with a rollout of a second version in "canary 50 shadow 20%" (half the requests
   answered by the candidate, a fifth of the rest, 10% of all, shadowed), three pairs, medians.
   Target >= 0.9x req/s.
2. Shadow cost: one server (copies in the shadow process, the default runner; ``--shadow-runners
   process,thread`` adds a server running them on a worker thread) serving the same MLP as
   "plain" (no rollout) and as "mlp" (a rollout shadowing every request), kept running while
   benchmarks/load.py interleaves blocks on the two models (none, shadow, shadow, none): closed
   loop (`wrk`, one connection, ``--round-seconds`` a round), then open loop at fixed rates
   (``--rate-fractions`` of the closed loop's req/s without a rollout; latency timed from each
   request's due time). CPU per request counts the server and its shadow process. Target: the
   primary's p99 rises by at most 5% or 0.5 ms, judged on the interval of the paired median.
3. Rollback: the rollout test's classifier (stable 0.27 ms a call in ONNX Runtime) and three bad
   candidates (errors on a fifth of the inputs, 5x the compute, disagreeing); `wrk` with varied
   inputs on one connection; the delay from the end of the window that made a breach sustained
   to the rollback decision in the log. Target: within 5 s, zero failed requests.
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import load as bench  # noqa: E402
from benchmarks.serving import (  # noqa: E402
    ensure_wrk,
    free_port,
    lua_post,
    print_table,
    run_wrk,
    stop,
    tutorial_mlp,
    wait_ready,
)
from tests.rollouts.conftest import CANDIDATES, classifier_onnx, inputs  # noqa: E402

from modelport import register, rollouts  # noqa: E402
from modelport.registry import Registry  # noqa: E402
from modelport.rollouts.gates import Gates  # noqa: E402
from modelport.settings import Settings  # noqa: E402

console = Console(width=170)  # wide enough for the points table when piped to a file
ROUNDS = 3  # alternating pairs per comparison; the report takes medians
LENIENT = Gates(max_error_rate=0.99, max_p99_ratio=1000, min_agreement=0.01, max_shift=1.0)
ROLLBACK_GATES = Gates(
    max_error_rate=0.01,
    max_p99_ratio=2.0,
    min_agreement=0.98,
    window=0.5,
    span=4,
    consecutive=3,
    min_window_samples=10,
    latency_floor_ms=0.5,
)
ROLLBACK_PLANS = {
    "failing": "canary 50 60s",
    "slow": "canary 50 60s",
    "disagreeing": "shadow 100% 60s; canary 50 60s",
}


def start_server(home: Path, port: int, model: str, runner: str = "process") -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "modelport",
        "--home",
        str(home),
        "serve",
        "--http-port",
        str(port),
        "--grpc-port",
        "0",
        "--intra-op-threads",
        "1",
        "--poll-interval",
        "0.5",
        "--shadow-runner",
        runner,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/v2/models/{model}/ready", proc)
    return proc


def split_active(port: int, rollout_id: int, warm: Callable[[], object]) -> None:
    """Wait until the server follows the rollout and, when it shadows, its shadow process has
    answered a copy (``warm`` sends a little traffic meanwhile): its start-up is not measured."""
    import urllib.request

    shadowed = 'role="shadow",outcome="success"} '
    for _ in range(200):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as reply:
            text = reply.read().decode()
        if f'rollout="{rollout_id}"' in text:
            weight = f'modelport_rollout_shadow_weight{{model="mlp",rollout="{rollout_id}"'
            shadows = any(line.startswith(weight) and not line.endswith(" 0")
                          for line in text.splitlines())  # fmt: skip
            done = [line for line in text.splitlines()
                    if f'rollout="{rollout_id}"' in line and shadowed in line]  # fmt: skip
            if not shadows or (done and not done[0].endswith(" 0")):
                time.sleep(0.5)  # the candidate is warm; let a window pass
                return
            warm()
        time.sleep(0.1)
    raise SystemExit("the rollout never reached the server")


def throughput_and_shadow(wrk: str, work: Path, args: argparse.Namespace) -> tuple[list, list]:
    home = work / "mlp-home"
    registry = Registry(Settings(home=home))
    onnx_path = tutorial_mlp(work / "mlp.onnx")
    register(onnx_path, "mlp", registry=registry, alias="production")
    register(onnx_path, "mlp", registry=registry)
    body = work / "mlp.json"
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    body.write_text(
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [1, 784],
                        "data": x.ravel().tolist(),
                    }
                ]
            }
        )
    )
    closed = lua_post(work / "mlp.lua", body, {"Content-Type": "application/json"})
    rows, shadows = [], []
    canary = "canary 50 600s shadow 20%"
    points = [("no rollout", None, 8, "closed"), ("canary 50%, shadow 10%", canary, 8, "closed")]
    try:
        if args.only in (None, "throughput"):
            rows = serve_points(wrk, registry, {"closed": closed}, "process", points * ROUNDS,
                                args.duration)  # fmt: skip
        if args.only in (None, "shadow"):
            register(onnx_path, "plain", registry=registry, alias="production")
            shadows = [shadow_cost(wrk, registry, closed, body.read_bytes(), runner, args)
                       for runner in args.shadow_runners.split(",")]  # fmt: skip
    finally:
        registry.close()
    return rows, shadows


def shadow_cost(wrk: str, registry: Registry, script: Path, body: bytes, runner: str,
                args: argparse.Namespace) -> dict:  # fmt: skip
    """One server (copies on ``runner``) serving "plain" (no rollout) and "mlp" (shadowing
    every request to mlp:2): interleaved blocks on the two, closed loop on one connection,
    then at fixed rates, fractions of the closed loop's req/s without a rollout."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/v2/models"
    proc = start_server(registry.settings.home, port, "mlp", runner)
    servers = {"none": bench.Server(proc.pid, f"{base}/plain/infer"),
               "shadow 100%": bench.Server(proc.pid, f"{base}/mlp/infer")}  # fmt: skip
    try:
        r = rollouts.start(registry, "mlp", "mlp:2", plan="shadow 100% 600s", gates=LENIENT,
                           bake=600)  # fmt: skip
        split_active(port, r.id, lambda: run_wrk(wrk, servers["shadow 100%"].url, script, 1, 0.5))
        for server in servers.values():
            run_wrk(wrk, server.url, script, 1, 2)  # warm-up
        copies = shadow_counts(port)
        closed = bench.interleave(servers, lambda s: run_wrk(
            wrk, s.url, script, 1, args.round_seconds), args.blocks, log=console.print)  # fmt: skip
        capacity = statistics.median(r["rps"] for r in bench.flatten(closed["none"]))
        paced = {}
        for fraction in args.rate_fractions:
            rate = fraction * capacity
            paced[rate] = bench.interleave(servers, lambda s, rate=rate: bench.fixed_rate(
                s.url, body, rate, args.paced_seconds, connections=4), args.paced_blocks,
                log=console.print)  # fmt: skip
        time.sleep(0.2)  # the shadow process's last counts come in
        ran, dropped = (b - a for a, b in zip(copies, shadow_counts(port), strict=True))
        rollouts.abort(registry, "mlp")
    finally:
        stop(proc)
    return {"runner": runner, "closed": closed, "paced": paced, "ran": ran, "dropped": dropped}


def shadow_rows(shadow: dict) -> list[list[str]]:
    """Target: the primary's p99 rises by at most 5% of none's, or 0.5 ms."""
    rows = []
    loads = [("closed, 1 connection", shadow["closed"])]
    loads += [(f"fixed {rate:,.0f} req/s", results) for rate, results in shadow["paced"].items()]
    for load, results in loads:
        limit = max(0.5, 0.05 * statistics.median(bench.p99(block) for block in results["none"]))
        rows += [
            bench.judged(f"p99 ms, {load}", results, "none", "shadow 100%", bench.p99,
                         difference=True, at_most=limit, target=f"<= +{limit:.2f} ms"),
            bench.judged(f"CPU us/req, {load}", results, "none", "shadow 100%",
                         bench.cpu_per_request),
        ]  # fmt: skip
    for row in rows:
        row[1] = f"{row[1]} ({shadow['runner']})"
    return rows


def serve_points(wrk: str, registry: Registry, scripts: dict[str, Path], runner: str,
                 points: list, duration: float) -> list[dict]:  # fmt: skip
    """One server (shadow copies on ``runner``), a wrk run per (label, plan, connections, load)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
    proc = start_server(registry.settings.home, port, "mlp", runner)
    rows = []
    try:
        run_wrk(wrk, url, scripts["closed"], 8, 2)  # warm-up
        for label, plan, connections, load in points:
            if plan is not None:
                r = rollouts.start(registry, "mlp", "mlp:2", plan=plan, gates=LENIENT, bake=600)
                split_active(port, r.id, lambda: run_wrk(wrk, url, scripts["closed"], 1, 0.5))
            before, copies = cpu_seconds(proc.pid), shadow_counts(port)
            result = run_wrk(wrk, url, scripts[load], connections, duration)
            after, n = cpu_seconds(proc.pid), max(result["rps"] * duration, 1)
            time.sleep(0.2)  # the shadow process's last counts of the point come in
            result["ran"], result["dropped"] = (b - a for a, b in zip(copies, shadow_counts(port),
                                                                      strict=True))  # fmt: skip
            for key, a, b in zip(("server_us", "shadow_us", "wait_us"), before, after,
                                 strict=True):  # fmt: skip
                result[key] = 1e6 * (b - a) / n
            result["cpu_us"] = result["server_us"] + result["shadow_us"]
            result["load"] = load
            if plan is not None:
                rollouts.abort(registry, "mlp")
                time.sleep(1.5)  # the split leaves the model set
            rows.append({"setup": label, "runner": runner, "concurrency": connections, **result})
    finally:
        stop(proc)
    return rows


def shadow_counts(port: int) -> tuple[int, int]:
    """Shadow copies run (successes and errors) and dropped so far, from the server's metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as reply:
        text = reply.read().decode()
    ran = dropped = 0
    for line in text.splitlines():
        if line.startswith("modelport_rollout_requests_total") and 'role="shadow"' in line:
            ran += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("modelport_rollout_shadow_dropped_total"):
            dropped += int(float(line.rsplit(" ", 1)[1]))
    return ran, dropped


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """Seconds so far: the server's CPU time (user + system), its children's (a shadow
    process), and the time the server's live threads waited on a run queue for a core."""
    import psutil

    server = psutil.Process(pid)
    times = server.cpu_times()
    children = 0.0
    for process in server.children(recursive=True):
        try:
            child = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        children += child.user + child.system
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waited += int((task / "schedstat").read_text().split()[1])  # nanoseconds
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return times.user + times.system, children, waited / 1e9


def rollback_delays(wrk: str, work: Path) -> list[dict]:
    home = work / "clf-home"
    registry = Registry(Settings(home=home))
    register(
        classifier_onnx(work / "stable.onnx", work=2),
        "digits",
        registry=registry,
        alias="production",
    )
    versions = {}
    for kind in ROLLBACK_PLANS:
        options = {**CANDIDATES[kind], "work": 10 if kind == "slow" else 2}
        path = classifier_onnx(work / f"{kind}.onnx", **options)
        versions[kind] = register(path, "digits", registry=registry).version
    bodies = [
        json.dumps(
            {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row.tolist()}
                ]
            }
        )
        for row in inputs(64, seed=9)
    ]
    script = work / "varied.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        "bodies = {" + ",".join(json.dumps(b) for b in bodies) + "}\n"
        "request = function() return wrk.format(nil, nil, nil, "
        "bodies[math.random(#bodies)]) end\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
    proc = start_server(home, port, "digits")
    rows = []
    try:
        for kind, plan in ROLLBACK_PLANS.items():
            result: dict = {}
            load = threading.Thread(
                target=lambda out=result: out.update(run_wrk(wrk, url, script, 1, 12))
            )
            load.start()
            time.sleep(1.0)
            rollouts.start(
                registry, "digits", f"digits:{versions[kind]}", plan=plan, gates=ROLLBACK_GATES
            )
            load.join()
            rollout, log = rollouts.history(registry, "digits")[0]
            if rollout.active:  # not decided while the load ran: record it, then clear it
                rollouts.abort(registry, "digits", reason="benchmark load ended")
            last = log[-1]
            window = last.evidence.get("window")
            delay = last.at.timestamp() - window["end_ms"] / 1000 if window else float("nan")
            breached = [g["gate"] for g in last.evidence.get("gates", []) if g["ok"] is False]
            rows.append(
                {
                    "candidate": kind,
                    "state": rollout.state,
                    "gates": ", ".join(breached),
                    "delay_s": delay,
                    "rps": result["rps"],
                    "failed": result["errors"] + result["timeouts"],
                }
            )
    finally:
        stop(proc)
        registry.close()
    return rows


POINT_HEAD = ["setup", "shadow runner", "load", "conns", "req/s", "p50 ms", "p99 ms",
              "server CPU us/req", "shadow CPU us/req", "run-queue wait us/req", "copies run",
              "copies dropped", "errors"]  # fmt: skip
ROLLBACK_HEAD = ["candidate", "state", "breached", "delay s", "req/s", "failed"]


def point_cells(r: dict) -> list[str]:
    return [r["setup"], r["runner"], r["load"], str(r["concurrency"]), f"{r['rps']:,.0f}",
            f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['server_us']:.0f}",
            f"{r['shadow_us']:.0f}", f"{r['wait_us']:.0f}", f"{r['ran']:,}", f"{r['dropped']:,}",
            str(r["errors"] + r["timeouts"])]  # fmt: skip


def rollback_cells(r: dict) -> list[str]:
    return [r["candidate"], r["state"], r["gates"] or "-", f"{r['delay_s']:.2f}",
            f"{r['rps']:,.0f}", str(r["failed"])]  # fmt: skip


def summary(rows: list[dict], rollbacks: list[dict]) -> list[str]:
    def median(key: str, setup: str, concurrency: int, runner: str = "process",
               load: str = "closed") -> float:  # fmt: skip
        point = (setup, concurrency, runner, load)
        fields = ("setup", "concurrency", "runner", "load")
        return statistics.median(r[key] for r in rows if tuple(r[f] for f in fields) == point)

    lines = []
    if rows:
        ratio = median("rps", "canary 50%, shadow 10%", 8) / median("rps", "no rollout", 8)
        cpu = median("cpu_us", "canary 50%, shadow 10%", 8) / median("cpu_us", "no rollout", 8)
        lines.append(
            f"- {'met' if ratio >= 0.9 else 'NOT met'}: rollout active / none = {ratio:.2f}x "
            f"req/s (target >= 0.9x); CPU per request {cpu:.2f}x (server and shadow process)"
        )
    if not rollbacks:
        return lines
    ok = all(
        r["state"] == "rolled_back" and r["delay_s"] <= 5 and r["failed"] == 0 and r["rps"] >= 50
        for r in rollbacks
    )
    lines.append(
        f"- {'met' if ok else 'NOT met'}: every bad candidate rolled back within 5 s of "
        "the sustained breach, >= 50 req/s, zero failed requests"
    )
    return lines


def report(rows: list[dict], shadows: list[dict], rollbacks: list[dict], markdown: bool,
           started: str) -> None:  # fmt: skip
    lines = summary(rows, rollbacks)
    one, five, fifteen = os.getloadavg()
    ended = f"load average {one:.1f} {five:.1f} {fifteen:.1f}"
    for title, head, cells in (
        ("throughput points", POINT_HEAD, map(point_cells, rows)),
        ("rollbacks", ROLLBACK_HEAD, map(rollback_cells, rollbacks)),
    ):
        if not markdown:
            table = Table(*head, title=title)
            for c in cells:
                table.add_row(*c)
            console.print(table)
        elif head is POINT_HEAD and rows or head is ROLLBACK_HEAD and rollbacks:
            print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            print("\n".join("| " + " | ".join(c) + " |" for c in cells) + "\n")
    for shadow in shadows:
        print(
            f"shadow cost, {shadow['runner']} runner: medians of the rounds; copies run "
            f"{shadow['ran']:,}, dropped {shadow['dropped']:,}"
        )
        table = bench.rounds_rows(shadow["closed"], "closed, 1 connection")
        for rate, results in shadow["paced"].items():
            table += bench.rounds_rows(results, f"fixed {rate:,.0f} req/s")
        print_table("shadow rounds", bench.ROUNDS_HEAD, table, markdown)
        print("shadow cost: paired by block (none, shadow 100%, and back)")
        print_table("shadow costs", bench.JUDGED_HEAD, shadow_rows(shadow), markdown)
    print("\n".join(lines))
    print(f"\n{started} at the start, {ended} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per throughput point")  # fmt: skip
    parser.add_argument("--only", choices=("throughput", "shadow", "rollback"), default=None)
    parser.add_argument("--shadow-runners", default="process", help="process, thread or both")
    bench.add_options(parser, rate=False)
    parser.add_argument("--rate-fractions", type=lambda v: [float(f) for f in v.split(",")],
                        default=[0.3, 0.6], help="fixed rates, fractions of the closed loop's "
                        "req/s without a rollout")  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args()
    wrk = ensure_wrk()
    one, five, fifteen = os.getloadavg()
    started = f"load average {one:.1f} {five:.1f} {fifteen:.1f}"
    rows, shadows, rollbacks = [], [], []
    with tempfile.TemporaryDirectory(prefix="modelport-bench-rollouts-") as tmp:
        work = Path(tmp)
        if args.only in (None, "throughput", "shadow"):
            rows, shadows = throughput_and_shadow(wrk, work, args)
        if args.only in (None, "rollback"):
            rollbacks = rollback_delays(wrk, work)
    report(rows, shadows, rollbacks, args.markdown, started)


if __name__ == "__main__":
    main()
