"""``modelport monitor`` and ``register --reference-data`` in subprocesses, against a real
``modelport serve --payload-log`` process on loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from modelport.monitoring.reference import TAG
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx
from tests.monitoring.conftest import infer_body, metric, reference_rows
from tests.serving.test_e2e_tritonclient import start_server


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-monitor")


def run(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELPORT_HOME": str(home / "home"), "MODELPORT_USER": "alice"}
    proc = subprocess.run([sys.executable, "-m", "modelport", *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return proc


def test_reference_data_at_registration_and_later(home: Path) -> None:
    model = make_mlp_onnx(home / "mlp.onnx")
    np.save(home / "ref.npy", reference_rows())
    np.save(home / "wide.npy", np.ones((10, 5), np.float32))
    out = run(home, "register", str(model), "--name", "mlp", "--alias", "production",
              "--reference-data", str(home / "ref.npy")).stdout  # fmt: skip
    assert "mlp:1 (production)" in out
    bad = run(home, "register", str(model), "--name", "mlp", "--alias", "production",
              "--reference-data", str(home / "wide.npy"), ok=False)  # fmt: skip
    assert "does not match mlp:2" in bad.stderr and "dimension 1 is 5" in bad.stderr
    with Registry(Settings(home=home / "home")) as reg:
        assert [v.version for v in reg.list_versions("mlp")] == [1]  # 2 is not left behind
        assert reg.resolve("mlp@production").version == 1
    run(home, "register", str(model), "--name", "mlp")  # version numbers are never reused: 3
    out = run(home, "monitor", "baseline", "mlp:3", "--data", str(home / "ref.npy")).stdout
    assert "mlp:3: reference of 5000 rows, 4 input features, 1 outputs" in out
    err = run(home, "monitor", "baseline", "mlp:3", "--data", str(home / "wide.npy"), ok=False)
    assert "does not match mlp:3" in err.stderr
    (home / "text.csv").write_text("a,b,c,d\n1,2,x,4\n")
    err = run(home, "monitor", "baseline", "mlp:3", "--data", str(home / "text.csv"), ok=False)
    assert "non-numeric" in err.stderr
    with Registry(Settings(home=home / "home")) as reg:
        digest = reg.resolve("mlp:1").tags[TAG].removeprefix("sha256:")
        reg.gc(grace_seconds=0)
        assert reg.blobs.exists(digest)  # the reference is kept like the model's files


def test_served_log_feedback_and_report(home: Path) -> None:
    log = home / "payloads"
    with Registry(Settings(home=home / "home")) as reg:
        server = start_server(reg, "mlp@production", "--payload-log", str(log),
                              "--drift-refresh", "0.5")  # fmt: skip
    try:
        rng = np.random.default_rng(1)
        predicted = {}
        for i in range(40):
            x = rng.standard_normal((25, 4)).astype(np.float32)
            x[:, 3] += 1.0 if i >= 20 else 0.0  # the last 500 rows move one feature
            answer = _post(f"http://{server.http}/v2/models/mlp/infer", infer_body(x, f"c{i}"))
            predicted[f"c{i}"] = np.asarray(answer["outputs"][0]["data"]).reshape(25, 3)
        labels = home / "labels.csv"
        labels.write_text("request_id,label\n" + "".join(
            f"c{i},{predicted[f'c{i}'].argmax(axis=1)[0]}\n" for i in range(1, 5)))  # fmt: skip
        (home / "one.json").write_text(json.dumps({"request_ids": ["c0"], "ground_truth": [
            predicted["c0"].argmax(axis=1).tolist()]}))  # fmt: skip
        out = run(home, "monitor", "feedback", "mlp", "--labels", str(home / "one.json"),
                  "--url", f"http://{server.http}").stdout  # fmt: skip
        assert "25 labelled rows joined; realized accuracy version 1: 1.0000" in out
        err = run(home, "monitor", "feedback", "mlp", "--labels", str(labels),
                  "--url", f"http://{server.http}", ok=False)  # fmt: skip
        assert "predicted 25 rows but has 1 labels" in err.stderr and "(400)" in err.stderr
        with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert metric(text, "modelport_accuracy", model="mlp", version="1", kind="realized") == 1
    finally:
        code, output = server.stop()
    assert code == 0, output
    assert metric(text, "modelport_payload_events_total", model="mlp", outcome="dropped") == 0
    report = home / "report.html"
    out = run(home, "monitor", "report", "mlp:1", "--log", str(log), "--output", str(report),
              "--since", "1h").stdout  # fmt: skip
    assert "1000 rows of 40 events, 1 of 5 features drifted" in out
    page = report.read_text()
    assert page.count("<tr class=drift>") == 1 and "<tr class=drift><td>input[3]</td>" in page
    assert report.stat().st_size < 500_000 and "data:image/png;base64," in page
    run(home, "monitor", "report", "mlp:1", "--log", str(log), "--output", str(home / "r.png"))
    assert (home / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = run(home, "monitor", "report", "mlp:1", "--log", str(log), "--output",
              str(report), "--since", "2999-01-01", ok=False)  # fmt: skip
    assert "no events since" in err.stderr
    err = run(home, "monitor", "report", "mlp:1", "--log", str(log), "--output",
              str(report), "--since", "yesterday", ok=False)  # fmt: skip
    assert "neither an ISO time" in err.stderr


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
