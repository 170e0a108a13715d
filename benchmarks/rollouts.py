"""Rollouts, side by side in one run: serving with a rollout active against none, the cost of
shadowing every request on the primary's latency, and rollback delays under load.

    .venv/bin/python benchmarks/rollouts.py [--duration 10] [--markdown]

1. Throughput: the tutorial MLP (784 -> 128 -> 64 -> 10, built here) served by one `modelport
   serve` process, `wrk` at concurrency 8 POSTing one V2 JSON sample, alternately with no
   rollout and with a rollout of a second version in "canary 50 shadow 20%" (half the requests
   answered by the candidate, a fifth of the rest, 10% of all, shadowed), three pairs, medians.
   Target >= 0.9x req/s.
2. Shadow cost: the same server at concurrency 1 with no rollout, then with "shadow 100%", three
   pairs, medians, with copies in the shadow process (the default); then the same pairs on a
   server running copies on a worker thread, and on one running them on the event loop. Target
   (the default runner): the primary's p99 rises by at most 5% or 0.5 ms.
Each point also gives the server's CPU time per request (its shadow process included), which a
busy shared machine disturbs less than requests/s.
3. Rollback: the rollout test's classifier (stable about 0.8 ms a call) and three bad candidates
   (errors on a fifth of the inputs, 5x slower, disagreeing); `wrk` with varied inputs on one
   connection; the delay from the end of the window that made a breach sustained to the rollback
   decision in the log. Target: within 5 s, zero failed requests.
"""

from __future__ import annotations

import argparse
import json
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

console = Console()
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
    script = lua_post(work / "mlp.lua", body, {"Content-Type": "application/json"})
    canary, shadow = "canary 50 600s shadow 20%", "shadow 100% 600s"
    points = [("no rollout", None, 8), ("canary 50%, shadow 10%", canary, 8)] * ROUNDS
    points += [("no rollout", None, 1), ("shadow 100%", shadow, 1)] * ROUNDS
    rows = []
    try:
        rows += serve_points(wrk, registry, script, "process", points, duration)
        for runner in ("thread", "loop"):  # the other places shadow copies can run
            rows += serve_points(wrk, registry, script, runner, points[2 * ROUNDS :], duration)
    finally:
        registry.close()
    return rows


def serve_points(wrk: str, registry: Registry, script: Path, runner: str, points: list,
                 duration: float) -> list[dict]:  # fmt: skip
    """One server (shadow copies on ``runner``), a wrk run per (label, plan, connections)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
    proc = start_server(registry.settings.home, port, "mlp", runner)
    rows = []
    try:
        run_wrk(wrk, url, script, 8, 2)  # warm-up
        for label, plan, connections in points:
            if plan is not None:
                r = rollouts.start(registry, "mlp", "mlp:2", plan=plan, gates=LENIENT, bake=600)
                split_active(port, r.id, lambda: run_wrk(wrk, url, script, 1, 0.5))
            cpu = cpu_seconds(proc.pid)
            result = run_wrk(wrk, url, script, connections, duration)
            result["cpu_us"] = (
                1e6 * (cpu_seconds(proc.pid) - cpu) / max(result["rps"] * duration, 1)
            )
            if plan is not None:
                rollouts.abort(registry, "mlp")
                time.sleep(1.5)  # the split leaves the model set
            rows.append({"setup": label, "runner": runner, "concurrency": connections, **result})
    finally:
        stop(proc)
    return rows


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the server and its children (a shadow process) so far."""
    import psutil

    total = 0.0
    server = psutil.Process(pid)
    for process in [server, *server.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


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


def report(rows: list[dict], rollbacks: list[dict], markdown: bool) -> None:
    table = Table("setup", "shadow runner", "concurrency", "req/s", "p50 ms", "p99 ms",
                  "CPU us/req", "errors")  # fmt: skip
    for r in rows:
        table.add_row(
            r["setup"],
            r["runner"],
            str(r["concurrency"]),
            f"{r['rps']:,.0f}",
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['cpu_us']:.0f}",
            str(r["errors"] + r["timeouts"]),
        )
    console.print(table)

    def median(key: str, setup: str, concurrency: int, runner: str = "process") -> float:
        return statistics.median(r[key] for r in rows if (r["setup"], r["concurrency"],
                                 r["runner"]) == (setup, concurrency, runner))  # fmt: skip

    ratio = median("rps", "canary 50%, shadow 10%", 8) / median("rps", "no rollout", 8)
    cpu = median("cpu_us", "canary 50%, shadow 10%", 8) / median("cpu_us", "no rollout", 8)
    lines = [
        f"- {'met' if ratio >= 0.9 else 'NOT met'}: rollout active / none = {ratio:.2f}x "
        f"req/s (target >= 0.9x); CPU per request {cpu:.2f}x (server and shadow process)",
    ]
    for runner in ("process", "thread", "loop"):
        base, p50 = (
            median("p99_ms", "no rollout", 1, runner),
            median("p50_ms", "no rollout", 1, runner),
        )
        rise = median("p99_ms", "shadow 100%", 1, runner) - base
        verdict = "met" if rise <= max(0.5, 0.05 * base) else "NOT met"
        lines.append(
            f"- {verdict if runner == 'process' else runner}: 100% shadow ({runner}) moves the "
            f"primary's p99 by {rise:+.3f} ms ({100 * rise / base:+.1f}%; target <= 5% or "
            f"0.5 ms), p50 {p50:.3f} -> {median('p50_ms', 'shadow 100%', 1, runner):.3f} ms"
        )
    roll = Table("candidate", "state", "breached", "delay s", "req/s", "failed")
    for r in rollbacks:
        roll.add_row(
            r["candidate"],
            r["state"],
            r["gates"],
            f"{r['delay_s']:.2f}",
            f"{r['rps']:,.0f}",
            str(r["failed"]),
        )
    console.print(roll)
    ok = all(
        r["state"] == "rolled_back" and r["delay_s"] <= 5 and r["failed"] == 0 and r["rps"] >= 50
        for r in rollbacks
    )
    lines.append(
        f"- {'met' if ok else 'NOT met'}: every bad candidate rolled back within 5 s of "
        "the sustained breach, >= 50 req/s, zero failed requests"
    )
    console.print("\n".join(lines))
    if markdown:
        print_markdown(rows, rollbacks, lines)


def print_markdown(rows: list[dict], rollbacks: list[dict], lines: list[str]) -> None:
    print("| setup | shadow runner | concurrency | req/s | p50 ms | p99 ms | CPU us/req "
          "| errors |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        print(
            f"| {r['setup']} | {r['runner']} | {r['concurrency']} | {r['rps']:,.0f} | "
            f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['cpu_us']:.0f} | "
            f"{r['errors'] + r['timeouts']} |"
        )
    print(
        "\n| candidate | state | breached | delay s | req/s | failed |\n|---|---|---|---|---|---|"
    )
    for r in rollbacks:
        print(
            f"| {r['candidate']} | {r['state']} | {r['gates']} | {r['delay_s']:.2f} | "
            f"{r['rps']:,.0f} | {r['failed']} |"
        )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk point")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="modelport-bench-rollouts-") as tmp:
        work = Path(tmp)
        rows = throughput_and_shadow(wrk, work, args.duration)
        rollbacks = rollback_delays(wrk, work)
    report(rows, rollbacks, args.markdown)


if __name__ == "__main__":
    main()
