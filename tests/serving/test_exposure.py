"""Secure by default: a server open to the network needs keys or says so; admin routes then stay
off unless asked for; admin routes' use is audited with the key's name and the client address."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import modelport
from modelport.errors import Forbidden, InvalidInput
from modelport.registry import Registry
from modelport.serving.auth import ApiKeys
from modelport.serving.exposure import guard, is_loopback
from modelport.settings import Settings
from tests.conftest import invoke_cli, make_mlp_onnx
from tests.ports import free_port
from tests.rollouts.servers import serve
from tests.serving.conftest import running_app, v2_input

BODY = {"inputs": [v2_input(np.ones((1, 4), np.float32))]}
OPS_KEY, APP_KEY = "ops-secret-0123", "app-secret-4567"


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("no-such-host.invalid")


def test_guard_rules() -> None:
    with pytest.raises(InvalidInput, match="refusing to serve 0.0.0.0 without API keys") as info:
        guard("0.0.0.0", ApiKeys())
    assert "\n" not in str(info.value) and "--api-key admin:KEY" in str(info.value)
    assert guard("127.0.0.1", ApiKeys()).admin_routes
    assert not guard("127.0.0.1", ApiKeys(), admin_routes=False).admin_routes
    opened = guard("0.0.0.0", ApiKeys(), allow_unauthenticated=True)
    assert not opened.admin_routes and opened.enabled and not opened.required
    opened.check(None, "infer")
    with pytest.raises(Forbidden, match="admin routes are off"):
        opened.check(None, "admin")
    assert guard("0.0.0.0", ApiKeys(), allow_unauthenticated=True, admin_routes=True).admin_routes
    keyed = guard("::", ApiKeys.parse([f"admin:{OPS_KEY}"]))
    assert keyed.admin_routes and keyed.required


def test_cli_refuses_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    code, out, err = invoke_cli(monkeypatch, capsys, "--home", str(tmp_path), "serve",
                                "--host", "0.0.0.0", "--http-port", str(free_port()))  # fmt: skip
    assert code == 1 and err.count("\n") == 1 and out == ""
    assert err.startswith("error: refusing to serve 0.0.0.0 without API keys: add --api-key")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("exposed")
    reg = Registry(Settings(home=tmp / "home", user="tester"))
    modelport.register(make_mlp_onnx(tmp / "mlp.onnx"), "mlp", registry=reg, alias="production")
    reg.close()
    return tmp / "home"


@pytest.mark.parametrize("admin", [False, True], ids=["admin-off", "admin-asked-for"])
def test_an_unauthenticated_network_server(home, admin: bool) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    extra = ["--admin-routes"] if admin else []
    server = serve(home, "--host", "0.0.0.0", "--allow-unauthenticated", *extra, grpc=True)
    try:
        assert ("admin routes off" in server.output()) != admin
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.post("/v2/models/mlp/infer", json=BODY).status_code == 200
            index = client.get("/v2/repository/index")
            unload = client.post("/v2/repository/models/mlp/unload")
            if not admin:
                assert index.status_code == unload.status_code == 403
                assert "admin routes are off" in unload.json()["error"]
                assert client.post("/v2/models/mlp/infer", json=BODY).status_code == 200
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            if admin:
                assert index.status_code == unload.status_code == 200
                grpc.load_model("mlp")
            else:
                with pytest.raises(InferenceServerException, match="admin routes are off"):
                    grpc.unload_model("mlp")
                assert grpc.is_model_ready("mlp")
        finally:
            grpc.close()
    finally:
        assert server.stop() == 0


@pytest.mark.anyio
async def test_admin_routes_are_audited(served_registry: Registry) -> None:
    keys = ApiKeys.parse([f"ops=admin:{OPS_KEY}", f"app=infer:{APP_KEY}"])
    before = served_registry.audit.entries()[-1].id if served_registry.audit.entries() else 0
    async with running_app(served_registry, api_keys=keys) as client:
        ops, app = {"X-API-Key": OPS_KEY}, {"X-API-Key": APP_KEY}
        assert (await client.post("/v2/repository/models/pair/unload", headers=ops)).is_success
        assert (await client.post("/v2/repository/models/pair/load", headers=ops)).is_success
        assert (await client.post("/v2/repository/models/pair/unload", headers=app)).status_code \
            == 403  # fmt: skip
        assert (await client.post("/v2/repository/models/nope/load", headers=ops)).status_code \
            == 404  # fmt: skip
        assert (await client.post("/v2/models/mlp/infer", json=BODY, headers=app)).is_success
        started = await client.post("/v2/rollouts/mlp", headers=ops, json={
            "candidate": "mlp@staging", "plan": "canary 50 60s"})  # fmt: skip
        assert started.status_code == 201, started.text
        assert (await client.post("/v2/rollouts/mlp/abort", headers=ops)).is_success
        for method in ("POST", "PUT", "DELETE", "PATCH"):  # no route writes the audit log
            assert (await client.request(method, "/v2/audit", headers=ops)).status_code == 404
    entries = [e for e in served_registry.audit.entries() if e.id > before]
    rows = [(e.action, e.actor, e.model, e.detail.get("status")) for e in entries]
    assert rows == [
        ("unload", "ops", "pair", 200), ("load", "ops", "pair", 200),
        ("admin_denied", "app", "pair", 403), ("load", "ops", "nope", 404),
        ("rollout_start", "ops", "mlp", None), ("admin_request", "ops", "mlp", 201),
        ("rollout_abort", "ops", "mlp", None), ("admin_request", "ops", "mlp", 200),
    ]  # fmt: skip
    assert all(e.source.startswith("127.0.0.1:") for e in entries)
    assert entries[-4].detail["candidate"] == 2 and entries[-1].detail["path"] == \
        "/v2/rollouts/mlp/abort"  # fmt: skip
