"""The fleet server's HTTP API (devices only; operators use the CLI on the same registry).

POST /v1/enroll          Bearer <enrollment token>, device facts  -> device id and secret
GET  /v1/poll            Bearer <device id>:<secret>   -> {"desired": release|null, ...}
POST /v1/report          Bearer <device id>:<secret>, state and outcome
GET  /v1/blobs/{sha256}  Bearer <device id>:<secret>, HTTP Range -> a release file
GET  /v1/health

run(registry, host="0.0.0.0", port=8470)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from modelport.edge.fleet import control
from modelport.edge.fleet.devices import parse_report
from modelport.edge.fleet.store import Fleet
from modelport.edge.web import FileReply, Request, Router, json_reply, server
from modelport.errors import InvalidInput

log = logging.getLogger("modelport.fleet")
DEFAULT_PORT = 8470


class FleetApp(Router):
    def __init__(
        self, fleet: Fleet, interval: float = 15.0, jitter: float = 0.2, root: bytes | None = None
    ) -> None:
        self.fleet = fleet
        self.interval = interval
        self.jitter = jitter
        self.root = root
        super().__init__(
            {
                ("GET", "v1/health"): self.health,
                ("POST", "v1/enroll"): self.enroll,
                ("GET", "v1/poll"): self.poll,
                ("POST", "v1/report"): self.report,
                ("GET", "v1/blobs/{}"): self.blob,
            }
        )

    async def health(self, request: Request):
        return json_reply({"status": "ok"})

    async def enroll(self, request: Request):
        body = request.json()
        device_id, secret = await asyncio.to_thread(self.fleet.enroll, request.bearer(), body)
        reply: dict[str, Any] = {
            "device_id": device_id,
            "token": f"{device_id}:{secret}",
            "interval": self.interval,
            "jitter": self.jitter,
        }
        if self.root is not None:
            reply["root"] = self.root.decode()
        return json_reply(reply, 201)

    async def poll(self, request: Request):
        # inline on the event loop: two indexed reads under WAL take well under a millisecond,
        # less than a hop to a worker thread and back
        release = self.fleet.poll(request.bearer())
        return json_reply({"desired": release, "interval": self.interval, "jitter": self.jitter})

    async def report(self, request: Request):
        body = parse_report(request.json())

        def work() -> None:
            self.fleet.report(self.fleet.authenticate(request.bearer()), body)

        await asyncio.to_thread(work)
        return json_reply({"status": "recorded"})

    async def blob(self, request: Request, digest: str):
        if len(digest) != 64 or not all(ch in "0123456789abcdef" for ch in digest):
            raise InvalidInput(f"{digest!r} is not a sha256 digest")

        def work() -> FileReply:
            self.fleet.authenticate(request.bearer())
            path = self.fleet.blob(digest)
            return FileReply(path, path.stat().st_size)

        return await asyncio.to_thread(work)


async def _ticker(fleet: Fleet, every: float) -> None:
    """Deployments whose wait has passed move on even when no device reports."""
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(fleet.flush_seen)
            for deployment in await asyncio.to_thread(control.running, fleet):
                await asyncio.to_thread(control.tick, fleet, deployment)
        except Exception:  # keep ticking; the next second may succeed
            log.exception("deployment tick failed")


async def serve(
    registry: Any,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    interval: float = 15.0,
    root: bytes | None = None,
    started: Any = None,
) -> None:
    app = FleetApp(Fleet(registry), interval=interval, root=root)
    http, sock = server(app, host, port)
    ticker = asyncio.ensure_future(_ticker(app.fleet, 1.0))
    task = asyncio.ensure_future(http.serve(sockets=[sock]))
    try:
        while not http.started and not task.done():
            await asyncio.sleep(0.01)
        if started is not None and http.started:
            started(sock.getsockname()[1])
        await task
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        sock.close()


def run(registry: Any, **options: Any) -> None:
    """Blocking entry point of ``modelport fleet serve`` (SIGINT/SIGTERM stop it)."""
    import signal

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(serve(registry, **options))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
