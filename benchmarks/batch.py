"""``modelport batch`` against the least a batch job must do, both as whole processes, one run.

    .venv/bin/python benchmarks/batch.py                          # 10M rows, NPY and Parquet
    .venv/bin/python benchmarks/batch.py --rows 1000000 --rounds 1 --formats npy
    .venv/bin/python benchmarks/batch.py --first-part 5 --formats npy   # only the start-up

The digits MLP of the demo (64 -> 128 -> 64 -> 10). For each format, rounds alternate:
``python -m modelport batch`` (start-up included, default flags but the batch size) against
``benchmarks/batch_reference.py``: the same file read, ONNX Runtime at the same batch size and
threads (one call per core side by side, one intra-op thread each), the same output format
written; no bad-row checks, no parts, no resume. Both run under a small launcher that reports
the process's wall time and peak RSS (``wait4``). Then:

- the CPU time of each whole process (user and system, all threads): on a shared machine the
  wall-time ratio moves with what the other jobs leave of the cores, the CPU times much less;
- the time from start to the first committed part (``part-000000.arrow`` renamed into place),
  and the CPU time the process had used by then (all its threads; on a shared machine the wall
  time moves with the load, the CPU time much less); with ``--first-part``, also the CPU time of
  processes that only import what the job imports (NumPy and ONNX Runtime, as the reference;
  then pyarrow, and pyarrow.parquet for Parquet): the rest is modelport's own;
- kill and resume: a job killed (SIGKILL) half way and run again gives the same bytes as a job
  that was never interrupted;
- memory: peak RSS at ``--rows`` against a tenth of them.
"""

from __future__ import annotations

import argparse
import compileall
import filecmp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
console = Console()

_LAUNCH = """
import os, subprocess, sys, time
started = time.monotonic()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
print(started, child.pid, flush=True)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, time.monotonic(),
      usage.ru_utime + usage.ru_stime, flush=True)
"""


def make_model(home: Path) -> tuple[str, Path]:
    """The tutorial MLP (64-128-64-10) of the demo, trained on scikit-learn's digits."""
    from demo import train  # examples/demo.py
    from sklearn.datasets import load_digits

    import modelport
    from modelport.registry import Registry

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    model = train(x, digits.target, epochs=10)
    with Registry.open(home) as registry:
        version = modelport.register(model, "digits", registry=registry, sample_input=x[:1])
        return version.ref, registry.path(version)


def make_inputs(folder: Path, rows: int, formats: list[str]) -> dict[str, Path]:
    """Digits rows drawn with replacement, written a million rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_digits

    pixels = (load_digits().data / 16.0).astype(np.float32)
    rng = np.random.default_rng(rows)
    paths = {f: folder / f"digits-{rows}.{f}" for f in formats}
    npy = np.lib.format.open_memmap(paths["npy"], "w+", np.float32, (rows, 64)) \
        if "npy" in paths else None  # fmt: skip
    names = [f"pixel_{j}" for j in range(64)]
    schema = pa.schema([(n, pa.float32()) for n in names])
    writer = pq.ParquetWriter(str(paths["parquet"]), schema) if "parquet" in paths else None
    for start in range(0, rows, 1_000_000):
        sample = pixels[rng.integers(0, len(pixels), min(1_000_000, rows - start))]
        if npy is not None:
            npy[start : start + len(sample)] = sample
        if writer is not None:
            writer.write_table(pa.table({n: sample[:, j] for j, n in enumerate(names)}))
    if npy is not None:
        npy.flush()
    if writer is not None:
        writer.close()
    return paths


def launch(args: list[str], env: dict[str, str], watch: Path | None = None,
           kill_after: Path | None = None, stop: bool = False) -> dict[str, float]:  # fmt: skip
    """Run a command under the launcher: wall seconds, CPU seconds (user and system, all
    threads), peak RSS (MiB), and the seconds until
    ``watch`` appeared (polled every millisecond); with ``kill_after``, SIGKILL the command
    once that file exists; with ``stop``, once ``watch`` does (the first part's figures only)."""
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    first_line = proc.stdout.readline().split()
    started, child = float(first_line[0]), int(first_line[1])
    first = None
    while proc.poll() is None and (watch is not None or kill_after is not None):
        now = time.monotonic()
        if watch is not None and first is None and watch.exists():
            first, first_cpu = now - started, cpu_seconds(child)
        if kill_after is not None and kill_after.exists():
            os.kill(child, signal.SIGKILL)  # the job itself; the launcher then exits
            proc.communicate()
            return {"killed": 1.0}
        if first is not None and stop:
            os.kill(child, signal.SIGKILL)
            proc.communicate()
            return {"first": first, "first_cpu": first_cpu}
        if first is not None and kill_after is None:
            break
        time.sleep(0.001)
    out, err = proc.communicate()
    code, maxrss, ended, cpu = out.split()
    if int(code) != 0:
        raise SystemExit(f"{' '.join(args)} failed ({code}): {err}")
    return {"seconds": float(ended) - started, "cpu": float(cpu), "rss": int(maxrss) / 1024,
            "first": float("nan") if first is None else first,
            "first_cpu": float("nan") if first is None else first_cpu}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far: what the first part
    cost, whatever else shares the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parts_of(output: Path) -> Path:
    return output.parent / f".{output.name}.parts"


def compare(ref: str, model: Path, inputs: dict[str, Path], work: Path, env: dict[str, str],
            rounds: int, batch_size: int) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    cli = [sys.executable, "-m", "modelport", "batch", ref, "--quiet", "--batch-size",
           str(batch_size)]  # fmt: skip
    reference = [sys.executable, str(ROOT / "benchmarks" / "batch_reference.py"), str(model)]
    times: dict[str, dict[str, list[float]]] = {}
    for fmt, source in inputs.items():
        mine, theirs = work / f"modelport.{fmt}", work / f"reference.{fmt}"
        runs = times[fmt] = {"modelport": [], "reference": [], "first": [], "first_cpu": [],
                             "rss": [], "modelport_cpu": [], "reference_cpu": []}  # fmt: skip
        for _ in range(rounds):
            result = launch([*cli, "-i", str(source), "-o", str(mine)], env,
                            watch=parts_of(mine) / "part-000000.arrow")  # fmt: skip
            runs["modelport"].append(result["seconds"])
            runs["modelport_cpu"].append(result["cpu"])
            runs["first"].append(result["first"])
            runs["first_cpu"].append(result["first_cpu"])
            runs["rss"].append(result["rss"])
            threads = str(os.cpu_count() or 1)
            result = launch([*reference, str(source), str(theirs), "--batch-size",
                             str(batch_size), "--threads", threads], env)  # fmt: skip
            runs["reference"].append(result["seconds"])
            runs["reference_cpu"].append(result["cpu"])
            mine.unlink()
            theirs.unlink()
    return times


# what a job imports up to its first part, beyond Python: the reference's NumPy and ONNX Runtime,
# then pyarrow for the part file (and pyarrow.parquet for a Parquet input's footer)
IMPORTS = {"npy": ("numpy", "onnxruntime", "pyarrow"),
           "parquet": ("numpy", "onnxruntime", "pyarrow", "pyarrow.parquet")}  # fmt: skip


def imports_alone(modules: tuple[str, ...], env: dict[str, str]) -> float:
    """CPU s of a process that imports ``modules`` and exits at once, with OpenBLAS on one
    thread as in the job: the part of a job's first part that is not modelport's."""
    env = {"OPENBLAS_NUM_THREADS": "1", **env}
    code = f"import os, {', '.join(modules)}; os._exit(0)"  # no teardown: the job is killed
    return launch([sys.executable, "-c", code], env)["cpu"]


def first_parts(ref: str, inputs: dict[str, Path], work: Path, env: dict[str, str], runs: int,
                batch_size: int) -> None:  # fmt: skip
    """Only the start: ``runs`` jobs per format, each stopped at its first committed part, each
    followed by processes that only import what the job imports (the reference's modules, then
    all of them), so that the CPU time of modelport's own part shows beside theirs."""
    cli = [sys.executable, "-m", "modelport", "batch", ref, "--quiet", "--batch-size",
           str(batch_size)]  # fmt: skip
    summary = []
    for fmt, source in inputs.items():
        walls, cpus, reference, imports = [], [], [], []
        for _ in range(runs):
            output = work / f"first.{fmt}"
            shutil.rmtree(parts_of(output), ignore_errors=True)
            result = launch([*cli, "-i", str(source), "-o", str(output)], env,
                            watch=parts_of(output) / "part-000000.arrow", stop=True)  # fmt: skip
            walls.append(result["first"])
            cpus.append(result["first_cpu"])
            reference.append(imports_alone(IMPORTS[fmt][:2], env))
            imports.append(imports_alone(IMPORTS[fmt], env))
            console.print(f"{fmt}: first part at {result['first']:.2f} s, CPU "
                          f"{result['first_cpu']:.2f} s, load average "
                          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
        summary.append(f"{fmt}: first part at {statistics.median(walls):.2f} s median "
                       f"({min(walls):.2f}-{max(walls):.2f}), CPU {statistics.median(cpus):.2f} s "
                       f"median ({min(cpus):.2f}-{max(cpus):.2f}); target 0.5 s")  # fmt: skip
        summary.append(f"{fmt}: importing {', '.join(IMPORTS[fmt][:2])} alone: CPU "
                       f"{statistics.median(reference):.2f} s median; {', '.join(IMPORTS[fmt])}: "
                       f"{statistics.median(imports):.2f} s")  # fmt: skip
    console.print("\n".join(summary), highlight=False)


def kill_and_resume(ref: str, source: Path, work: Path, env: dict[str, str],
                    rows: int) -> tuple[int, bool]:  # fmt: skip
    """(parts left by the killed run, whether the resumed output is byte-identical)."""
    half = max(1, rows // 65536 // 2)  # digits rows get chunks of 65,536
    cli = [sys.executable, "-m", "modelport", "batch", ref, "--quiet", "-i", str(source)]
    whole, resumed = work / f"whole{source.suffix}", work / f"resumed{source.suffix}"
    launch([*cli, "-o", str(whole)], env)
    n_parts = 0
    for _ in range(3):  # the kill must land between the first part and the end
        middle = parts_of(resumed) / f"part-{half:06d}.arrow"
        launch([*cli, "-o", str(resumed)], env, kill_after=middle)
        n_parts = len(list(parts_of(resumed).glob("part-*.arrow")))
        if not resumed.exists():
            break
        resumed.unlink()
    launch([*cli, "-o", str(resumed)], env)
    same = filecmp.cmp(whole, resumed, shallow=False)
    whole.unlink()
    resumed.unlink()
    return n_parts, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--formats", default="npy,parquet")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--first-part", type=int, default=0, metavar="N",
                        help="only time the first part of N jobs per format")  # fmt: skip
    args = parser.parse_args()
    formats = args.formats.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=args.workdir))
    home = work / "home"
    env = {**os.environ, "MODELPORT_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    # an installed package has its bytecode compiled; a source tree run with
    # PYTHONDONTWRITEBYTECODE set would compile every module at every start instead
    compileall.compile_dir(ROOT / "src" / "modelport", quiet=1)
    try:
        console.print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        ref, model = make_model(home)
        inputs = make_inputs(work, args.rows, formats)
        if args.first_part:
            first_parts(ref, inputs, work, env, args.first_part, args.batch_size)
            return
        times = compare(ref, model, inputs, work, env, args.rounds, args.batch_size)
        table = Table(title=f"{args.rows:,} digits rows, batch size {args.batch_size}, whole "
                            f"processes, median of {args.rounds}")  # fmt: skip
        for column in ("input -> output", "reference s", "modelport s", "modelport / reference",
                       "CPU s: reference, modelport", "first part at", "its CPU s",
                       "peak RSS"):  # fmt: skip
            table.add_column(column, justify="left" if column.startswith("input") else "right")
        for fmt, runs in times.items():
            mine, theirs = (statistics.median(runs[k]) for k in ("modelport", "reference"))
            cpu = (statistics.median(runs[k]) for k in ("reference_cpu", "modelport_cpu"))
            table.add_row(f"{fmt} -> {fmt}", f"{theirs:.2f}", f"{mine:.2f}",
                          f"{theirs / mine:.2f}x", "{:.2f}, {:.2f}".format(*cpu),
                          f"{statistics.median(runs['first']):.2f} s",
                          f"{statistics.median(runs['first_cpu']):.2f}",
                          f"{statistics.median(runs['rss']):,.0f} MiB")  # fmt: skip
        console.print(table)
        fmt = formats[0]
        parts, same = kill_and_resume(ref, inputs[fmt], work, env, args.rows)
        console.print(f"kill and resume ({fmt}): killed with {parts} parts committed; resumed "
                      f"output {'byte-identical' if same else 'DIFFERENT'}")  # fmt: skip
        small = make_inputs(work, args.rows // 10, [fmt])[fmt]
        cli = [sys.executable, "-m", "modelport", "batch", ref, "--quiet", "-i"]
        small_rss = launch([*cli, str(small), "-o", str(work / f"small.{fmt}")], env)["rss"]
        big_rss = statistics.median(times[fmt]["rss"])
        console.print(
            f"peak RSS ({fmt}): {args.rows // 10:,} rows {small_rss:,.0f} MiB, "
            f"{args.rows:,} rows {big_rss:,.0f} MiB ({big_rss / small_rss:.2f}x)"
        )
        console.print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
