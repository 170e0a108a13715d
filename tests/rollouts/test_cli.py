"""The rollout commands in subprocesses, the admin routes through the real app, the timeline:
all against a real registry, a real serving process drawing the timeline from real traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelport.registry import Registry
from modelport.settings import Settings
from tests.rollouts.conftest import fill
from tests.rollouts.load import Load
from tests.rollouts.servers import serve, wait_for


@pytest.fixture
def home(tmp_path: Path) -> Path:
    registry = Registry(Settings(home=tmp_path / "home", user="alice"))
    fill(registry, tmp_path / "models")
    registry.set_alias("digits", "staging", 2)
    registry.close()
    return tmp_path / "home"


def run(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELPORT_HOME": str(home), "MODELPORT_USER": "alice"}
    proc = subprocess.run([sys.executable, "-m", "modelport", "rollout", *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return proc


def test_start_status_pause_resume_abort_history(home: Path):
    started = run(home, "start", "digits", "--candidate", "digits@staging", "--plan",
                  "shadow 20% 60s; canary 5,25,50,100 60s", "--max-error-rate", "0.01",
                  "--max-p99-ratio", "1.5", "--min-agreement", "0.98").stdout  # fmt: skip
    assert "signature compatible: (input: float32[?,4]) -> (probabilities: float32[?,5])" in started
    assert "rollout #1 of digits: 1 -> 2, shadow (20%)" in started
    status = json.loads(run(home, "status", "digits", "--json").stdout)
    assert status["rollout"]["state"] == "shadow" and status["step"] == "shadow (20%)"
    assert {g["gate"] for g in status["gates"]} == {"error_rate", "p99_ratio", "p50_ratio", "shift"}
    assert "too few" in run(home, "status", "digits").stdout
    assert "paused in shadow (20%)" in run(home, "pause", "digits", "--reason", "lunch").stdout
    assert "shadow (20%)" in run(home, "resume", "digits").stdout
    second = run(home, "start", "digits", "--candidate", "digits:3", ok=False).stderr
    assert "already has an active rollout (#1" in second
    assert "aborted" in run(home, "abort", "digits").stdout
    log = json.loads(run(home, "history", "digits", "--json").stdout)
    assert [d["action"] for d in log[0]["decisions"]] == ["start", "pause", "resume", "abort"]
    assert log[0]["decisions"][1]["evidence"] == {"reason": "lunch"}
    table = run(home, "history", "digits").stdout
    assert "rollout #1: 1 -> 2, aborted" in table and "lunch" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "digits:1"], "is the stable version"),
        (["--candidate", "digits:42"], "has no version 42"),
        (["--candidate", "digits:2", "--plan", "canary 50,20"], "must increase"),
        (["--candidate", "digits:2", "--plan", "canary 20 0s"], "more than zero"),
        (["--candidate", "digits:2", "--plan", "sideways 5"], "unknown step"),
        (["--candidate", "digits:2", "--max-error-rate", "1.5"], "max error rate"),
        (["--candidate", "digits:2", "--min-agreement", "1.2"], "min agreement"),
    ],
)
def test_bad_starts_are_one_line_errors(home: Path, args, message):
    assert message in run(home, "start", "digits", *args, ok=False).stderr


def test_commands_without_a_rollout_say_so(home: Path):
    assert "has no rollouts" in run(home, "status", "digits", ok=False).stderr
    assert "not found" in run(home, "pause", "digitz", ok=False).stderr


def _state(client: httpx.Client) -> str:
    return client.get("/v2/rollouts/digits").json()["rollout"]["state"]


def _answered(client: httpx.Client) -> dict | None:
    """The rollout's status once its windows hold requests the candidate answered."""
    status = client.get("/v2/rollouts/digits").json()
    return status if status["requests"]["candidate"] > 0 else None


def test_admin_routes_and_a_timeline_of_real_traffic(home: Path, tmp_path: Path):
    server = serve(home, "--poll-interval", "0.5")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            bad = client.post("/v2/rollouts/digits", json={"candidate": "digits:1"})
            assert bad.status_code == 400 and "stable version" in bad.json()["error"]
            wrong = client.post("/v2/rollouts/digits", json={"candidate": "digits:2", "x": 1})
            assert wrong.status_code == 400 and "unknown field" in wrong.json()["error"]
            body = {"candidate": "digits@staging", "plan": "shadow 50% 1s min 10; canary 50 600s",
                    "gates": {"window": 0.5, "min_window_samples": 5,
                              "max_p99_ratio": 50}}  # routes are tested, not gates  # fmt: skip
            with Load([server.url], rate=60, threads=4) as load:
                created = client.post("/v2/rollouts/digits", json=body)
                assert created.status_code == 201, created.text
                again = client.post("/v2/rollouts/digits", json=body)
                assert again.status_code == 409 and "already has" in again.json()["error"]
                wait_for(lambda: _state(client) == "canary", "the canary step", limit=30)
                status = wait_for(lambda: _answered(client), "the candidate's first answers")
                assert client.post("/v2/rollouts/digits/pause", json={"reason": "look"}).json()[
                    "state"] == "paused"  # fmt: skip
                assert client.post("/v2/rollouts/digits/explode").status_code == 404
                assert client.post("/v2/rollouts/digits/promote").json()["state"] == "promoted"
            assert load.failed == 0, load.errors[:3]
            assert status["leader"]
            history = client.get("/v2/rollouts/digits/history").json()
            actions = [d["action"] for d in history[0]["decisions"]]
            assert actions == ["start", "advance", "pause", "promote"]
    finally:
        assert server.stop() == 0, server.output()[-2000:]
    png = tmp_path / "timeline.png"
    assert f"wrote {png}" in run(home, "timeline", "digits", "-o", str(png)).stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    from modelport.rollouts.timeline import series

    registry = Registry(Settings(home=home))
    data = series(registry, 1)
    registry.close()
    assert 50 in data["weight"] and any(a is not None for a in data["agreement"])
    assert [a for _, a in data["decisions"]] == actions
