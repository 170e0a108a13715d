"""Staged rollout: a bad variant halts after the first wave; nobody else ever gets it."""

from __future__ import annotations

import time

from modelport.edge.fleet import control
from tests.edge.agentkit import make_agent
from tests.edge.conftest import make_bundle
from tests.edge.fleetkit import deploy_now, fleet_server


def test_a_bad_variant_halts_after_the_first_wave(store, tmp_path):
    with fleet_server(tmp_path / "home", root=store.root_bytes(1)) as (fleet, url):
        token = fleet.create_token("cameras")
        good = fleet.add_release(make_bundle(store, tmp_path, seed=1, out="good.bundle").path)
        bad = fleet.add_release(
            make_bundle(store, tmp_path, seed=2, out="bad.bundle", nan=True).path
        )
        agents = [
            make_agent(url, token, tmp_path, device_id=f"cam-{i:02d}", group="cameras")
            for i in range(20)
        ]
        deploy_now(fleet, good, group="cameras")
        assert [a.step() for a in agents] == ["installed"] * 20

        deployment = fleet.deploy(
            "mlp:2",
            ["cameras"],
            [10, 50, 100],
            wait=0.3,
            variants={"x86": bad["id"]},
            threshold=0.2,
        )
        deadline = time.monotonic() + 30
        while control.status(fleet, deployment)["state"] == "running":
            assert time.monotonic() < deadline, "the deployment never halted"
            for agent in agents:
                agent.step()
            control.tick(fleet, deployment)
        for _ in range(3):  # a few more polls: a halted deployment offers nothing new
            for agent in agents:
                agent.step()
        status = control.status(fleet, deployment)

    assert status["state"] == "halted" and "wave 1" in status["reason"]
    first = {d["device_id"] for d in status["devices"] if d["wave"] == 0}
    assert len(first) == 2  # 10% of 20
    assert [w["started"] for w in status["waves"]] == [True, False, False]
    assert status["waves"][0]["failed"] >= 1 and status["waves"][1]["pending"] > 0
    tried = {a.config.device_id for a in agents if str(bad["id"]) in a.state()["rejected"]}
    assert tried and tried <= first  # only first-wave devices ever ran it (the halt may come
    # before the second one of the wave starts)
    for agent in agents:
        assert agent.serving.release_id == good["id"]  # everyone runs the previous model
        if agent.config.device_id in tried:
            assert "non-finite" in agent.state()["rejected"][str(bad["id"])]
    reported = {d["id"]: d for d in fleet.devices()}
    assert all(reported[f"cam-{i:02d}"]["current"] == good["id"] for i in range(20))


def test_halt_resume_and_rollback_by_command(store, tmp_path):
    with fleet_server(tmp_path / "home", root=store.root_bytes(1)) as (fleet, url):
        token = fleet.create_token("cameras")
        first = fleet.add_release(make_bundle(store, tmp_path, seed=1, out="1.bundle").path)
        second = fleet.add_release(make_bundle(store, tmp_path, seed=2, out="2.bundle").path)
        agents = [
            make_agent(url, token, tmp_path, device_id=f"gw-{i}", group="gw") for i in range(4)
        ]
        deploy_now(fleet, first, group="gw")
        assert [a.step() for a in agents] == ["installed"] * 4
        deployment = fleet.deploy(
            "mlp", ["gw"], [50, 100], wait=0.0, variants={"x86": second["id"]}
        )
        assert control.command(fleet, deployment, "halt") == "halted"
        assert [a.step() for a in agents] == ["idle"] * 4  # halted before anyone started
        assert control.command(fleet, deployment, "resume") == "running"
        for _ in range(3):
            for agent in agents:
                agent.step()
            control.tick(fleet, deployment)
        assert {a.serving.release_id for a in agents} == {second["id"]}
        assert control.status(fleet, deployment)["state"] == "done"
        assert control.command(fleet, deployment, "rollback") == "rolled-back"
        for agent in agents:
            agent.step()
        assert {a.serving.release_id for a in agents} == {first["id"]}
        assert {d["current"] for d in fleet.devices()} == {first["id"]}
