"""Free loopback ports for the servers tests start, chosen again when another process takes one
between the choice and the server's bind.

    def start(http: int, grpc: int) -> Server:
        ...                                   # raise PortTaken(output) when a bind failed
    server = on_free_ports(start, count=2)    # up to three tries, each with fresh ports
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class PortTaken(Exception):
    """A server could not bind a port it was given: another process took it first. The message
    is what the server said."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports nothing listens on now (held open together while the
    kernel picks them, so no two are the same)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port() -> int:
    return free_ports(1)[0]


def on_free_ports(start: Callable[..., T], count: int = 1, attempts: int = 3) -> T:
    """``start(*ports)`` with ``count`` fresh free ports, tried again with fresh ones while it
    raises PortTaken (``attempts`` tries in all); an AssertionError with the server's last words
    when every try lost its port."""
    said = ""
    for _ in range(attempts):
        try:
            return start(*free_ports(count))
        except PortTaken as exc:
            said = str(exc)
    raise AssertionError(f"another process took the free port in {attempts} tries: {said[-3000:]}")


def taken(output: str) -> bool:
    """Whether a server's ``output`` says it could not bind a port already in use."""
    lowered = output.lower()
    return "address already in use" in lowered or "cannot listen" in lowered


def wait_started(process: subprocess.Popen, log: Path, ready: Callable[[], bool],
                 banner: str = "listening on", limit: float = 120.0) -> None:  # fmt: skip
    """Until ``ready()`` and ``banner`` is in ``log`` (the process's output): both, since a port
    taken by another server answers for it until ``process`` exits. PortTaken if it exited for
    want of its port, an AssertionError with its output if it exited otherwise or took longer
    than ``limit`` seconds (then it is killed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text(errors="replace")
            if taken(said):
                raise PortTaken(said)
            raise AssertionError(f"the server exited ({process.returncode}): {said[-3000:]}")
        if ready() and banner in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    process.kill()
    process.wait()
    said = log.read_text(errors="replace")
    raise AssertionError(f"the server was not ready in {limit:g} s: {said[-3000:]}")
