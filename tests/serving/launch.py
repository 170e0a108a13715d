"""A real ``modelport serve`` process on free loopback ports, for tests that need one by command
line (folders, TLS): ``with launched(["--model-repository", str(repo)]) as server: ...``."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.serving.test_e2e_tritonclient import free_port


@dataclass
class Launched:
    process: subprocess.Popen
    http_port: int
    grpc_port: int

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return self.process.returncode, out


def start(args: list[str], home: Path, tls: ssl.SSLContext | None = None) -> Launched:
    """Start the server and wait (60 s at most) until /v2/health/ready answers 200."""
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "modelport", "--home", str(home), "serve",
               "--http-port", str(http_port), "--grpc-port", str(grpc_port), *args]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    server = Launched(process, http_port, grpc_port)
    scheme = "https" if tls is not None else "http"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.communicate()[0]}")
        try:
            url = f"{scheme}://{server.http}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1, context=tls):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError("the server did not become ready in 60 s")


@contextlib.contextmanager
def launched(args: list[str], home: Path, tls: ssl.SSLContext | None = None) -> Iterator[Launched]:
    server = start(args, home, tls)
    try:
        yield server
    finally:
        code, output = server.stop()
        assert code == 0, output
