"""Replicas behind nginx, side by side in one run: 1, 2 and 3 `modelport serve` processes sharing
one PostgreSQL catalogue and blob folder, against one process reached directly.

    .venv/bin/python benchmarks/replicas.py [--duration 10] [--markdown]

The tutorial MLP (784 -> 128 -> 64 -> 10, built here), one V2 JSON sample per request, `wrk`
with 2 threads and 16 connections through Debian's nginx (1 worker, keep-alive to the
upstreams); each replica runs its model with one intra-op thread. Then the alias is moved five
times and the time until every replica serves the new version is taken (poll interval 0.5 s).
On a 2-core machine, wrk, nginx and the replicas share both cores: at most about 2x is possible
and the balancer's own share comes out of it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import ensure_wrk, lua_post, print_table, run_wrk, tutorial_mlp  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402
from tests.rollouts.servers import balancer, serve  # noqa: E402

from modelport import register  # noqa: E402
from modelport.registry import Registry  # noqa: E402
from modelport.settings import Settings  # noqa: E402

console = Console()
POLL = 0.5
CONNECTIONS = 16


def convergence(registry: Registry, replicas: list, moves: int = 5) -> list[float]:
    """Seconds from an alias move to the last replica serving the new version."""
    delays = []
    for i in range(moves):
        target = 2 if i % 2 == 0 else 1
        registry.set_alias("tutorial-mlp", "production", target)
        began = time.monotonic()
        pending = {r.url for r in replicas}
        while pending and time.monotonic() - began < 30:
            for url in list(pending):
                info = httpx.get(f"{url}/v2/models/tutorial-mlp", timeout=5).json()
                if info["versions"] == [str(target)]:
                    pending.discard(url)
            time.sleep(0.01)
        if pending:
            raise SystemExit(f"{sorted(pending)} serve {info['versions']} 30 s after the move")
        delays.append(time.monotonic() - began)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    wrk = ensure_wrk()
    postgres = PostgresServer().start()
    rows, delays = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            url = postgres.url(postgres.create_database())
            env = {"MODELPORT_DATABASE_URL": url, "MODELPORT_BLOB_DIR": str(work / "blobs")}
            registry = Registry(Settings(home=work / "home", database_url=url,
                                         blob_dir=work / "blobs"))  # fmt: skip
            for seed in (0, 1):
                path = tutorial_mlp(work / f"mlp{seed}.onnx")
                register(path, "tutorial-mlp", registry=registry, alias="production",
                         tags={"copy": str(seed)})  # fmt: skip
            registry.set_alias("tutorial-mlp", "production", 1)
            sample = np.random.default_rng(0).random((1, 784), np.float32)
            data = sample.ravel().tolist()
            (work / "body.json").write_text('{"inputs":[{"name":"input","datatype":"FP32",'
                                            f'"shape":[1,784],"data":{data}}}]}}')  # fmt: skip
            script = lua_post(work / "post.lua", work / "body.json",
                              {"Content-Type": "application/json"})  # fmt: skip
            replicas = [serve(work / f"home{i}", "--poll-interval", str(POLL),
                              "--intra-op-threads", "1", env=env, log=work / f"r{i}.log")
                        for i in range(3)]  # fmt: skip
            try:
                path = "/v2/models/tutorial-mlp/infer"
                run_wrk(wrk, replicas[0].url + path, script, CONNECTIONS, 2)  # warm-up
                direct = run_wrk(wrk, replicas[0].url + path, script, CONNECTIONS, args.duration)
                rows.append({"setup": "1 replica, direct (no balancer)", **direct})
                for n in (1, 2, 3):
                    folder = work / f"nginx-{n}"
                    folder.mkdir()
                    with balancer(folder, [r.port for r in replicas[:n]]) as base:
                        run_wrk(wrk, base + path, script, CONNECTIONS, 2)
                        result = run_wrk(wrk, base + path, script, CONNECTIONS, args.duration)
                    rows.append({"setup": f"{n} behind nginx", **result})
                delays = convergence(registry, replicas)
            finally:
                for replica in replicas:
                    replica.stop()
                registry.close()
    finally:
        postgres.stop()
    report(rows, delays, args.markdown)


def report(rows: list[dict], delays: list[float], markdown: bool) -> None:
    one = next(r["rps"] for r in rows if r["setup"] == "1 behind nginx")
    head = ["setup", "req/s", "x 1 behind nginx", "p50 ms", "p99 ms", "non-2xx"]
    cells = [[r["setup"], f"{r['rps']:.0f}", f"{r['rps'] / one:.2f}x", f"{r['p50_ms']:.2f}",
              f"{r['p99_ms']:.2f}", str(r["errors"] + r["timeouts"])] for r in rows]  # fmt: skip
    moved = (f"alias move seen by all 3 replicas after {statistics.median(delays):.2f} s median, "
             f"{max(delays):.2f} s max (poll interval {POLL} s, {len(delays)} moves)")  # fmt: skip
    print_table(f"replicas, wrk -c {CONNECTIONS}", head, cells, markdown)
    if markdown:
        print(moved)
    else:
        console.print(moved)


if __name__ == "__main__":
    main()
