"""The small ASGI app the fleet server and the device's local endpoint share.

    app = Router({("GET", "v1/blobs/{}"): blob, ("POST", "v1/report"): report})
    async def blob(req: Request, digest: str) -> Reply | FileReply: ...

Handlers get a parsed ``Request`` and return ``(status, body, headers)`` (the serving layer's
``Reply``) or a ``FileReply``, sent in chunks with HTTP range support. Errors from the
exception tree become their status with a JSON ``{"error": ...}`` body.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelport.errors import InvalidInput, ModelportError, NotFound, PayloadTooLarge
from modelport.serving.listener import lifespan, listen, uvicorn_server
from modelport.serving.rest_v2 import Reply, error_reply, reply

log = logging.getLogger("modelport.edge")
CHUNK = 256 << 10


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[bytes, bytes]
    body: bytes
    query: str

    def json(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput("the request body must be a JSON object")
        return data

    def bearer(self) -> str:
        value = self.headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""


@dataclass(frozen=True, slots=True)
class FileReply:
    path: Path
    size: int


def json_reply(data: Any, status: int = 200) -> Reply:
    return reply(data, status)


Handler = Callable[..., Awaitable[Reply | FileReply]]


class Router:
    """Routes ``(method, "a/{}/b")`` patterns to handlers; "{}" is a path parameter."""

    def __init__(self, routes: dict[tuple[str, str], Handler], max_body: int = 1 << 20) -> None:
        self.max_body = max_body
        self._routes = [(m, tuple(p.split("/")), h) for (m, p), h in routes.items()]

    def _match(self, method: str, path: str) -> tuple[Handler, list[str]]:
        parts = path.strip("/").split("/")
        for want, pattern, handler in self._routes:
            if want != method or len(pattern) != len(parts):
                continue
            params = [s for s, p in zip(parts, pattern, strict=True) if p == "{}"]
            if all(p in ("{}", s) for s, p in zip(parts, pattern, strict=True)):
                return handler, params
        raise NotFound(f"no route {method} {path}")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            return
        headers = dict(scope["headers"])
        try:
            handler, params = self._match(scope["method"], scope["path"])
            body = await self._read(receive) if scope["method"] in ("POST", "PUT") else b""
            request = Request(
                scope["method"],
                scope["path"],
                headers,
                body,
                scope.get("query_string", b"").decode("latin-1"),
            )
            result = await handler(request, *params)
        except ModelportError as exc:
            result = error_reply(exc)
        except Exception as exc:  # a bug answers JSON and leaves the server up
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            result = json_reply({"error": f"internal error: {type(exc).__name__}"}, 500)
        if isinstance(result, FileReply):
            await _send_file(result, headers.get(b"range"), send)
            return
        status, payload, extra = result
        reply_headers = [*extra, (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": status, "headers": reply_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _read(self, receive: Callable) -> bytes:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(
                    f"the request body is over the limit of {self.max_body} bytes"
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def byte_range(header: bytes | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range;
    None for no header; InvalidInput for one that is unsatisfiable or malformed."""
    if header is None:
        return None
    unit, _, spec = header.decode("latin-1").partition("=")
    first, sep, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not sep or "," in spec:
        raise InvalidInput(f"unsupported Range {header.decode('latin-1')!r}")
    try:
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise InvalidInput(f"malformed Range {header.decode('latin-1')!r}") from None
    if start >= size or start > end:
        raise _Unsatisfiable(size)
    return start, end


class _Unsatisfiable(InvalidInput):
    status = 416

    def __init__(self, size: int) -> None:
        super().__init__(f"the range starts past the end ({size} bytes)")
        self.size = size


async def _send_file(reply: FileReply, range_header: bytes | None, send: Callable) -> None:
    try:
        span = byte_range(range_header, reply.size)
    except ModelportError as exc:
        status, payload, extra = error_reply(exc)
        if isinstance(exc, _Unsatisfiable):
            extra = [*extra, (b"content-range", b"bytes */%d" % exc.size)]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*extra, (b"content-length", b"%d" % len(payload))],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return
    start, end = span if span is not None else (0, reply.size - 1)
    length = end - start + 1 if reply.size else 0
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"accept-ranges", b"bytes"),
        (b"content-length", b"%d" % length),
    ]
    if span is not None:
        headers.append((b"content-range", b"bytes %d-%d/%d" % (start, end, reply.size)))
    await send({"type": "http.response.start", "status": 206 if span else 200, "headers": headers})
    loop = asyncio.get_running_loop()
    fd = os.open(reply.path, os.O_RDONLY)
    try:
        offset, left = start, length
        while left > 0:
            chunk = await loop.run_in_executor(None, os.pread, fd, min(CHUNK, left), offset)
            if not chunk:
                break
            offset, left = offset + len(chunk), left - len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        if length == 0:
            await send({"type": "http.response.body", "body": b""})
    finally:
        os.close(fd)


def server(app: Any, host: str, port: int) -> tuple[Any, Any]:
    """A uvicorn server bound up front: (server, socket); run with ``server.serve([socket])``."""
    import uvicorn

    sock = listen(host, port)
    config = uvicorn.Config(
        app,
        host=host,
        port=sock.getsockname()[1],
        loop="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=30,
    )
    return uvicorn_server(config), sock
