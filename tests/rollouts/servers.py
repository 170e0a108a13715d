"""`modelport serve` processes for rollout tests: free ports, output to a file (a pipe nobody
reads would fill and stall the server), readiness polled, stopped by SIGTERM or killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.pgserver import free_port


@dataclass
class Serve:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def serve(home: Path, *args: str, env: dict | None = None, log: Path | None = None,
          ports_by_settings: bool = False) -> Serve:  # fmt: skip
    """``ports_by_settings``: give the ports as MODELPORT_SERVE__* variables, not flags."""
    port = free_port()
    log = log or home.parent / f"serve-{port}.log"
    ports = {"MODELPORT_SERVE__HTTP_PORT": str(port), "MODELPORT_SERVE__GRPC_PORT": "0"}
    flags = [] if ports_by_settings else ["--http-port", str(port), "--grpc-port", "0"]
    env = {**os.environ, **(ports if ports_by_settings else {}), **(env or {})}
    command = [sys.executable, "-m", "modelport", "--home", str(home), "serve", *flags, *args]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Serve(process, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {server.output()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/v2/health/ready", timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"the server was not ready in 60 s: {server.output()[-3000:]}")
