"""The HTTP listener's plumbing, shared by `modelport serve`, `modelport ui` and the edge agent.

    sock = listen("127.0.0.1", 0)                 # bound up front: a busy port fails early
    server = uvicorn_server(uvicorn.Config(app, lifespan="off", ...))
    stop_on_signals(server)                       # SIGINT / SIGTERM drain and return
    await server.serve(sockets=[sock])

uvicorn's own signal handling is switched off: the caller decides when to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

from modelport.errors import Conflict


async def lifespan(receive: Callable, send: Callable) -> None:
    """Models start and stop in ``serve``; the app only acknowledges the lifespan protocol."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def listen(host: str, port: int) -> socket.socket:
    """Bind the HTTP port up front, so a busy port is a clear error before any model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio sets TCP_NODELAY only on
    # sockets that say TCP (else a reply's second write waits out the peer's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Conflict(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def stop_on_signals(http: Any) -> None:
    """SIGINT and SIGTERM stop the server gracefully: stop accepting, close idle connections,
    finish the requests in flight (up to ``drain_timeout``), unload the models, return (exit 0)."""
    import signal

    def stop() -> None:
        http.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass


def uvicorn_server(config: Any) -> Any:
    """A uvicorn server that leaves signal handling to ``serve``."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)
