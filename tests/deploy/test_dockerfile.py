"""The Dockerfile, without a container engine (none runs here): its stages, user, build argument
and health check are read from the file, and the command it runs and its health check are run
outside a container with the same arguments (the ports moved to free ones)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.ports import PortTaken, free_port, on_free_ports, wait_started

ROOT = Path(__file__).resolve().parents[2]
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cmake|make|cc)\b")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))  # fmt: skip
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages(text: str) -> list[list[tuple[str, str]]]:
    split: list[list[tuple[str, str]]] = [[]]
    for item in instructions(text):
        if item[0] == "FROM":
            split.append([])
        split[-1].append(item)
    return split[1:]


DOCKERFILE = (ROOT / "Dockerfile").read_text()
BUILD, FINAL = stages(DOCKERFILE)


def _one(stage: list[tuple[str, str]], word: str) -> str:
    (value,) = [rest for w, rest in stage if w == word]
    return value


def test_two_stages_slim_and_non_root() -> None:
    assert _one(BUILD, "FROM").endswith(" AS build") and "-slim" in _one(BUILD, "FROM")
    assert "-slim" in _one(FINAL, "FROM")
    copies = [rest for w, rest in FINAL if w == "COPY"]
    assert copies == ["--from=build /opt/modelport /opt/modelport"]
    user = _one(FINAL, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert any(COMPILERS.search(rest) for w, rest in BUILD if w == "RUN")  # the build stage has
    assert not any(COMPILERS.search(rest) for w, rest in FINAL if w == "RUN")  # them, not final


def test_extras_come_from_a_build_argument() -> None:
    assert _one(BUILD, "ARG").startswith("EXTRAS=")
    install = [rest for w, rest in BUILD if w == "RUN" and "pip install" in rest]
    assert install and '".[${EXTRAS}]"' in install[0]
    default = _one(BUILD, "ARG").split("=", 1)[1].split(",")
    assert "serve" in default and "postgres" in default


def _command(port: int, grpc: int) -> list[str]:
    entry = json.loads(_one(FINAL, "ENTRYPOINT"))
    cmd = json.loads(_one(FINAL, "CMD"))
    assert entry == ["modelport"]  # the console script: python -m modelport outside the image
    ports = {"8080": str(port), "8081": str(grpc)}
    return [sys.executable, "-m", "modelport", *[ports.get(a, a) for a in cmd]]


def _healthcheck(port: int) -> list[str]:
    check = _one(FINAL, "HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[0] == "python" and "/v2/health/ready" in command[-1]
    return [sys.executable, *command[1:-1], command[-1].replace(":8080/", f":{port}/")]


def test_the_image_command_refuses_to_start_open(tmp_path) -> None:
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path)}
    env.pop("MODELPORT_API_KEYS", None)
    done = subprocess.run(_command(free_port(), free_port()), env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "refusing to serve 0.0.0.0 without API keys" in done.stderr


def test_the_image_command_serves_and_its_health_check_passes(tmp_path, served_registry) -> None:
    env = {**os.environ, "MODELPORT_HOME": str(served_registry.settings.home),
           "MODELPORT_API_KEYS": "ops=admin:image-secret-0123"}  # fmt: skip
    log = tmp_path / "serve.log"

    def start(port: int, grpc: int) -> tuple[subprocess.Popen, int, int]:
        if subprocess.run(_healthcheck(port), capture_output=True, timeout=30).returncode == 0:
            raise PortTaken("the health check passed before the server was started")
        with open(log, "wb") as out:
            proc = subprocess.Popen(_command(port, grpc), env=env, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        wait_started(proc, log, lambda: subprocess.run(_healthcheck(port), capture_output=True,
                                                       timeout=30).returncode == 0)  # fmt: skip
        return proc, port, grpc

    proc, port, grpc = on_free_ports(start, count=2)
    try:
        reply = httpx.get(f"http://127.0.0.1:{port}/v2/models/mlp/ready", timeout=5,
                          headers={"X-API-Key": "image-secret-0123"})  # fmt: skip
        assert reply.status_code == 200
        assert f"gRPC on 0.0.0.0:{grpc}" in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
