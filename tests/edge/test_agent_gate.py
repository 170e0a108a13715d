"""Every bad release is refused with its reason reported, and the device keeps serving."""

from __future__ import annotations

import http.client
import json
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from modelport.edge.client import FleetClient
from modelport.edge.fleet import control
from modelport.edge.keys import KeyStore
from modelport.errors import Forbidden, Unauthorized
from modelport.registry import fleet as t
from tests.edge.agentkit import answer, make_agent
from tests.edge.conftest import make_bundle
from tests.edge.fleetkit import deploy_now, fleet_server
from tests.edge.models import weights


@pytest.fixture
def world(store, tmp_path):
    """A fleet server, an agent running release 1, and a way to offer it anything else."""
    with fleet_server(tmp_path / "home", root=store.root_bytes(1)) as (fleet, url):
        token = fleet.create_token("test")
        good = fleet.add_release(make_bundle(store, tmp_path, seed=1, out="good.bundle").path)
        agent = make_agent(url, token, tmp_path, max_memory_mb=64)
        deploy_now(fleet, good)
        assert agent.step() == "installed"
        yield fleet, url, agent, good, token


def offer(world, bundle, expect_reason: str) -> None:
    """Deploy ``bundle`` (a file, or a release already on the server) and expect a refusal."""
    fleet, _, agent, good, _ = world
    before = answer(agent)
    release = bundle if isinstance(bundle, dict) else fleet.add_release(bundle)
    deployment = deploy_now(fleet, release)
    assert agent.step() == "rejected"
    assert agent.serving.release_id == good["id"]
    np.testing.assert_array_equal(answer(agent), before)  # still serving the good model
    status = control.status(fleet, deployment)
    row = status["devices"][0]
    assert row["status"] == "failed" and row["error"].startswith(expect_reason), row["error"]
    assert row["current"] == good["id"]
    assert status["state"] == "halted"  # one device of one: the wave's failure rate is 100%
    device = fleet.devices()[0]
    assert device["last_error"].startswith(expect_reason)


def test_a_tampered_file_on_the_server(world, store, tmp_path):
    fleet = world[0]
    bundle = make_bundle(store, tmp_path, seed=2, out="t.bundle")
    release = fleet.add_release(bundle.path)
    weights_file = next(f for f in release["files"] if f["path"] == "model/w2.bin")
    blob = fleet.blobs.path(weights_file["sha256"])
    blob.chmod(0o644)
    blob.write_bytes(b"\x00" * weights_file["size"])
    offer(world, release, "tampered")


def test_a_bundle_signed_by_an_unknown_key(world, tmp_path):
    stranger = KeyStore(tmp_path / "stranger")
    stranger.generate()
    offer(world, make_bundle(stranger, tmp_path, seed=2, out="s.bundle").path, "untrusted-key")


def test_a_bundle_signed_by_a_revoked_key(world, store, tmp_path):
    fleet, _, agent, _, _ = world
    old = store.active()
    store.rotate()
    rotated = fleet.add_release(make_bundle(store, tmp_path, seed=3, out="r.bundle").path)
    deploy_now(fleet, rotated)
    assert agent.step() == "installed"  # the device learnt root version 2 from this release
    world = (fleet, world[1], agent, rotated, world[4])
    revoked = make_bundle(store, tmp_path, seed=4, out="old.bundle", keyid=old.keyid)
    offer(world, revoked.path, "untrusted-key")


def test_an_older_release_offered_again(store, tmp_path):
    older = make_bundle(store, tmp_path, seed=0, out="older.bundle")  # release 1
    with fleet_server(tmp_path / "home", root=store.root_bytes(1)) as (fleet, url):
        token = fleet.create_token("test")
        good = fleet.add_release(make_bundle(store, tmp_path, seed=1, out="good.bundle").path)
        agent = make_agent(url, token, tmp_path)
        deploy_now(fleet, good)
        assert agent.step() == "installed"
        offer((fleet, url, agent, good, token), older.path, "rollback")


def test_stale_metadata(world, store, tmp_path):
    stale = make_bundle(store, tmp_path, seed=2, out="st.bundle", expires=timedelta(seconds=-5))
    offer(world, stale.path, "stale")


def test_metadata_from_two_releases(world, store, tmp_path):
    fleet = world[0]
    first = fleet.add_release(make_bundle(store, tmp_path, seed=2, out="m1.bundle").path)
    second_bundle = make_bundle(store, tmp_path, seed=3, out="m2.bundle")
    second = fleet.add_release(second_bundle.path)
    mixed = {**first["metadata"], "targets.json": second["metadata"]["targets.json"]}
    with fleet.engine.begin() as conn:
        conn.execute(
            sa.update(t.releases).where(t.releases.c.id == second["id"]).values(metadata=mixed)
        )
    fleet._releases.clear()
    offer(world, fleet.release(second["id"]), "mixed-release")


def test_a_release_over_the_download_cap(world, store, tmp_path):
    fleet, url, _, good, token = world
    big = make_agent(url, token, tmp_path, device_id="dev-small", max_download_mb=0.001)
    deploy_now(fleet, good)
    assert big.step() == "rejected" and big.serving is None
    assert big.last_error.startswith("too-large")


def test_a_variant_for_another_hardware_class(world, store, tmp_path):
    offer(
        world,
        make_bundle(store, tmp_path, seed=2, out="arm.bundle", hardware=["arm"]).path,
        "wrong-hardware",
    )


def test_a_model_that_fails_its_golden_set(world, store, tmp_path):
    wrong = {"y": np.zeros((8, 3), np.float32)}
    offer(
        world,
        make_bundle(store, tmp_path, seed=2, out="g.bundle", expected=wrong).path,
        "golden-mismatch",
    )


def test_nan_outputs(world, store, tmp_path):
    offer(
        world, make_bundle(store, tmp_path, seed=2, out="nan.bundle", nan=True).path, "non-finite"
    )


def test_a_model_over_the_memory_budget(world, store, tmp_path):
    huge = weights(2, hidden=600_000)  # about 17 MB of weights for a device that allows 4 MB
    fleet, url, _, good, token = world
    small = make_agent(url, token, tmp_path, device_id="dev-tiny", max_memory_mb=4)
    release = fleet.add_release(make_bundle(store, tmp_path, params=huge, out="h.bundle").path)
    deploy_now(fleet, release)
    assert small.step() == "rejected" and small.last_error.startswith("over-memory")


def test_unknown_and_revoked_devices_are_refused(world):
    fleet, url, agent, _, _ = world
    with pytest.raises(Unauthorized, match="401"):
        FleetClient(url, "dev-1:wrong-secret").poll()
    with pytest.raises(Unauthorized, match="401"):
        FleetClient(url, "nobody:x").poll()
    fleet.revoke_device("dev-1")
    with pytest.raises(Forbidden):
        fleet.authenticate(agent.client.token)
    with pytest.raises(Unauthorized, match="403"):
        agent.client.poll()
    assert answer(agent).shape == (8, 3)  # it still serves locally


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"health": "sunny"}',
        b'{"current": -3}',
        b'{"metrics": {"a": "b"}}',
        b'{"outcome": {"release": 1}}',
        b'{"surprise": 1}',
        b'{"last_error": 5}',
    ],
)
def test_malformed_reports_are_400_with_a_reason(world, body):
    _, url, agent, _, _ = world
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request(
        "POST", "/v1/report", body=body, headers={"Authorization": f"Bearer {agent.client.token}"}
    )
    response = conn.getresponse()
    reply = json.loads(response.read())
    conn.close()
    assert response.status == 400 and reply["error"]
    assert world[0].devices()[0]["health"] == "ok"  # nothing recorded
