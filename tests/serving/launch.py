"""A real ``modelport serve`` process started by command line (folders, TLS) and stopped at the
end: ``with launched(["--model-repository", str(repo)], home) as server: ...``."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

from tests.serving.test_e2e_tritonclient import Server, start_server

Launched = Server


@contextlib.contextmanager
def launched(args: list[str], home: Path, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    """The server must exit 0 on SIGTERM."""
    server = start_server(home, *args, env={"NO_COLOR": "1"}, tls=tls)
    try:
        yield server
    finally:
        code, output = server.stop()
        assert code == 0, output
