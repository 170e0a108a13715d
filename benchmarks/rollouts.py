"""Rollouts, side by side in one run: serving with a rollout active against none, the cost of
shadowing every request on the primary's latency, and rollback delays under load.

    .venv/bin/python benchmarks/rollouts.py [--duration 10] [--markdown]

1. Throughput: the tutorial MLP (784 -> 128 -> 64 -> 10, built here) served by one `modelport
   serve` process, `wrk` at concurrency 8 POSTing one V2 JSON sample, alternately with no
   rollout and with a rollout of a second version in "canary 50 shadow 20%" (half the requests
   answered by the candidate, a fifth of the rest, 10% of all, shadowed), three pairs, medians.
   Target >= 0.9x req/s.
2. Shadow cost: the same server with no rollout, then with "shadow 100%", three pairs, medians,
   with copies in the shadow process (the default), then on a server running them on a worker
   thread; each under two loads: closed (one connection, the next request as soon as the reply
   is in: the server saturates its core, so any CPU the copies take shows in the tail) and paced
   (one connection, 2 ms between a reply and the next request, a few hundred req/s: a server
   below saturation, as production shadowing runs; wrk has no fixed-rate mode). Target (the
   default runner): the primary's p99 rises by at most 5% or 0.5 ms.
Each point also gives CPU time per request, the server's and its shadow process's, and how long
the server's threads waited for a core (run-queue time from /proc/PID/task/*/schedstat): what a
copy costs the primary's path, and what it costs by taking a core the primary wanted; and the
shadow copies run and dropped in the point (the shadow process runs in the idle scheduling
class: on a busy host it gets little CPU, and the full queue drops copies).
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

from benchmarks.serving import (  # noqa: E402
    ensure_wrk,
    free_port,
    lua_post,
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
PACE_MS = 2  # the paced load's pause between a reply and the next request
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


def throughput_and_shadow(wrk: str, work: Path, duration: float) -> list[dict]:
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
    paced = work / "paced.lua"
    paced.write_text(closed.read_text() + f"delay = function() return {PACE_MS} end\n")
    canary, shadow = "canary 50 600s shadow 20%", "shadow 100% 600s"
    points = [("no rollout", None, 8, "closed"), ("canary 50%, shadow 10%", canary, 8, "closed")]
    points *= ROUNDS
    for load in ("closed", "paced"):
        points += [("no rollout", None, 1, load), ("shadow 100%", shadow, 1, load)] * ROUNDS
    scripts = {"closed": closed, "paced": paced}
    rows = []
    try:
        rows += serve_points(wrk, registry, scripts, "process", points, duration)
        # the other place shadow copies can run (the event loop, the fallback, is left out)
        rows += serve_points(wrk, registry, scripts, "thread", points[2 * ROUNDS :], duration)
    finally:
        registry.close()
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

    ratio = median("rps", "canary 50%, shadow 10%", 8) / median("rps", "no rollout", 8)
    cpu = median("cpu_us", "canary 50%, shadow 10%", 8) / median("cpu_us", "no rollout", 8)
    lines = [
        f"- {'met' if ratio >= 0.9 else 'NOT met'}: rollout active / none = {ratio:.2f}x "
        f"req/s (target >= 0.9x); CPU per request {cpu:.2f}x (server and shadow process)",
    ]
    for runner in ("process", "thread"):
        for load in ("closed", "paced"):

            def both(key: str, runner: str = runner, load: str = load) -> tuple[float, float]:
                return (median(key, "no rollout", 1, runner, load),
                        median(key, "shadow 100%", 1, runner, load))  # fmt: skip

            (b99, s99), (b50, s50) = both("p99_ms"), both("p50_ms")
            (bs, ss), (bsh, ssh), (bw, sw) = both("server_us"), both("shadow_us"), both("wait_us")
            rise = s99 - b99
            verdict = "met" if rise <= max(0.5, 0.05 * b99) else "NOT met"
            spread = [r["p99_ms"] for r in rows if (r["setup"], r["concurrency"], r["runner"],
                      r["load"]) == ("no rollout", 1, runner, load)]  # fmt: skip
            copies = [(r["ran"], r["dropped"]) for r in rows if (r["setup"], r["runner"],
                      r["load"]) == ("shadow 100%", runner, load)]  # fmt: skip
            lines.append(
                f"- {verdict}: 100% shadow ({runner}, {load} load) moves the primary's p99 by "
                f"{rise:+.3f} ms ({100 * rise / b99:+.1f}%; target <= 5% or 0.5 ms), p50 "
                f"{b50:.3f} -> {s50:.3f} ms; per request: server CPU {bs:.0f} -> {ss:.0f} us, "
                f"shadow process {bsh:.0f} -> {ssh:.0f} us, server's wait for a core "
                f"{bw:.0f} -> {sw:.0f} us (no-rollout p99 from {min(spread):.2f} to "
                f"{max(spread):.2f} ms: a rise smaller than that spread is not read); copies run "
                f"{sum(c[0] for c in copies):,}, dropped {sum(c[1] for c in copies):,}"
            )
    ok = all(
        r["state"] == "rolled_back" and r["delay_s"] <= 5 and r["failed"] == 0 and r["rps"] >= 50
        for r in rollbacks
    )
    lines.append(
        f"- {'met' if ok else 'NOT met'}: every bad candidate rolled back within 5 s of "
        "the sustained breach, >= 50 req/s, zero failed requests"
    )
    return lines


def report(rows: list[dict], rollbacks: list[dict], markdown: bool, started: str) -> None:
    lines = summary(rows, rollbacks)
    one, five, fifteen = os.getloadavg()
    ended = f"load average {one:.1f} {five:.1f} {fifteen:.1f}"
    if markdown:
        for head, cells in ((POINT_HEAD, map(point_cells, rows)),
                            (ROLLBACK_HEAD, map(rollback_cells, rollbacks))):  # fmt: skip
            print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            print("\n".join("| " + " | ".join(c) + " |" for c in cells) + "\n")
    else:
        for head, cells in ((POINT_HEAD, map(point_cells, rows)),
                            (ROLLBACK_HEAD, map(rollback_cells, rollbacks))):  # fmt: skip
            table = Table(*head)
            for c in cells:
                table.add_row(*c)
            console.print(table)
    print("\n".join(lines))
    print(f"\n{started} at the start, {ended} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk point")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args()
    wrk = ensure_wrk()
    one, five, fifteen = os.getloadavg()
    started = f"load average {one:.1f} {five:.1f} {fifteen:.1f}"
    with tempfile.TemporaryDirectory(prefix="modelport-bench-rollouts-") as tmp:
        work = Path(tmp)
        rows = throughput_and_shadow(wrk, work, args.duration)
        rollbacks = rollback_delays(wrk, work)
    report(rows, rollbacks, args.markdown, started)


if __name__ == "__main__":
    main()
