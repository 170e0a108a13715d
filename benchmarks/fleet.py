"""One fleet server, 1,000 simulated devices polling every 15 s (with jitter): poll latency.

    .venv/bin/python benchmarks/fleet.py [--devices 1000] [--interval 15] [--seconds 60]

The server is ``modelport fleet serve`` in its own process on an embedded SQLite registry, with
every device enrolled and in a deployment (each poll authenticates the device and looks up its
assignment). Each simulated device opens a new connection per poll, as the agent does. The
reference, in the same run and at the same rate, is the server's ``/v1/health`` route: the same
process and HTTP stack with no authentication and no catalogue query.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.edge.conftest import make_bundle  # noqa: E402

from modelport.edge.fleet.store import Fleet  # noqa: E402
from modelport.edge.keys import KeyStore  # noqa: E402
from modelport.registry import Registry  # noqa: E402

console = Console(width=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home: Path, devices: int) -> list[str]:
    """Enroll ``devices`` devices and deploy a release to all of them; their tokens."""
    store = KeyStore(home / "keys")
    store.generate()
    bundle = make_bundle(store, home, seed=1, out="bench.bundle")
    with Registry.open(home) as registry:
        fleet = Fleet(registry)
        token = fleet.create_token("bench")
        tokens = []
        for i in range(devices):
            facts = {
                "id": f"sim-{i:04d}",
                "hardware": "x86",
                "runtimes": ["onnxruntime"],
                "ram_mb": 512,
                "cpu_flags": ["avx2"],
                "tags": ["bench"],
            }
            device_id, secret = fleet.enroll(token, facts)
            tokens.append(f"{device_id}:{secret}")
        release = fleet.add_release(bundle.path)
        fleet.deploy("mlp", ["bench"], [100.0], 0.0, {"x86": release["id"]})
    return tokens


async def request(port: int, path: str, token: str) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: fleet\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    reply = await reader.read()
    writer.close()
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(reply[:200])
    return (time.perf_counter() - start) * 1000


async def device(
    port: int, path: str, token: str, interval: float, until: float, out: list[float]
) -> None:
    await asyncio.sleep(random.uniform(0, interval))  # devices start spread out
    while time.monotonic() < until:
        out.append(await request(port, path, token))
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))


async def load(port: int, path: str, tokens: list[str], interval: float, seconds: float):
    out: list[float] = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(device(port, path, t, interval, until, out) for t in tokens))
    return out


def row(name: str, ms: list[float], seconds: float) -> list[str]:
    q = statistics.quantiles(ms, n=100)
    return [
        name,
        str(len(ms)),
        f"{len(ms) / seconds:.1f}",
        f"{statistics.median(ms):.2f}",
        f"{q[94]:.2f}",
        f"{q[98]:.2f}",
        f"{max(ms):.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        console.print(f"enrolling {args.devices} devices ...")
        tokens = prepare(home, args.devices)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelport",
                "--home",
                str(home),
                "fleet",
                "serve",
                "--port",
                str(port),
                "--keys",
                str(home / "keys"),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    asyncio.run(request(port, "/v1/health", ""))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            table = Table("route", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms")
            for name, path in (
                ("GET /v1/poll (modelport)", "/v1/poll"),
                ("GET /v1/health (reference)", "/v1/health"),
            ):
                console.print(
                    f"{name}: {args.devices} devices every {args.interval:g}s for "
                    f"{args.seconds:g}s ..."
                )
                ms = asyncio.run(load(port, path, tokens, args.interval, args.seconds))
                table.add_row(*row(name, ms, args.seconds))
            console.print(table)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
