"""Batch prediction against raw ONNX Runtime, in one run, on the digits MLP input.

    .venv/bin/python benchmarks/batch.py                   # 1M rows, 10M for the memory check
    .venv/bin/python benchmarks/batch.py --rows 200000 --memory-scale 10 --rounds 2

1. Throughput: 1,000,000 rows of digits pixels (64 float columns, Parquet written with pyarrow's
   defaults) scored by ``predict_batch`` (read, convert, score, commit parts, write the output
   Parquet) against raw ``InferenceSession.run`` over the same rows, already in memory, at the same
   batch size. Rounds alternate; the medians are compared.
2. The floor: the CPU time of what the job cannot do without (the model run as the job runs it,
   reading the input, writing the output), each measured alone, spread over the cores.
3. Memory: ``modelport batch`` as a child process on N and 10xN rows; peak RSS from ``wait4``
   (``--memory-scale 0`` skips it).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
console = Console()


def make_model(home: Path) -> str:
    """The tutorial MLP (64-128-64-10) of the demo, trained on scikit-learn's digits."""
    from demo import TutorialMLP, train  # examples/demo.py
    from sklearn.datasets import load_digits

    import modelport
    from modelport.registry import Registry

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    model = train(x, digits.target, epochs=10)
    assert isinstance(model, TutorialMLP)
    with Registry.open(home) as registry:
        version = modelport.register(model, "digits", registry=registry, sample_input=x[:1])
    return version.ref


def make_input(path: Path, rows: int, seed: int = 0) -> None:
    """Digits rows drawn with replacement, written a million rows at a time."""
    from sklearn.datasets import load_digits

    pixels = (load_digits().data / 16.0).astype(np.float32)
    names = [f"pixel_{j}" for j in range(64)]
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(str(path), pa.schema([(n, pa.float32()) for n in names])) as writer:
        for start in range(0, rows, 1_000_000):
            sample = pixels[rng.integers(0, len(pixels), min(1_000_000, rows - start))]
            writer.write_table(pa.table({n: sample[:, j] for j, n in enumerate(names)}))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds (of this process, all threads) from creation to ``stop``."""

    def __init__(self) -> None:
        self.cpu, self.wall = cpu_seconds(), time.perf_counter()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def raw_onnxruntime(model_path: Path, x: np.ndarray, batch_size: int) -> tuple[float, float]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    clock = Clock()
    for start in range(0, len(x), batch_size):
        session.run(None, {name: x[start : start + batch_size]})
    return clock.stop()


def side_by_side(model_path: Path, x: np.ndarray, batch_size: int) -> tuple[float, float]:
    """The model alone as the batch job calls it: one ``run`` per core at a time, each on one
    intra-op thread (the job's own cost is the gap between this row and predict_batch)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    starts = range(0, len(x), batch_size)
    cores = os.cpu_count() or 1

    def run(first: int) -> None:
        for start in starts[first::cores]:
            session.run(None, {name: x[start : start + batch_size]})

    clock = Clock()
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(run, range(cores)))
    return clock.stop()


def read_alone(source: Path, chunk_rows: int) -> tuple[float, float]:
    """Only the input side of the job: every chunk read and decoded, as the job reads them."""
    from modelport.batch.executors import LocalExecutor
    from modelport.batch.sources import Chunk, ChunkReader, plan_file

    info = plan_file(source, chunk_rows)
    reader = ChunkReader(list(info.columns), span=LocalExecutor().span)
    clock = Clock()
    for start, stop, _, _ in info.chunks:
        reader.read(Chunk(0, str(source), "parquet", start, stop))
    return clock.stop()


def write_alone(y: np.ndarray, out: Path, chunk_rows: int) -> tuple[float, float]:
    """Only the output side of the job: the scores written as the job writes them."""
    from modelport.batch.sinks import OutputWriter, outputs_table

    work = out.parent / f".{out.name}.work"
    work.mkdir(exist_ok=True)
    clock = Clock()
    writer = OutputWriter(out, None, work)
    for start in range(0, len(y), chunk_rows):
        writer.add(outputs_table({"output": y[start : start + chunk_rows]}, None, None), [])
    writer.commit()
    return clock.stop()


def read_then_raw(model_path: Path, source: Path, batch_size: int) -> tuple[float, float]:
    """Reading included at its cheapest: polars decodes the whole file at once (memory grows
    with the input), then the raw loop; nothing is written."""
    import onnxruntime as ort
    import polars as pl

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    clock = Clock()
    x = np.ascontiguousarray(pl.read_parquet(source).to_numpy())
    for start in range(0, len(x), batch_size):
        session.run(None, {name: x[start : start + batch_size]})
    return clock.stop()


def read_and_score(ref: str, home: Path, source: Path, batch_size: int) -> tuple[float, float]:
    """The least any job that reads this file must do: one thread decodes 262,144 rows at a time
    and lays each batch out as the model takes it, one thread per core scores; no bad-row checks,
    nothing written, nothing committed."""
    import queue
    import threading

    import polars as pl

    from modelport.api import load
    from modelport.registry import Registry
    from modelport.runtimes import RuntimeOptions

    with Registry.open(home) as registry:
        runtime = load(ref, registry=registry,
                       options=RuntimeOptions(1, feature_major=("input",)))  # fmt: skip
    cores = os.cpu_count() or 1
    blocks: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=4 * cores)

    def read() -> None:
        frame = pl.scan_parquet(source)
        rows = frame.select(pl.len()).collect().item()
        for start in range(0, rows, 262_144):
            data = frame.slice(start, 262_144).collect()
            for first in range(0, data.height, batch_size):
                part = data.slice(first, batch_size)
                block = np.empty((part.width, part.height), np.float32)
                for j, column in enumerate(part.iter_columns()):
                    block[j] = column.to_numpy()
                blocks.put(block)
        for _ in range(cores):
            blocks.put(None)

    def score() -> None:
        while (block := blocks.get()) is not None:
            runtime.predict({"input": block})

    clock = Clock()
    threads = [threading.Thread(target=read)] + [threading.Thread(target=score)
                                                 for _ in range(cores)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clock.stop()


def handwritten(model_path: Path, source: Path, out: Path,
                batch_size: int) -> tuple[float, float]:  # fmt: skip
    """What one would write by hand: read it all, score it, write it all (unbounded memory)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    clock = Clock()
    x = np.column_stack([c.to_numpy() for c in pq.read_table(source).columns])
    y = np.concatenate([session.run(None, {name: x[s : s + batch_size]})[0]
                        for s in range(0, len(x), batch_size)])  # fmt: skip
    pq.write_table(pa.table({f"output_{j}": y[:, j] for j in range(y.shape[1])}), out)
    return clock.stop()


def modelport_batch(ref: str, home: Path, source: Path, out: Path,
                    batch_size: int) -> tuple[float, float]:  # fmt: skip
    from modelport.batch import predict_batch
    from modelport.registry import Registry

    with Registry.open(home) as registry:
        clock = Clock()
        predict_batch(ref, source, out, registry=registry, batch_size=batch_size)
        return clock.stop()


_LAUNCH = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def child_peak_rss(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak RSS in MiB) of that process alone. A small launcher
    starts it, so the peak does not include this (large) process's pages at fork time."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _LAUNCH, *args], env=env,
                            capture_output=True, text=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    code, maxrss = (int(v) for v in result.stdout.split())
    if code != 0:
        raise SystemExit(f"{' '.join(args)} failed: {result.stderr}")
    return elapsed, maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-scale", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=args.workdir))
    home = workdir / "home"
    os.environ["MODELPORT_HOME"] = str(home)
    try:
        console.print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        ref = make_model(home)
        source = workdir / "digits.parquet"
        make_input(source, args.rows)
        x = np.column_stack([c.to_numpy() for c in pq.read_table(source).columns])
        from modelport.registry import Registry

        with Registry.open(home) as registry:
            model_path = registry.path(ref)
        warm = workdir / "warm.parquet"
        make_input(warm, 10_000, seed=1)
        modelport_batch(ref, home, warm, workdir / "warm-out.parquet", args.batch_size)

        times: dict[str, list[tuple[float, float]]] = {"raw": [], "side": [], "read": [],
                                                       "least": [], "hand": [],
                                                       "batch": []}  # fmt: skip
        for _ in range(args.rounds):
            times["raw"].append(raw_onnxruntime(model_path, x, args.batch_size))
            times["side"].append(side_by_side(model_path, x, args.batch_size))
            times["read"].append(read_then_raw(model_path, source, args.batch_size))
            times["least"].append(read_and_score(ref, home, source, args.batch_size))
            times["hand"].append(handwritten(model_path, source, workdir / "hand.parquet",
                                             args.batch_size))  # fmt: skip
            times["batch"].append(modelport_batch(ref, home, source, workdir / "out.parquet",
                                                  args.batch_size))  # fmt: skip
        del x
        wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
        raw_s = wall["raw"]
        table = Table(title=f"throughput: {args.rows:,} digits rows (64 features, Parquet), "
                            f"batch size {args.batch_size}, median of {args.rounds}")  # fmt: skip
        for column in ("what", "seconds", "CPU seconds", "rows/s", "vs raw"):
            table.add_column(column, justify="left" if column == "what" else "right")
        for key, label in (("raw", "raw ONNX Runtime (rows already in memory)"),
                           ("side", "  the same, one run per core side by side (as the job)"),
                           ("read", "polars reads the whole file, then the same raw loop"),
                           ("least", "least any job must do: read + score, nothing written"),
                           ("hand", "hand-written: read_table -> run -> write_table"),
                           ("batch", "predict_batch: Parquet in -> Parquet out")):  # fmt: skip
            table.add_row(label, f"{wall[key]:.2f}", f"{cpu[key]:.2f}",
                          f"{args.rows / wall[key]:,.0f}", f"{raw_s / wall[key]:.2f}")  # fmt: skip
        cli = [sys.executable, "-m", "modelport", "batch", ref, "--batch-size",
               str(args.batch_size), "--quiet", "--input"]  # fmt: skip
        env = {**os.environ, "MODELPORT_HOME": str(home)}
        cli_s, small_rss = child_peak_rss([*cli, str(source), "--output",
                                           str(workdir / "cli.parquet")], env)  # fmt: skip
        table.add_row("modelport batch (CLI, start-up included)", f"{cli_s:.2f}", "",
                      f"{args.rows / cli_s:,.0f}", f"{raw_s / cli_s:.2f}")  # fmt: skip
        console.print(table)
        # what the job cannot do without, each part measured alone at its cheapest: the model
        # run as the job runs it, reading the input, writing the output
        y = np.random.default_rng(0).random((args.rows, 10), dtype=np.float32)
        parts = {"side": cpu["side"],
                 "read": statistics.median(read_alone(source, 65536)[1] for _ in range(3)),
                 "write": statistics.median(write_alone(y, workdir / "y.parquet", 65536)[1]
                                            for _ in range(3))}  # fmt: skip
        cores = os.cpu_count() or 1
        floor = sum(parts.values()) / cores
        console.print(
            f"CPU seconds the job cannot do without: model {parts['side']:.2f} + reading "
            f"{parts['read']:.2f} + writing {parts['write']:.2f} = {sum(parts.values()):.2f}; "
            f"on {cores} cores at least {floor:.2f} s, so at best {raw_s / floor:.2f}x raw"
        )
        if args.memory_scale < 1:
            return

        big_rows = args.rows * args.memory_scale
        big = workdir / "digits-big.parquet"
        make_input(big, big_rows, seed=2)
        big_s, big_rss = child_peak_rss([*cli, str(big), "--output",
                                         str(workdir / "cli-big.parquet")], env)  # fmt: skip
        memory = Table(title="peak RSS of the modelport batch process")
        for column in ("rows", "input on disk", "seconds", "rows/s", "peak RSS", "vs smaller"):
            memory.add_column(column, justify="right")
        memory.add_row(f"{args.rows:,}", f"{source.stat().st_size / 2**20:,.0f} MiB",
                       f"{cli_s:.2f}", f"{args.rows / cli_s:,.0f}", f"{small_rss:,.0f} MiB",
                       "1.00")  # fmt: skip
        memory.add_row(f"{big_rows:,}", f"{big.stat().st_size / 2**20:,.0f} MiB", f"{big_s:.2f}",
                       f"{big_rows / big_s:,.0f}", f"{big_rss:,.0f} MiB",
                       f"{big_rss / small_rss:.2f}")  # fmt: skip
        console.print(memory)
        console.print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
