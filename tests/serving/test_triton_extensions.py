"""Triton's model configuration and statistics extensions, and perf_analyzer against a real
server over HTTP and gRPC."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_mlp_onnx
from tests.serving.launch import Launched, launched

X = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """A folder with mlp (two versions) and batched (dynamic batching up to 8)."""
    tmp = tmp_path_factory.mktemp("triton")
    for name, version in (("mlp", 1), ("mlp", 2), ("batched", 1)):
        (tmp / "models" / name / str(version)).mkdir(parents=True)
        make_mlp_onnx(tmp / "models" / name / str(version) / "model.onnx", seed=version)
    args = ["--model-repository", str(tmp / "models"), "--policy", "latest:2",
            "--batch", "batched=8:300"]  # fmt: skip
    with launched(args, tmp / "home", models=("mlp", "batched")) as server:
        yield server


def test_config_over_http_and_grpc(server: Launched) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(server.http)
    config = http.get_model_config("mlp")
    assert config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] == 0
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [-1, 4]}]
    assert config["version_policy"] == {"latest": {"num_versions": 2}}
    batched = http.get_model_config("batched")
    assert batched["max_batch_size"] == 8 and batched["input"][0]["dims"] == [4]
    assert batched["dynamic_batching"] == {"max_queue_delay_microseconds": 300}
    grpc = grpcclient.InferenceServerClient(server.grpc)
    over_grpc = grpc.get_model_config("batched", as_json=True)["config"]
    assert over_grpc["max_batch_size"] == 8 and over_grpc["input"][0]["dims"] == ["4"]
    assert over_grpc["input"][0]["data_type"] == "TYPE_FP32"
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="not served"):
        http.get_model_config("nope")
    with pytest.raises(InferenceServerException, match="not served"):
        grpc.get_model_config("nope")
    http.close()
    grpc.close()


def test_trailing_slash_and_405_allow_still_hold(server: Launched) -> None:
    import json
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(f"http://{server.http}/v2/", timeout=5) as reply:
        extensions = json.loads(reply.read())["extensions"]
        assert {"model_configuration", "statistics"} <= set(extensions)
    request = urllib.request.Request(f"http://{server.http}/v2/models/mlp/config", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 405 and caught.value.headers["allow"] == "GET"


def test_statistics_count_requests_and_nanoseconds(server: Launched) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(server.http)
    before = http.get_inference_statistics("mlp", "1")["model_stats"][0]
    for _ in range(5):
        tensor = httpclient.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(X)
        http.infer("mlp", [tensor], model_version="1")
    bad = httpclient.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(X[:, :3])
    with pytest.raises(Exception, match="input"):
        http.infer("mlp", [bad], model_version="1")
    after = http.get_inference_statistics("mlp", "1")["model_stats"][0]
    stats, old = after["inference_stats"], before["inference_stats"]
    assert stats["success"]["count"] - old["success"]["count"] == 5
    assert stats["fail"]["count"] - old["fail"]["count"] == 1
    assert stats["success"]["ns"] > old["success"]["ns"] and stats["fail"]["ns"] > 0
    assert after["execution_count"] - before["execution_count"] == 5
    assert after["inference_count"] - before["inference_count"] == 5
    assert stats["compute_infer"]["ns"] > old["compute_infer"]["ns"]
    assert after["last_inference"] > before["last_inference"]
    every = http.get_inference_statistics("mlp")["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [("mlp", "1"), ("mlp", "2")]
    everything = http.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in everything} == {"mlp", "batched"}
    grpc = grpcclient.InferenceServerClient(server.grpc)
    over_grpc = grpc.get_inference_statistics("mlp", "1", as_json=True)["model_stats"][0]
    assert int(over_grpc["inference_stats"]["success"]["count"]) == stats["success"]["count"]
    http.close()
    grpc.close()


def perf_analyzer() -> tuple[str, dict[str, str]] | None:
    """The perf_analyzer of the tritonclient wheel and the environment it starts in (it links
    libcudart, which nvidia-cuda-runtime-cu12 ships), or None if it cannot start here."""
    import os
    import shutil
    import sys

    binary = shutil.which("perf_analyzer", path=str(Path(sys.executable).parent))
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if binary is None or spec is None or not spec.submodule_search_locations:
        return None
    lib = str(Path(next(iter(spec.submodule_search_locations))) / "lib")
    env = {**os.environ, "LD_LIBRARY_PATH": lib}
    probe = subprocess.run([binary, "--version"], capture_output=True, text=True, env=env)
    return (binary, env) if probe.returncode == 0 else None


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_measures_the_server(server: Launched, protocol: str) -> None:
    found = perf_analyzer()
    if found is None:
        pytest.skip("perf_analyzer cannot start: install nvidia-cuda-runtime-cu12 and libb64-0d")
    binary, env = found
    url = server.http if protocol == "http" else server.grpc
    # loose stability: this checks that perf_analyzer runs and reports, not how fast (benchmarks/)
    command = [binary, "-m", "batched", "-u", url, "-i", protocol, "-b", "2",
               "--measurement-mode", "count_windows", "--measurement-request-count", "100",
               "--stability-percentage", "1000", "--max-trials", "10"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    throughput = re.search(r"Throughput: ([\d.]+) infer/sec", out.stdout)
    assert throughput and float(throughput.group(1)) > 0, out.stdout
    served = re.search(r"Server:\s+Inference count: (\d+)", out.stdout)  # from the stats calls
    assert served and int(served.group(1)) >= 200, out.stdout


@pytest.mark.anyio
async def test_config_and_stats_during_a_rollout(sqlite_registry, tmp_path: Path) -> None:
    """The plain URL reaches a traffic split then: config describes its stable version."""
    from modelport import rollouts
    from tests.rollouts.conftest import fill
    from tests.rollouts.test_traffic import LENIENT, served, split_of

    versions = fill(sqlite_registry, tmp_path / "models")
    rollouts.start(sqlite_registry, "digits", f"digits:{versions['disagreeing']}",
                   plan="canary 50 600s", gates=LENIENT)  # fmt: skip
    async with served(sqlite_registry) as (models, client):
        await split_of(models)
        config = await client.get("/v2/models/digits/config")
        assert config.status_code == 200, config.text
        assert config.json()["name"] == "digits" and config.json()["max_batch_size"] == 0
        stats = await client.get("/v2/models/digits/stats")
        assert stats.status_code == 200 and len(stats.json()["model_stats"]) >= 2
