"""Model-repository folders: a Triton-layout tree served without a catalogue and polled."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from modelport.serving.repository import FolderRepository
from tests.conftest import invoke_cli, make_mlp_onnx
from tests.serving.conftest import running_app
from tests.serving.launch import launched

X = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
POLL = "0.3"


def triton_tree(root: Path, names=("alpha", "beta", "gamma"), versions=(1, 2)) -> Path:
    for name in names:
        (root / name / "config.pbtxt").parent.mkdir(parents=True, exist_ok=True)
        (root / name / "config.pbtxt").write_text(f'name: "{name}"\nplatform: "onnxruntime_onnx"\n')
        for version in versions:
            (root / name / str(version)).mkdir()
            make_mlp_onnx(root / name / str(version) / "model.onnx", seed=version)
    return root


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_for(check, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_triton_tree_served_polled_and_swapped_under_load(tmp_path: Path) -> None:
    import tritonclient.http as httpclient

    repo = triton_tree(tmp_path / "models")
    args = ["--model-repository", str(repo), "--policy", "latest:2", "--poll-interval", POLL]
    with launched(args, tmp_path / "home") as server:
        base = f"http://{server.http}"
        _, index = get(f"{base}/v2/repository/index")
        ready = sorted((row["name"], row["version"]) for row in index if row["state"] == "READY")
        assert ready == [(n, v) for n in ("alpha", "beta", "gamma") for v in ("1", "2")]
        assert not (tmp_path / "home" / "registry.db").exists()  # no catalogue was opened

        stop, outcomes, versions = threading.Event(), {"ok": 0, "failed": []}, set()

        def client_loop() -> None:  # bounded: 20000 requests or 120 s; stopped once swapped
            client = httpclient.InferenceServerClient(server.http)
            deadline = time.monotonic() + 120
            for i in range(20000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                tensor = httpclient.InferInput("input", list(X.shape), "FP32")
                tensor.set_data_from_numpy(X)
                try:
                    if i % 2:
                        result = client.infer("gamma", [tensor])
                        versions.add(result.get_response()["model_version"])
                    else:
                        client.infer("alpha", [tensor], model_version="1")
                    outcomes["ok"] += 1
                except Exception as exc:  # every failure is counted, none hidden
                    outcomes["failed"].append(repr(exc))
            client.close()

        loop = threading.Thread(target=client_loop)
        loop.start()
        try:
            new = repo / "gamma" / "3"
            new.mkdir()
            partial = make_mlp_onnx(new / "model.onnx.part", seed=3)  # a copy in progress
            time.sleep(4 * float(POLL))
            assert get(f"{base}/v2/models/gamma/versions/3/ready")[0] == 404
            os.rename(partial, new / "model.onnx")
            assert wait_for(lambda: get(f"{base}/v2/models/gamma")[1].get("versions") == ["2", "3"])
            assert wait_for(lambda: "3" in versions)
        finally:
            stop.set()
            loop.join(60)
        assert outcomes["failed"] == [] and outcomes["ok"] > 20
        assert get(f"{base}/v2/models/gamma/versions/1/ready")[0] == 404  # latest:2 retired it
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'model="gamma"' in metrics


def test_bad_folders_are_logged_once_and_the_rest_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = triton_tree(tmp_path / "models", names=("good",), versions=(1,))
    (repo / "good" / "2").mkdir()
    make_mlp_onnx(repo / "good" / "2" / "model.onnx")
    make_mlp_onnx(repo / "good" / "2" / "extra.onnx")  # two model files
    (repo / "good" / "3").mkdir()
    (repo / "good" / "3" / "README").write_text("no model here")  # none
    (repo / "good" / "latest").mkdir()  # not a version number
    (repo / "bad name").mkdir()
    (repo / "openvino" / "1").mkdir(parents=True)
    (repo / "openvino" / "1" / "model.xml").write_text("<net/>")  # no .bin beside it
    folder = FolderRepository(repo, settle=0.0)
    with caplog.at_level(logging.WARNING, "modelport.serving"):
        assert {s.name: s.latest for s in folder.list_models()} == {"good": 1}
        folder.list_models()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5, messages  # each problem logged once, not on every poll
    text = "\n".join(messages)
    assert "good/2: skipped: 2 model files (['extra.onnx', 'model.onnx'])" in text
    assert "good/3: skipped: no model file; a version folder holds exactly one of" in text
    assert "latest: skipped: a version folder is named by a positive integer" in text
    assert "bad name: skipped: model name 'bad name' is not valid" in text
    assert "model.xml has no model.bin beside it" in text


def test_a_new_version_is_taken_only_once_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scans read a clock the test moves, so a test process descheduled between two scans
    cannot make a listing look settled sooner than the steps below say."""
    from modelport.serving import repository

    now = [time.time()]
    monkeypatch.setattr(repository, "time", SimpleNamespace(time=lambda: now[0]))
    repo = triton_tree(tmp_path / "models", names=("m",), versions=(1,))
    hour_ago = time.time() - 3600
    os.utime(repo / "m" / "1" / "model.onnx", (hour_ago, hour_ago))
    folder = FolderRepository(repo, settle=1.0)
    assert sorted(folder.scan()["m"]) == [1]  # present at start-up and untouched: taken at once
    (repo / "m" / "2").mkdir()
    make_mlp_onnx(repo / "m" / "2" / "model.onnx")
    assert sorted(folder.scan()["m"]) == [1]  # just written
    now[0] += 0.3
    make_mlp_onnx(repo / "m" / "2" / "model.onnx", n_hidden=16)  # still being written
    assert sorted(folder.scan()["m"]) == [1]
    now[0] += 0.3
    assert sorted(folder.scan()["m"]) == [1]  # 0.6 s since it appeared, 0.3 s since it changed
    now[0] += 0.69
    assert sorted(folder.scan()["m"]) == [1]  # 0.99 s since it changed
    now[0] += 0.02
    assert sorted(folder.scan()["m"]) == [1, 2]
    record = folder.resolve("m:2")
    assert (record.format, folder.path(record)) == ("onnx", repo / "m" / "2" / "model.onnx")


@pytest.mark.anyio
async def test_model_dir_as_kserve_hands_it(tmp_path: Path) -> None:
    mount = tmp_path / "mnt" / "models"
    mount.mkdir(parents=True)
    make_mlp_onnx(mount / "model.onnx")
    folder = FolderRepository(mount, settle=0.0, name="digits", single=True)
    async with running_app(folder) as client:
        reply = await client.post("/v2/models/digits/infer", json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": X.ravel().tolist()}
        ]})  # fmt: skip
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_version"] == "1"
        status = await client.get("/v1/models/digits")  # TF Serving REST on the same folder
        assert status.json()["model_version_status"][0]["version"] == "1"
        rollout = await client.get("/v2/rollouts/digits")
        assert rollout.status_code == 400 and "need a catalogue" in rollout.json()["error"]


def test_cli_refuses_a_missing_folder_and_conflicting_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    def cli(*args: str) -> tuple[int, str, str]:
        return invoke_cli(monkeypatch, capsys, "--home", str(tmp_path / "home"), *args)

    code, out, err = cli("serve", "--model-repository", str(tmp_path / "nowhere"))
    assert code != 0 and "is not a folder" in out + err and "Traceback" not in out + err
    code, out, err = cli("serve", "--model-repository", str(tmp_path),
                                "--model-dir", str(tmp_path))  # fmt: skip
    assert code != 0 and "not both" in out + err
    code, out, err = cli("serve", "--model-dir", str(tmp_path), "--model-name", "a b")
    assert code != 0 and "'a b' is not valid" in out + err


@pytest.mark.anyio
async def test_a_gguf_version_answers_the_openai_routes(tmp_path: Path) -> None:
    from modelport.generation.options import EngineOptions
    from tests.generation.conftest import smollm2_path

    repo = triton_tree(tmp_path / "models", names=("mlp",), versions=(1,))
    (repo / "chat" / "1").mkdir(parents=True)
    (repo / "chat" / "1" / "smollm2.gguf").symlink_to(smollm2_path())
    folder = FolderRepository(repo, settle=0.0)
    engine = EngineOptions(slots=1, context=256, threads=1)
    async with running_app(folder, generation=engine) as client:
        listed = (await client.get("/v1/models")).json()
        assert [m["id"] for m in listed["data"]] == ["chat"]
        reply = await client.post("/v1/chat/completions", json={
            "model": "chat", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}],
        })  # fmt: skip
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] >= 1
        index = (await client.get("/v2/repository/index")).json()  # the tensor models' index
        assert [(r["name"], r["state"]) for r in index] == [("chat", "UNAVAILABLE"),
                                                            ("mlp", "READY")]  # fmt: skip


@pytest.mark.anyio
async def test_openvino_ir_beside_onnx_gives_the_same_answers(tmp_path: Path) -> None:
    import openvino as ov

    repo = triton_tree(tmp_path / "models", names=("mlp",), versions=(1,))
    (repo / "ir" / "1").mkdir(parents=True)
    ov.save_model(ov.convert_model(str(repo / "mlp" / "1" / "model.onnx")),
                  str(repo / "ir" / "1" / "model.xml"), compress_to_fp16=False)  # fmt: skip
    folder = FolderRepository(repo, settle=0.0)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                        "data": X.ravel().tolist()}]}  # fmt: skip
    async with running_app(folder) as client:
        meta = (await client.get("/v2/models/ir")).json()
        assert meta["platform"] == "openvino"
        onnx = (await client.post("/v2/models/mlp/infer", json=body)).json()["outputs"][0]
        ir = (await client.post("/v2/models/ir/infer", json=body)).json()["outputs"][0]
    np.testing.assert_allclose(ir["data"], onnx["data"], rtol=1e-5)


@pytest.mark.anyio
async def test_a_removed_version_folder_is_unloaded(tmp_path: Path) -> None:
    import asyncio
    import shutil

    from modelport.serving.config import ServeConfig

    repo = triton_tree(tmp_path / "models", names=("m",), versions=(1, 2))
    folder = FolderRepository(repo, settle=0.0)
    config = ServeConfig(version_policy="latest:2", poll_interval=0.1)
    async with running_app(folder, config=config) as client:
        assert (await client.get("/v2/models/m")).json()["versions"] == ["1", "2"]
        shutil.rmtree(repo / "m" / "2")
        for _ in range(100):  # 10 s at most
            meta = (await client.get("/v2/models/m")).json()
            if meta["versions"] == ["1"]:
                break
            await asyncio.sleep(0.1)
        assert meta["versions"] == ["1"]
        reply = await client.post("/v2/models/m/infer", json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": X.ravel().tolist()}
        ]})  # fmt: skip
        assert reply.json()["model_version"] == "1"
