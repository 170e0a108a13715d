"""The three servers of benchmarks/llm.py, started with the same settings, and their footprint.

    server = Server.start("llama-server", command_for("llama-server", gguf, ...))
    server.rss_peak_mib()     # the process tree's peak resident memory, sampled every 50 ms
    server.cpu_seconds()      # user + system time of the process tree so far
    server.thread_seconds()   # the same per thread of the server process, from /proc/PID/task
    server.stop()

Same for every server: the GGUF file, decode and batch threads, 2,048 positions per sequence
(llama-server's ``-c`` is the total over its ``-np`` slots), flash attention left to llama.cpp
("auto" in all three), logical batch 512 / physical batch 512, f16 keys and values, the weights
memory-mapped. llama-server's host-memory prompt cache (``--cache-ram``, 8 GiB by default)
is off: modelport has no such tier; in both, a finished sequence's prefix stays in its slot.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

CONTEXT, SLOTS, BATCH = 2048, 4, 512


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command_for(name: str, gguf: Path, threads: int, port: int, **where: str) -> list[str]:
    """The command line of server ``name``; ``where`` holds ``home`` (modelport's registry)
    and ``binary`` (llama-server's)."""
    if name == "modelport":
        return [
            sys.executable, "-m", "modelport", "--home", where["home"], "serve", "smol",
            "--http-port", str(port), "--grpc-port", "0", "--slots", str(SLOTS),
            "--context", str(CONTEXT), "--intra-op-threads", str(threads),
        ]  # fmt: skip
    if name == "llama-server":
        return [
            where["binary"], "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            "-t", str(threads), "-tb", str(threads), "-np", str(SLOTS),
            "-c", str(CONTEXT * SLOTS), "-b", str(BATCH), "-ub", str(BATCH),
            "-fa", "auto", "--cache-ram", "0", "--alias", "smol", "--no-webui",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(CONTEXT),
        "--n_batch", str(BATCH), "--n_ubatch", str(BATCH), "--model_alias", "smol",
        "--verbose", "False",
    ]  # fmt: skip


class Server:
    def __init__(self, name: str, process: subprocess.Popen, port: int, log) -> None:
        self.name, self.process, self.port, self.log = name, process, port, log
        self._peak = 0
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    @classmethod
    def start(cls, name: str, command: list[str], port: int, timeout: float = 180) -> Server:
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
        server = cls(name, process, port, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                server.stop()
                raise RuntimeError(f"{name} exited: {log.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/v1/models", timeout=2):
                    return server
            except OSError:
                time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"{name} did not start in {timeout:.0f} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _sample(self) -> None:
        while not self._stopping.wait(0.05):
            total = 0
            for p in self._tree():
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self._peak = max(self._peak, total)

    def rss_peak_mib(self) -> float:
        return self._peak / 2**20

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def thread_seconds(self) -> dict[int, float]:
        """User + system seconds of each thread of the server process (thread id -> seconds;
        the main thread's id is the process id), read from ``/proc/PID/task/TID/stat``."""
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        task = Path(f"/proc/{self.process.pid}/task")
        for entry in task.iterdir() if task.exists() else ():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        return out

    def stop(self) -> None:
        self._stopping.set()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
