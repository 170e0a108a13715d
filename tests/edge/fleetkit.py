"""A real fleet server on a free loopback port, in a thread, for the edge tests."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelport.edge.fleet.server import FleetApp, _ticker
from modelport.edge.fleet.store import Fleet
from modelport.edge.web import server
from modelport.registry import Registry


@contextmanager
def fleet_server(home: Path, interval: float = 0.2, root: bytes | None = None, port: int = 0):
    """Yields (fleet, url); the server stops when the block ends."""
    registry = Registry.open(home)
    app = FleetApp(Fleet(registry), interval=interval, jitter=0.1, root=root)
    http, sock = server(app, "127.0.0.1", port)
    loop = asyncio.new_event_loop()

    async def main() -> None:
        ticker = asyncio.ensure_future(_ticker(app.fleet, 0.1))
        try:
            await http.serve(sockets=[sock])
        finally:
            ticker.cancel()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    while not http.started:
        threading.Event().wait(0.01)
    try:
        yield app.fleet, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        http.should_exit = True
        thread.join(10)
        sock.close()
        registry.close()


def deploy_now(
    fleet: Fleet, release: dict[str, Any], group: str = "test", hardware: str = "x86"
) -> int:
    return fleet.deploy(release["model"], [group], [100.0], 0.0, {hardware: release["id"]})
