"""The device's small HTTP client for the fleet server (standard library only).

client = FleetClient("http://fleet:8470", token="cam-1:secret")
reply = client.poll()                      # {"desired": release | None, "interval": 15}
client.download(digest, size, Path("w.bin"))  # resumes a ``w.bin.part`` left by a crash
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelport.edge.trust import Rejected, hash_file
from modelport.errors import ModelportError, PayloadTooLarge, Unauthorized

CHUNK = 64 << 10


class Offline(ModelportError):
    """The server cannot be reached or answered 5xx; the device keeps serving and retries."""

    status = 503


class Refused(ModelportError):
    """The server answered 4xx: ``status`` is its code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FleetClient:
    def __init__(self, server: str, token: str = "", timeout: float = 10.0) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(400, f"server URL {server!r} must look like http://host:port")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.token = token
        self.timeout = timeout
        self.received = 0  # body bytes downloaded, for reports and tests

    def _connection(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=self.timeout)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Offline(f"{self.host}:{self.port} unreachable: {exc}") from None
        finally:
            conn.close()
        return _decode(response.status, payload)

    def enroll(self, enrollment_token: str, facts: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/v1/enroll", facts, token=enrollment_token)

    def poll(self) -> dict[str, Any]:
        return self.call("GET", "/v1/poll")

    def report(self, state: dict[str, Any]) -> None:
        self.call("POST", "/v1/report", state)

    def download(self, digest: str, size: int, dest: Path, attempts: int = 1000) -> None:
        """Fetch blob ``digest`` (``size`` bytes, never more) into ``dest``, resuming from
        ``dest.part`` after a reset or a crash; the sha256 is checked before the rename."""
        part = dest.with_name(dest.name + ".part")
        stalled = 0
        for attempt in range(attempts):
            have = part.stat().st_size if part.exists() else 0
            if have > size:
                part.unlink()
                have = 0
            if have < size:
                try:
                    self._fetch_range(digest, have, size, part)
                except Offline:
                    if attempt == attempts - 1:
                        raise
                    time.sleep(min(0.05 * (attempt + 1), 1.0))
                    continue
                got = part.stat().st_size if part.exists() else 0
                stalled = stalled + 1 if got == have else 0
                if got < size and stalled < 3:
                    continue  # the connection ended early: resume from here
                if got < size:
                    raise Rejected(
                        "truncated",
                        f"{dest.name}: the server sends {got} of {size} bytes and no more",
                    )
            if hash_file(part)[0] != digest:
                part.unlink()
                raise Rejected("tampered", f"{dest.name} does not match its signed sha256")
            os.replace(part, dest)
            return
        raise Offline(f"download of {dest.name} did not finish")

    def _fetch_range(self, digest: str, start: int, size: int, part: Path) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if start:
            headers["Range"] = f"bytes={start}-"
        conn = self._connection()
        try:
            conn.request("GET", f"/v1/blobs/{digest}", headers=headers)
            response = conn.getresponse()
            if response.status == 416:  # nothing past what we have: the file is short
                response.read()
                return
            if response.status not in (200, 206):
                _decode(response.status, response.read())
            if response.status == 200 and start:
                start = 0  # the server ignored the range: start over
            declared = response.getheader("content-length")
            if declared is not None and start + int(declared) > size:
                raise PayloadTooLarge(
                    f"the server offers {start + int(declared)} bytes of a {size}-byte file"
                )
            with open(part, "r+b" if start else "wb") as out:
                out.seek(start)
                out.truncate()
                written = start
                while chunk := response.read(CHUNK):
                    written += len(chunk)
                    if written > size:  # a download that never ends is cut at its size
                        raise PayloadTooLarge(f"the download of {digest[:12]} passed {size} bytes")
                    out.write(chunk)
                    self.received += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as exc:
            raise Offline(f"download interrupted: {exc}") from None
        finally:
            conn.close()


def _decode(status: int, payload: bytes) -> Any:
    try:
        data = json.loads(payload) if payload else {}
    except ValueError:
        data = {"error": payload[:200].decode("utf-8", "replace")}
    if status >= 500:
        raise Offline(f"server error {status}: {data.get('error', '')}")
    if status in (401, 403):
        raise Unauthorized(f"the fleet server refused this device ({status}): {data.get('error')}")
    if status >= 400:
        raise Refused(status, f"the fleet server answered {status}: {data.get('error')}")
    return data
