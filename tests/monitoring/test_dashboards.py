"""The shipped Grafana dashboard and Prometheus scrape configuration (deploy/monitoring): every
metric the dashboard charts is one the server exports, and a real Prometheus scrapes a real
`modelport serve` with the shipped configuration and answers every dashboard query."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx
from tests.ports import on_free_ports, wait_started
from tests.serving.conftest import running_app, v2_input
from tests.serving.test_e2e_tritonclient import start_server

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# what payload logging, drift and accuracy export, charted beside the serving metrics
MONITORING = {"modelport_payload_events_total", "modelport_payload_queue_depth",
              "modelport_drift_score", "modelport_drift_flagged", "modelport_accuracy"}  # fmt: skip
X = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return queries


def charted(queries: list[str]) -> set[str]:
    return {m for q in queries for m in re.findall(r"\b(?:modelport|gen_ai)_[a-z0-9_]+", q)}


def exported(text: str) -> set[str]:
    """Series names of a /metrics page: every family, and a histogram's _bucket/_sum/_count."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("dashboards")
    registry = Registry(Settings(home=tmp / "home", user="tester"))
    modelport.register(make_mlp_onnx(tmp / "mlp.onnx"), "mlp", registry=registry,
                       alias="production")  # fmt: skip
    try:
        yield registry
    finally:
        registry.close()


@pytest.mark.anyio
async def test_every_charted_metric_is_exported(registry) -> None:
    async with running_app(registry) as client:
        assert (await client.post("/v2/models/mlp/infer",
                                  json={"inputs": [v2_input(X)]})).status_code == 200  # fmt: skip
        text = (await client.get("/metrics")).text
    names = charted(dashboard_queries())
    unknown = names - exported(text) - MONITORING
    assert not unknown, f"the dashboard charts metrics nothing exports: {sorted(unknown)}"
    for wanted in (
        "modelport_requests_total",
        "modelport_request_duration_seconds_bucket",
        "modelport_queue_duration_seconds_bucket",
        "modelport_batch_size_bucket",
        "modelport_models_loaded",
        "modelport_rollout_weight",
        *MONITORING,
    ):
        assert wanted in names, f"the dashboard does not chart {wanted}"  # fmt: skip


def _query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # a bad query answers 400 with its error as JSON
        return json.loads(exc.read())


def _start(config: Path, data: Path, log: Path, port: int) -> tuple[subprocess.Popen, str]:
    """Prometheus, once it answers ready: while starting it answers 503 in plain text, not JSON.
    PortTaken if it exited because another process took its port first."""
    command = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
               f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out)
    base = f"http://127.0.0.1:{port}"
    # it says nothing like a banner to wait for: "/-/ready" answers 200 only once it is ready
    wait_started(process, log, lambda: _ready(f"{base}/-/ready"), banner="")
    return process, base


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except OSError:  # not listening yet, or 503 while it replays its write-ahead log
        return False


@pytest.fixture(scope="module")
def prometheus(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus with the shipped scrape configuration pointed at a real server, every second."""
    import yaml

    if not Path(PROMETHEUS).is_file():
        pytest.fail("Prometheus is not installed: apt-get install prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    server = start_server(registry)
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    [job] = config["scrape_configs"]
    job["scrape_interval"] = "1s"
    job["static_configs"][0]["targets"] = [server.http]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = None
    try:
        for _ in range(5):
            urllib.request.urlopen(urllib.request.Request(
                f"http://{server.http}/v2/models/mlp/infer",
                json.dumps({"inputs": [v2_input(X)]}).encode(),
                {"content-type": "application/json"}), timeout=10).close()  # fmt: skip
        start = partial(_start, tmp / "prometheus.yml", tmp / "data", tmp / "prometheus.log")
        process, base = on_free_ports(start)
        yield base
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        code, output = server.stop()
        assert code == 0, output


def test_a_real_prometheus_scrapes_a_real_server(prometheus) -> None:
    expr = 'sum(modelport_requests_total{model="mlp",outcome="success"})'
    deadline, value = time.monotonic() + 60, 0.0
    while time.monotonic() < deadline:  # bounded: the first scrapes come within seconds
        try:
            result = _query(prometheus, expr)["data"]["result"]
        except OSError:  # Prometheus is still starting
            result = []
        if result and float(result[0]["value"][1]) > 0:
            value = float(result[0]["value"][1])
            break
        time.sleep(0.25)
    assert value == 5.0
    [up] = _query(prometheus, 'up{job="modelport"}')["data"]["result"]
    assert up["value"][1] == "1" and up["metric"]["service"] == "modelport"


def test_prometheus_accepts_every_dashboard_query(prometheus) -> None:
    for query in dashboard_queries():
        expr = query.replace("$__rate_interval", "1m").replace("$model", ".*")
        if expr.startswith("label_values("):  # a Grafana function: ask for the series instead
            expr = expr[len("label_values(") :].split(",")[0]
        answer = _query(prometheus, expr)
        assert answer["status"] == "success", f"{query}: {answer.get('error')}"
