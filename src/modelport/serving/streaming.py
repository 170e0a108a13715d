"""A reply sent while it is produced (Server-Sent Events), and noticed when the client leaves.

    async def handler(body, headers):
        return 200, Stream(chunks(), on_close=cancel_sequences), SSE_HEADERS

``chunks`` is an async iterator of bytes. ``on_close`` runs once, as soon as the client
disconnects (not at the next chunk) or when the stream ends, so a generation is cancelled
within one decode step of the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Stream:
    __slots__ = ("chunks", "on_close", "_closed")

    def __init__(self, chunks: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        self.chunks = chunks
        self.on_close = on_close
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.on_close()

    async def send(
        self, send: Callable, receive: Callable, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            async for chunk in self.chunks:
                if self._closed:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not self._closed:
                await send({"type": "http.response.body", "body": b""})
        except OSError:  # the connection broke while writing
            pass
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.close()
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _watch(self, receive: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.close()
                return


def sse(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"
