"""Fixtures for the dashboard's tests: a registry with lineage and alias history, real servers on
free loopback ports (one per module), and Debian's Chromium driven headless by Playwright.

    def test_page(ui_server, page):
        page.goto(ui_server.url + "/ui/models")

Playwright never downloads a browser here: it launches /usr/bin/chromium (the ``chromium``
Debian package, which ``.ci/run`` installs where missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx

CHROMIUM = "/usr/bin/chromium"
ADMIN_KEY, VIEWER_KEY = "admin-key-0123", "viewer-key-0123"
KEYS = [f"ops=admin:{ADMIN_KEY}", f"viewer=infer:{VIEWER_KEY}"]


@dataclass
class UiServer:
    url: str
    registry: Registry
    app: Any


def png(width: int = 160, height: int = 80) -> bytes:
    """A small real PNG (a two-colour bar plot), written with zlib and struct."""
    rows = b"".join(
        b"\x00"
        + b"".join(
            b"\x1f\x5f\xbf" if x < width * (y + 1) // height else b"\xff\xff\xff"
            for x in range(width)
        )
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def fill(registry: Registry, folder: Path) -> None:
    """``digits``: v1 trained, v2 quantized from v1, v3 pruned from v1, v4 converted from v2,
    v5 distilled from v1; production 1 -> 2, staging -> 3; a report plot attached to v2.
    ``iris``: two plain versions. ``empty-model`` has none."""
    from modelport.importers.onnx import from_path
    from modelport.registry.attachments import attach

    files = [make_mlp_onnx(folder / f"m{i}.onnx", seed=i) for i in range(5)]
    add = registry.add
    add(
        from_path(files[0]),
        "digits",
        alias="production",
        metrics={"accuracy": 0.962},
        tags={"team": "vision"},
        description="trained on the bundled digits",
    )
    add(
        from_path(files[1]),
        "digits",
        parent="digits:1",
        transform="quantize",
        transform_params={"mode": "dynamic", "bits": 8, "format": "qoperator"},
        metrics={
            "accuracy": 0.958,
            "parent_accuracy": 0.962,
            "size_ratio": 3.7,
            "latency_ms_b1": 0.021,
            "parent_latency_ms_b1": 0.034,
        },
    )
    add(
        from_path(files[2]),
        "digits",
        parent="digits:1",
        transform="prune",
        transform_params={"kind": "magnitude", "sparsity": 0.5},
        alias="staging",
        metrics={"accuracy": 0.95, "size_ratio": 1.0},
    )
    add(
        from_path(files[3]),
        "digits",
        parent="digits:2",
        transform="convert",
        transform_params={"to": "openvino", "precision": "fp32"},
        metrics={"agreement": 1.0},
    )
    add(
        from_path(files[4]),
        "digits",
        parent="digits:1",
        transform="distill",
        transform_params={"student": "mlp-16", "epochs": 3},
        metrics={"accuracy": 0.93},
    )
    registry.set_alias("digits", "production", 2)
    plot = folder / "plot.png"
    plot.write_bytes(png())
    attach(registry, "digits:2", "report-plot", plot)
    add(from_path(files[0]), "iris", alias="production")
    add(from_path(files[1]), "iris")
    from modelport.registry import catalog

    catalog.write(registry.engine, lambda conn: registry._model_id(conn, "empty-model", True))


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free 127.0.0.1 port in a thread; stopped at the end."""
    import uvicorn

    from modelport.serving.app import listen

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        deadline = time.monotonic() + 60  # a loaded machine may take seconds to start it
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert server.started, "the dashboard did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def ui_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    folder = tmp_path_factory.mktemp("ui")
    registry = Registry(Settings(home=folder / "home", user="tester"))
    fill(registry, folder)
    try:
        yield registry
    finally:
        registry.close()


def _server(registry: Registry, keys: Any) -> Iterator[UiServer]:
    from modelport.ui import UiApp

    app = UiApp(registry, keys)
    with running(app) as url:
        yield UiServer(url, registry, app)


@pytest.fixture(scope="module")
def ui_server(ui_registry: Registry) -> Iterator[UiServer]:
    """No API keys, on loopback: everyone may read and act (as ``modelport ui`` by default)."""
    yield from _server(ui_registry, None)


@pytest.fixture(scope="module")
def keyed_server(ui_registry: Registry) -> Iterator[UiServer]:
    """API keys: ``ops`` (admin) and ``viewer`` (infer) over the same registry."""
    from modelport.serving.auth import ApiKeys

    yield from _server(ui_registry, ApiKeys.parse(KEYS))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    try:
        yield tab
    finally:
        context.close()
