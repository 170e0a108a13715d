"""API keys: two roles, bearer or X-API-Key, health checks stay open."""

import numpy as np
import pytest

from modelport.errors import Forbidden, InvalidInput, Unauthorized
from modelport.serving.auth import ApiKeys, token_from
from tests.serving.conftest import running_app, v2_input

INFER_KEY, ADMIN_KEY = "infer-key-0123", "admin-key-4567"
BODY = {"inputs": [v2_input(np.ones((1, 4), np.float32))]}


def test_parse_roles_and_check() -> None:
    keys = ApiKeys.parse([f"infer:{INFER_KEY}", f"admin:{ADMIN_KEY}, infer:another-key-89"])
    assert keys.enabled
    assert keys.role_of(INFER_KEY) == "infer" and keys.role_of(ADMIN_KEY.encode()) == "admin"
    assert keys.role_of("another-key-89") == "infer" and keys.role_of("nope-nope-nope") is None
    keys.check(INFER_KEY, "infer")
    keys.check(ADMIN_KEY, "infer")
    keys.check(ADMIN_KEY, "admin")
    with pytest.raises(Forbidden):
        keys.check(INFER_KEY, "admin")
    with pytest.raises(Unauthorized, match="not valid"):
        keys.check("wrong-key-000", "infer")
    with pytest.raises(Unauthorized, match="needs an API key"):
        keys.check(None, "infer")


def test_no_keys_means_an_open_server() -> None:
    keys = ApiKeys.parse(["", " "])
    assert not keys.enabled
    keys.check(None, "admin")


@pytest.mark.parametrize("spec", ["owner:abcdefghij", "abcdefghij", "admin:", "admin:short"])
def test_bad_key_specs_are_rejected(spec: str) -> None:
    with pytest.raises(InvalidInput):
        ApiKeys.parse([spec])


def test_token_from_bearer_or_x_api_key() -> None:
    assert token_from(b"Bearer abc", None) == b"abc"
    assert token_from("bearer  abc ", None) == b"abc"
    assert token_from(None, b"xyz") == b"xyz"
    assert token_from(b"Basic abc", None) is None
    assert token_from(b"Bearer", None) is None
    assert token_from(None, None) is None


@pytest.mark.anyio
async def test_http_routes_enforce_roles(served_registry) -> None:
    keys = ApiKeys.parse([f"infer:{INFER_KEY}", f"admin:{ADMIN_KEY}"])
    bearer = {"Authorization": f"Bearer {INFER_KEY}"}
    async with running_app(served_registry, api_keys=keys) as client:
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 200
        for method, path in [("POST", "/v2/models/mlp/infer"), ("GET", "/v2/models/mlp"),
                             ("GET", "/v2"), ("GET", "/metrics"), ("GET", "/v1/models/mlp"),
                             ("POST", "/v1/models/mlp:predict"), ("GET", "/v2/repository/index"),
                             ("POST", "/v2/repository/models/mlp/load")]:  # fmt: skip
            missing = await client.request(method, path, json=BODY)
            assert missing.status_code == 401, (path, missing.text)
            assert "API key" in missing.json()["error"]
            wrong = await client.request(method, path, json=BODY,
                                         headers={"X-API-Key": "not-the-key-1"})  # fmt: skip
            assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]
        ok = await client.post("/v2/models/mlp/infer", json=BODY, headers=bearer)
        assert ok.status_code == 200
        ok = await client.post("/v2/models/mlp/infer", json=BODY, headers={"X-API-Key": INFER_KEY})
        assert ok.status_code == 200
        denied = await client.get("/v2/repository/index", headers=bearer)
        assert denied.status_code == 403 and "admin" in denied.json()["error"]
        denied = await client.post("/v2/repository/models/mlp/unload", headers=bearer)
        assert denied.status_code == 403
        admin = await client.get("/v2/repository/index",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"})  # fmt: skip
        assert admin.status_code == 200
        assert (await client.get("/v2/models/mlp/ready")).status_code == 401
