"""A real ``modelport serve`` for the live pages' tests: the real ``serve()`` in a thread on a
free loopback port with API keys, its models loaded, its rollout agent and monitor running, the
dashboard at /ui; and the browser-side helpers (signing in, screenshots, a signed-in session).

Set MODELPORT_UI_SHOTS to a folder to keep screenshots of the pages (docs/images uses them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from modelport import rollouts
from modelport.registry import Registry
from tests.ui.conftest import ADMIN_KEY, KEYS, VIEWER_KEY

SHOTS = os.environ.get("MODELPORT_UI_SHOTS")


class Live:
    def __init__(self, url: str, registry: Registry) -> None:
        self.url, self.registry = url, registry

    def infer(
        self, model: str, x: np.ndarray, key: str = VIEWER_KEY, client: Any = httpx, **extra: Any
    ) -> httpx.Response:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                            "data": x.ravel().tolist()}], **extra}  # fmt: skip
        return client.post(f"{self.url}/v2/models/{model}/infer", json=body,
                          headers={"x-api-key": key}, timeout=10)  # fmt: skip


@contextlib.contextmanager
def serving(registry: Registry) -> Iterator[Live]:
    """The real ``serve()`` of ``modelport serve`` on a free loopback port, cancelled at the end."""
    from modelport.monitoring.drift import DriftOptions
    from modelport.monitoring.monitor import MonitorOptions
    from modelport.serving import app as serving_app
    from modelport.serving.auth import ApiKeys
    from modelport.serving.config import ServeConfig

    monitor = MonitorOptions(
        interval=0.1, refresh=0.3, drift_options=DriftOptions(window=400, slices=4, min_rows=100)
    )
    options = serving_app.ServerOptions(http_port=0, grpc_port=None, monitor=monitor,
                                        api_keys=ApiKeys.parse(KEYS))  # fmt: skip
    built: dict[str, Any] = {}
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    def started(models: Any, http_port: int, grpc_port: int | None) -> None:
        built["port"] = http_port
        ready.set()

    task = loop.create_task(serving_app.serve(registry, ServeConfig(poll_interval=0.5), options,
                                              started))  # fmt: skip
    thread = threading.Thread(target=lambda: loop.run_until_complete(_quietly(task)))
    thread.start()
    try:
        assert ready.wait(60), "the server did not start"
        yield Live(f"http://127.0.0.1:{built['port']}", registry)
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
        loop.close()


async def _quietly(task: asyncio.Task) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await task


def sign_in(page: Any, url: str, key: str, target: str) -> None:
    page.goto(f"{url}/ui/login?next={target}")
    page.fill("#key", key)
    page.click("form[action='/ui/login'] button[type=submit]")
    page.wait_for_url(f"{url}{target}")


def shoot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def unchanged(registry: Registry, before: Any) -> bool:
    """The rollout is in the state and step it was, with no new decision logged."""
    now = rollouts.get(registry, before.name)
    log = registry.rollouts.decisions(now.id)
    return (now.id, now.state, now.step, len(log)) == (before.id, before.state, before.step, 1)


def admin_session(url: str, key: str = ADMIN_KEY) -> tuple[httpx.Client, str]:
    """A browser-like client: a session cookie signed in with ``key``, and its CSRF token."""
    client = httpx.Client(base_url=url, timeout=10)
    page = client.get("/ui/login").text
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)
    answer = client.post("/ui/login", data={"key": key, "csrf": csrf, "next": "/ui/rollouts"})
    assert answer.status_code == 303
    page = client.get("/ui/rollouts").text
    return client, re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)
