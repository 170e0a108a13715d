"""CPU time per V2 REST infer request through the ASGI app itself, no sockets, two trees.

    .venv/bin/python benchmarks/asgi_hotpath.py --against /tmp/base/src [--requests 5000]

The real app from ``serving.app.build`` over the real ModelSet and ONNX Runtime (one thread) is
called directly with the scope and messages uvicorn would pass for one V2 JSON request of one
sample, so only modelport's own request path is timed (route, auth, body, decode,
``DataPlane.infer``, encode, two ASGI messages): no uvicorn, no kernel, no client. With
``--against SRC`` the same loop runs on the code in SRC (a checkout's ``src`` folder, e.g. from
``git worktree add``) and on this tree, in alternating subprocesses, and the table gives both
medians of ``time.process_time`` per request and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from benchmarks.serving import console, print_table, tutorial_mlp  # noqa: E402


async def cpu_per_request(home: Path, features: int, requests: int, chunks: int) -> list[float]:
    """CPU microseconds per request of ``chunks`` runs of ``requests`` infer calls each."""
    from modelport.registry import Registry
    from modelport.runtimes.base import RuntimeOptions
    from modelport.serving.app import ServerOptions, build
    from modelport.serving.config import ServeConfig

    x = np.random.default_rng(2).random(features, dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, features],
                                   "data": x.tolist()}]}).encode()  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": "/v2/models/tutorial-mlp/infer",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", b"%d" % len(body))]}  # fmt: skip
    statuses = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    with Registry.open(home) as registry:
        config = ServeConfig(runtime=RuntimeOptions(intra_op_threads=1))
        models, _metrics, _plane, app = build(registry, config, ServerOptions(grpc_port=None))
        await models.start()
        try:
            for _ in range(500):  # warm-up: caches, allocator, the route table
                await app(scope, receive, send)
            out = []
            for _ in range(chunks):
                started = time.process_time()
                for _ in range(requests):
                    await app(scope, receive, send)
                out.append((time.process_time() - started) / requests * 1e6)
        finally:
            await models.stop()
    if set(statuses) != {200}:
        raise SystemExit(f"the app answered {sorted(set(statuses))}, not only 200")
    return out


def one_run(src: str, home: Path, features: int, requests: int) -> float:
    """The median CPU microseconds per request of one subprocess running the code in ``src``."""
    env = {**os.environ, "PYTHONPATH": src}
    args = [sys.executable, __file__, "--home", str(home), "--features", str(features),
            "--requests", str(requests), "--one"]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the run on {src} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["median_us"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="the src folder of the tree to compare with")
    parser.add_argument("--requests", type=int, default=5000, help="requests per timed chunk")
    parser.add_argument("--rounds", type=int, default=7, help="subprocesses per tree")
    parser.add_argument("--features", type=int, default=784, help="inputs of the MLP")
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: this tree's code, an existing home
        chunks = asyncio.run(cpu_per_request(args.home, args.features, args.requests, 3))
        print(json.dumps({"median_us": statistics.median(chunks)}))
        return
    with tempfile.TemporaryDirectory(prefix="modelport-bench-asgi-") as work:
        home = Path(work) / "home"
        register_mlp(home, Path(work) / "tutorial-mlp.onnx", args.features)
        compare(args, home)


def register_mlp(home: Path, path: Path, features: int) -> None:
    import modelport
    from modelport.registry import Registry

    with Registry.open(home) as registry:
        modelport.register(tutorial_mlp(path, features), "tutorial-mlp", registry=registry,
                           alias="production")  # fmt: skip


def compare(args: argparse.Namespace, home: Path) -> None:
    console.print("load average at the start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    trees = {"this tree": str(ROOT / "src")}
    if args.against:
        trees["against"] = str(Path(args.against).resolve())
    runs: dict[str, list[float]] = {name: [] for name in trees}
    for i in range(args.rounds):
        order = list(trees) if i % 2 == 0 else list(reversed(trees))  # neither always first
        for name in order:
            runs[name].append(one_run(trees[name], home, args.features, args.requests))
    base = statistics.median(runs[list(trees)[-1]])
    cells = [[name, trees[name], f"{statistics.median(us):.1f}",
              " ".join(f"{u:.1f}" for u in us), f"{statistics.median(us) / base:.3f}"]
             for name, us in runs.items()]  # fmt: skip
    console.print(f"CPU µs per V2 infer request, {args.features} inputs, {args.requests} per run")
    print_table("", ["tree", "src", "median", "runs", "ratio"], cells, markdown=True)


if __name__ == "__main__":
    main()
