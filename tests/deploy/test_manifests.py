"""The Helm chart rendered by Helm's own engine (helm-python-sdk) with several value sets, and the
KServe manifests built by kustomize: every resulting manifest passes ``kubernetes-validate``
(strict, so a misspelt field fails); the chart's container command, with its ConfigMap and
Secret as the environment, starts a real server that applies the chart's keys and limits."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.ports import on_free_ports, wait_started

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "modelport"
KSERVE = ROOT / "deploy" / "kserve"
K8S = ["1.30.0", "1.37.0"]
KEY = "ops=admin:chart-secret-0123"

VALUES = {
    "minimal": {"apiKeys": [KEY]},
    "shared-catalogue": {
        "apiKeys": [KEY, "app=infer:chart-infer-4567"], "models": ["digits", "mlp@staging"],
        "database": {"url": "postgresql://modelport:pw@db:5432/modelport"},
        "persistence": {"enabled": True, "storageClass": "nfs"},
        "autoscaling": {"enabled": True, "maxReplicas": 6},
        "limits": {"rate": 100, "burst": 20, "concurrency": 8, "maxInflight": 64},
        "extraArgs": ["--max-batch-size", "16"],
    },
    "existing-secrets": {
        "existingSecret": "my-keys", "database": {"existingSecret": "my-db"},
        "persistence": {"enabled": True, "existingClaim": "models"},
        "podDisruptionBudget": {"enabled": False}, "service": {"type": "LoadBalancer"},
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"prometheus.io/scrape": "true"},
    },
    "open": {"allowUnauthenticated": True, "adminRoutes": True, "replicaCount": 1},
}  # fmt: skip


def render(values: dict) -> list[dict]:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="demo", namespace="ml")
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml"):
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def validate(doc: dict) -> None:
    for version in K8S:
        kubernetes_validate.validate(doc, version, strict=True)


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in docs}


@pytest.mark.parametrize("name", VALUES)
def test_the_chart_renders_valid_manifests(name: str) -> None:
    docs = render(VALUES[name])
    for doc in docs:
        validate(doc)
    kinds = by_kind(docs)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "serve" and args[args.index("--host") + 1] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])}
    assert ("--allow-unauthenticated" in args) == (name == "open")
    assert ("MODELPORT_API_KEYS" in env) == (name != "open")
    assert ("HorizontalPodAutoscaler" in kinds) == (name == "shared-catalogue")
    assert ("replicas" in kinds["Deployment"]["spec"]) == (name != "shared-catalogue")
    assert ("PodDisruptionBudget" in kinds) == (name != "existing-secrets")
    assert ("MODELPORT_DATABASE_URL" in env) == (name in ("shared-catalogue", "existing-secrets"))
    if name == "shared-catalogue":
        assert args[1:3] == ["digits", "mlp@staging"] and args[-2:] == ["--max-batch-size", "16"]
        assert kinds["Secret"]["stringData"]["url"].startswith("postgresql://")
        assert kinds["ConfigMap"]["data"]["MODELPORT_RATE_LIMIT"] == "100"
        assert "PersistentVolumeClaim" in kinds
    if name == "existing-secrets":
        assert env["MODELPORT_API_KEYS"]["name"] == "my-keys"
        assert env["MODELPORT_DATABASE_URL"]["name"] == "my-db"
        assert "Secret" not in kinds and "PersistentVolumeClaim" not in kinds


def test_the_chart_refuses_an_open_server_unless_asked() -> None:
    from helm_python.errors import HelmError

    with pytest.raises(HelmError, match="give apiKeys .* or set allowUnauthenticated=true"):
        render({})


def test_validation_catches_a_broken_manifest() -> None:
    deployment = by_kind(render(VALUES["minimal"]))["Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_helm_lint_finds_no_error() -> None:
    import helm_python as helm

    report = helm.lint(str(CHART), VALUES["minimal"], strict=True)
    assert report["errors"] == []
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]


def test_the_kserve_manifests() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(KSERVE)], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    kinds = by_kind([doc for doc in yaml.safe_load_all(built) if doc])
    runtime, service = kinds["ServingRuntime"], kinds["InferenceService"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    predictor = service["spec"]["predictor"]
    assert predictor["model"]["runtime"] == runtime["metadata"]["name"]
    assert predictor["model"]["modelFormat"]["name"] in formats
    assert predictor["model"]["protocolVersion"] in runtime["spec"]["protocolVersions"]
    # the CRDs have no schema in kubernetes-validate: their Kubernetes parts are checked as a Pod
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "modelport"},
           "spec": {"containers": runtime["spec"]["containers"]}}  # fmt: skip
    validate(pod)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(service, K8S[-1], strict=True)
    container = runtime["spec"]["containers"][0]
    assert container["name"] == "kserve-container" and "/mnt/models" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_charts_command_starts_a_server(tmp_path, served_registry) -> None:
    kinds = by_kind(render({**VALUES["minimal"], "limits": {"rate": 0.01, "burst": 2}}))
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {**os.environ, **kinds["ConfigMap"]["data"],
           "MODELPORT_HOME": str(served_registry.settings.home),
           "MODELPORT_API_KEYS": kinds["Secret"]["stringData"]["MODELPORT_API_KEYS"]}  # fmt: skip
    log = tmp_path / "serve.log"
    probe = container["readinessProbe"]["httpGet"]["path"]

    def start(port: int, grpc: int) -> tuple[subprocess.Popen, int]:
        ports = {"8080": str(port), "8081": str(grpc)}
        args = [ports.get(a, a) for a in container["args"]]
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "modelport", *args], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        wait_started(proc, log, lambda: _answers(f"http://127.0.0.1:{port}{probe}"))
        return proc, port

    proc, port = on_free_ports(start, count=2)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/v2/models/mlp", timeout=5).status_code == 401
        key = {"X-API-Key": KEY.split(":", 1)[1]}
        replies = [httpx.get(f"http://127.0.0.1:{port}/v2/models/mlp", timeout=5, headers=key)
                   for _ in range(3)]  # fmt: skip
        assert replies[0].json()["name"] == "mlp"
        # the ConfigMap's limits: a token per 100 s, so no pause between the three refills one
        assert [r.status_code for r in replies] == [200, 200, 429]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
