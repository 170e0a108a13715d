"""``modelport batch`` on 20,000 images of 3x96x96 float32 (a 2.2 GB .npy), default flags.

    .venv/bin/python benchmarks/batch_images.py            # peak RSS, CPU seconds, cores used
    .venv/bin/python benchmarks/batch_images.py --rows 5000

A small CNN built here (two strided 3x3 convolutions with batch norm, global pooling, a dense
layer: 10 outputs), exported to ONNX and registered. The job sizes its chunks and model batches
from a row's bytes (110,592) and the default memory budget. The launcher reports the process's
peak RSS and CPU time (``wait4``); cores used = CPU seconds / wall seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

_LAUNCH = """
import os, subprocess, sys, time
started = time.monotonic()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
print(child.pid, flush=True)
output = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, usage.ru_utime + usage.ru_stime,
      time.monotonic() - started)
print(output)
"""


def make_model(home: Path) -> str:
    import torch

    import modelport
    from modelport.registry import Registry

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    ).eval()  # fmt: skip
    sample = np.zeros((1, 3, 96, 96), np.float32)
    with Registry.open(home) as registry:
        return modelport.register(net, "cnn", registry=registry, sample_input=sample).ref


def thread_seconds(pid: int, launcher: subprocess.Popen) -> dict[int, float]:
    """CPU seconds of each thread of ``pid``, sampled from /proc until it exits: whether the
    scoring ran on several cores at once (wall-clock CPU share says little on a busy machine)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seen: dict[int, float] = {}
    while launcher.poll() is None:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                seen[int(task)] = (int(fields[11]) + int(fields[12])) / ticks
        except (FileNotFoundError, ProcessLookupError):
            pass  # between two samples, a thread or the process ended
        time.sleep(0.2)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-images-", dir=args.workdir))
    try:
        home = work / "home"
        ref = make_model(home)
        images = work / "images.npy"
        x = np.lib.format.open_memmap(images, "w+", np.float32, (args.rows, 3, 96, 96))
        rng = np.random.default_rng(0)
        for start in range(0, args.rows, 1000):
            x[start : start + 1000] = rng.random((len(x[start : start + 1000]), 3, 96, 96),
                                                 dtype=np.float32)  # fmt: skip
        x.flush()
        del x
        env = {**os.environ, "MODELPORT_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
        cmd = [sys.executable, "-m", "modelport", "batch", ref, "-i", str(images), "-o",
               str(work / "scores.npy"), "--quiet"]  # fmt: skip
        pipe = subprocess.PIPE
        launcher = subprocess.Popen([sys.executable, "-c", _LAUNCH, *cmd], env=env, stdout=pipe,
                                    stderr=pipe, text=True)  # fmt: skip
        threads = thread_seconds(int(launcher.stdout.readline()), launcher)
        out, err = launcher.communicate()
        first, *printed = out.splitlines()
        code, maxrss, cpu, wall = first.split()
        if int(code) != 0:
            raise SystemExit(f"modelport batch failed: {err}")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print(f"input: {args.rows:,} x 3x96x96 float32, {images.stat().st_size / 1e9:.2f} GB")
        print(*printed, sep="\n")
        print(f"peak RSS {int(maxrss) / 1024:,.0f} MiB; {float(wall):.1f} s wall, "
              f"{float(cpu):.1f} CPU s: {float(cpu) / float(wall):.2f} cores used")  # fmt: skip
        busy = sorted(threads.values(), reverse=True)
        print("CPU seconds of its busiest threads: " + ", ".join(f"{t:.1f}" for t in busy[:5]))
        print(f"output: {np.load(work / 'scores.npy', mmap_mode='r').shape}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
