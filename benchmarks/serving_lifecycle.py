"""The model layer of serving, in process: what ModelSet + LoadedModel add to a bare runtime call.

    .venv/bin/python benchmarks/serving_lifecycle.py [--requests 10000] [--markdown]

Same ONNX model as benchmarks/serving.py (the tutorial MLP 784 -> 128 -> 64 -> 10), one sample
per request, uvloop, ONNX Runtime with one intra-op thread and no spinning. Part 1, concurrency
1, interleaved call by call so machine noise hits every row alike: a bare ``runtime.predict``,
``LoadedModel.infer`` inline on the loop (the default for a call this cheap), through the
worker pool (``inline_below_us=0``), and with batching on (an idle model does not wait for the
queue delay). Part 2, concurrency 64 (asyncio tasks calling
``ModelSet.get(...).infer``): requests/s without and with dynamic batching. No HTTP here: the
end-to-end comparison with MLServer is benchmarks/serving.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np
from rich.console import Console
from rich.table import Table

from modelport.api import register
from modelport.monitoring.metrics import Metrics
from modelport.registry import Registry
from modelport.runtimes import RuntimeOptions
from modelport.serving.config import BatchConfig, ServeConfig
from modelport.serving.models import ModelSet

OPTIONS = RuntimeOptions(intra_op_threads=1, extra={"session.intra_op.allow_spinning": "0"})
BATCH = {"mlp": BatchConfig(max_batch_size=32, max_queue_delay_us=500)}
console = Console()


async def started(registry: Registry, **config) -> ModelSet:
    models = ModelSet(registry, ServeConfig(runtime=OPTIONS, **config), Metrics())
    await models.start()
    return models


async def latency(registry: Registry, requests: int) -> list[tuple[str, list[float]]]:
    inline = await started(registry)
    worker = await started(registry, inline_below_us=0)
    batched = await started(registry, batching=BATCH)
    runtime = inline.get("mlp")._runner.runtime
    feed = {"input": np.random.default_rng(0).standard_normal((1, 784)).astype(np.float32)}
    names = ("runtime.predict", "infer, inline", "infer, worker pool", "infer, batching on")
    times: dict[str, list[float]] = {name: [] for name in names}
    raw, on_loop, pooled, merged = times.values()
    for _ in range(requests):
        a = perf_counter()
        runtime.predict(feed)
        b = perf_counter()
        await inline.get("mlp").infer(feed, "bench")
        c = perf_counter()
        await worker.get("mlp").infer(feed, "bench")
        d = perf_counter()
        await batched.get("mlp").infer(feed, "bench")
        e = perf_counter()
        raw.append(b - a)
        on_loop.append(c - b)
        pooled.append(d - c)
        merged.append(e - d)
    for models in (inline, worker, batched):
        await models.stop()
    return list(times.items())


async def throughput(registry: Registry, requests: int, **config) -> float:
    models = await started(registry, **config)
    x = np.random.default_rng(1).standard_normal((1, 784)).astype(np.float32)
    left = requests

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await models.get("mlp").infer({"input": x}, "bench")

    begin = perf_counter()
    await asyncio.gather(*(client() for _ in range(64)))
    rate = requests / (perf_counter() - begin)
    await models.stop()
    return rate


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(requests: int, markdown: bool) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serving import tutorial_mlp  # the model of the end-to-end benchmark

    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry.open(Path(tmp) / "home")
        register(tutorial_mlp(Path(tmp) / "mlp.onnx"), "mlp", registry=registry,
                 alias="production")  # fmt: skip
        rows = await latency(registry, requests)
        rates = [
            ("no batching, inline", await throughput(registry, requests * 2)),
            (
                "no batching, worker pool",
                await throughput(registry, requests * 2, inline_below_us=0),
            ),  # fmt: skip
            ("batching 32 / 500 us", await throughput(registry, requests * 2, batching=BATCH)),
        ]
        registry.close()
    table = Table(title=f"concurrency 1, {requests} calls each, interleaved")
    for column in ("path", "p50 us", "p90 us", "p99 us"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, values in rows:
        table.add_row(name, *(f"{percentile(values, q) * 1e6:.1f}" for q in (0.5, 0.9, 0.99)))
    console.print(table)
    second = Table(title=f"concurrency 64, {requests * 2} requests each")
    second.add_column("ModelSet configuration")
    second.add_column("requests/s", justify="right")
    for name, rate in rates:
        second.add_row(name, f"{rate:,.0f}")
    console.print(second)
    if markdown:
        print("| path (c=1) | p50 us | p90 us | p99 us |\n|---|---:|---:|---:|")
        for name, values in rows:
            cells = " | ".join(f"{percentile(values, q) * 1e6:.1f}" for q in (0.5, 0.9, 0.99))
            print(f"| {name} | {cells} |")
        print("\n| ModelSet at c=64 | requests/s |\n|---|---:|")
        for name, rate in rates:
            print(f"| {name} | {rate:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.requests, args.markdown))
    else:
        uvloop.run(run(args.requests, args.markdown))


if __name__ == "__main__":
    main()
