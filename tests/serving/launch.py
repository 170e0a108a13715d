"""A real ``modelport serve`` process started by command line (folders, TLS) and stopped at the
end: ``with launched(["--model-repository", str(repo)], home) as server: ...``."""

from __future__ import annotations

import contextlib
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.serving.test_e2e_tritonclient import Server, start_server

Launched = Server


@contextlib.contextmanager
def launched(args: list[str], home: Path, tls: ssl.SSLContext | None = None,
             models: tuple[str, ...] = ()) -> Iterator[Server]:  # fmt: skip
    """The server must exit 0 on SIGTERM. ``models``: wait until each is ready (a folder's
    fresh version is taken once it has settled, a poll or two after start-up)."""
    server = start_server(home, *args, env={"NO_COLOR": "1"}, tls=tls)
    try:
        scheme = "https" if tls else "http"
        for name in models:
            _wait_ready(f"{scheme}://{server.http}/v2/models/{name}/ready", tls)
        yield server
    finally:
        code, output = server.stop()
        assert code == 0, output


def _wait_ready(url: str, tls: ssl.SSLContext | None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1, context=tls):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} was not ready in {seconds:g} s")
