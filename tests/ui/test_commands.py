"""The dashboard's two ways in, as real processes: ``modelport ui`` on its own, and ``modelport
serve`` answering the same pages under /ui beside the model APIs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from modelport.registry import Registry
from tests.serving.test_e2e_tritonclient import start_server
from tests.ui.conftest import ADMIN_KEY


def command(registry: Registry, *args: str) -> list[str]:
    home = str(registry.settings.home)
    return [sys.executable, "-m", "modelport", "--home", home, "ui", *args]


def test_modelport_ui_serves_the_registry(ui_registry: Registry) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "MODELPORT_API_KEYS": ""}
    process = subprocess.Popen(
        command(ui_registry, "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("dashboard on http://127.0.0.1:"), line
        base = line.split()[2].removesuffix(";").removesuffix("/ui")
        models = httpx.get(base + "/ui/api/models", timeout=10).json()
        assert [m["name"] for m in models["items"]] == ["digits", "empty-model", "iris"]
        page = httpx.get(base + "/ui/models/digits", timeout=10)
        assert page.status_code == 200 and "Lineage of digits:2" in page.text
        assert httpx.get(base + "/v2/health/live", timeout=10).status_code == 404  # registry only
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    assert "Traceback" not in out


def test_modelport_ui_refuses_the_network_without_keys(ui_registry: Registry) -> None:
    env = {**os.environ, "MODELPORT_API_KEYS": ""}
    done = subprocess.run(
        command(ui_registry, "--host", "0.0.0.0", "--port", "0"),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert "refusing to serve 0.0.0.0 without API keys" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_answers_the_dashboard_under_ui(ui_registry: Registry) -> None:
    server = start_server(ui_registry, "--api-key", f"ops=admin:{ADMIN_KEY}")
    try:
        base = f"http://{server.http}"
        assert httpx.get(base + "/ui/api/models", timeout=10).status_code == 401
        keyed = {"X-API-Key": ADMIN_KEY}
        found = httpx.get(base + "/ui/api/models/digits", headers=keyed, timeout=10).json()
        assert {a["alias"]: a["version"] for a in found["aliases"]} == {
            "production": 2,
            "staging": 3,
        }
        page = httpx.get(base + "/ui/models/digits", headers=keyed, timeout=10)
        assert page.status_code == 200 and "ops · admin" in page.text
        assert httpx.get(base + "/v2/health/live", timeout=10).status_code == 200
    finally:
        code, out = server.stop()
    assert code == 0, out
