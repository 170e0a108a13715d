"""`modelport serve` processes for tests: free ports, output to a file (a pipe nobody reads
would fill and stall the server), readiness polled, stopped by SIGTERM or killed; and an nginx
configuration balancing several of them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.ports import PortTaken, free_port, on_free_ports, taken, wait_started


@dataclass
class Serve:
    process: subprocess.Popen
    port: int
    log: Path
    grpc_port: int = 0  # 0: gRPC off

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
          ports_by_settings: bool = False, port: int | None = None,
          grpc: bool = False) -> Serve:  # fmt: skip
    """``ports_by_settings``: give the ports as MODELPORT_SERVE__* variables, not flags; ``grpc``:
    serve gRPC too, on a free port. Free ports taken by another process before the server binds
    them are tried again with others (a given ``port`` is not)."""

    def start(http: int, grpc_port: int = 0) -> Serve:
        server = _start(home, args, env, log, ports_by_settings, http, grpc_port)
        try:
            wait_started(server.process, server.log, lambda: _answers(server.url + HEALTH))
        except PortTaken:
            if port is not None:
                raise AssertionError(f"the server exited: {server.output()[-3000:]}") from None
            raise
        return server

    if port is not None:
        return start(port, free_port() if grpc else 0)
    return on_free_ports(start, count=2 if grpc else 1)


def _start(home: Path, args: tuple[str, ...], env: dict | None, log: Path | None,
           ports_by_settings: bool, port: int, grpc_port: int) -> Serve:  # fmt: skip
    log = log or home.parent / f"serve-{port}.log"
    ports = {"MODELPORT_SERVE__HTTP_PORT": str(port), "MODELPORT_SERVE__GRPC_PORT": str(grpc_port)}
    flags = [] if ports_by_settings else ["--http-port", str(port), "--grpc-port", str(grpc_port)]
    env = {**os.environ, **(ports if ports_by_settings else {}), **(env or {})}
    command = [sys.executable, "-m", "modelport", "--home", str(home), "serve", *flags, *args]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Serve(process, port, log, grpc_port)


def wait_for(predicate, what: str, limit: float = 60.0):
    """``predicate()``'s first truthy value, polled every 0.05 s for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def requests_served(url: str) -> int:
    """How many inference requests the server at ``url`` has answered, by its /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        lines = reply.read().decode().splitlines()
    return sum(int(float(line.rsplit(" ", 1)[1]))
               for line in lines if line.startswith("modelport_requests_total{"))  # fmt: skip


HEALTH = "/v2/health/ready"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(folder: Path, port: int, upstreams: list[int]) -> Path:
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstreams)
    temp = " ".join(f"{kind}_temp_path {folder}/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    user = "user root;" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(f"""{user}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_buffer_size 1m;
  {temp}
  upstream modelport {{
{servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://modelport;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout non_idempotent;
    }}
  }}
}}
""")
    return conf


@contextlib.contextmanager
def balancer(folder: Path, upstreams: list[int]) -> Iterator[str]:
    """nginx in front of ``upstreams`` on a free port until the block ends; yields its URL. A
    port taken by another process before nginx binds it is tried again with another."""
    proc, url = on_free_ports(lambda port: _nginx(folder, port, upstreams))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _nginx(folder: Path, port: int, upstreams: list[int]) -> tuple[subprocess.Popen, str]:
    """nginx started, once it answers; PortTaken if it exited for want of its port."""
    conf = nginx_conf(folder, port, upstreams)
    with open(folder / "nginx.out", "wb") as out:
        proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(folder)],
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or _answers(url + HEALTH),
                 "nginx to answer", limit=30)  # fmt: skip
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    if proc.poll() is not None:
        said = (folder / "nginx.out").read_text(errors="replace")
        if taken(said):
            raise PortTaken(said)
        raise AssertionError(f"nginx exited: {said[-2000:]}")
    return proc, url


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False
