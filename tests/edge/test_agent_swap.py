"""A good release swaps in under load with no local request dropped; offline keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
import time

import numpy as np

from modelport.edge.agent.run import serve
from tests.edge.agentkit import make_agent
from tests.edge.conftest import make_bundle
from tests.edge.fleetkit import deploy_now, fleet_server
from tests.edge.models import sample
from tests.rollouts.servers import wait_for


def start_local(agent):
    """The agent's local endpoint and poll loop, as ``modelport edge agent`` runs them."""
    loop = asyncio.new_event_loop()
    port: list[int] = []
    task = loop.create_task(serve(agent, "127.0.0.1", 0, started=port.append))

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not port and time.monotonic() < deadline:
        time.sleep(0.01)

    def stop() -> None:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)

    return port[0], stop


def infer(conn: http.client.HTTPConnection) -> tuple[int, dict]:
    x = sample()["x"]
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }
    conn.request(
        "POST",
        "/v2/models/mlp/infer",
        body=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_a_good_swap_drops_no_request_under_load(store, tmp_path):
    with fleet_server(tmp_path / "home", interval=0.2, root=store.root_bytes(1)) as (fleet, url):
        token = fleet.create_token("t")
        old = fleet.add_release(make_bundle(store, tmp_path, seed=1, out="1.bundle").path)
        new = fleet.add_release(make_bundle(store, tmp_path, seed=2, out="2.bundle").path)
        agent = make_agent(url, token, tmp_path)
        deploy_now(fleet, old)
        assert agent.step() == "installed"
        expected = {r["id"]: agent.serving.runtime.predict(sample())["y"] for r in (old,)}
        port, stop = start_local(agent)
        results: list[tuple[int, str, np.ndarray]] = []
        done = threading.Event()

        def load() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(4000):  # bounded; stops soon after the switch
                if done.is_set():
                    break
                status, reply = infer(conn)
                y = (
                    np.array(reply["outputs"][0]["data"], np.float32).reshape(8, 3)
                    if status == 200
                    else None
                )
                results.append((status, reply.get("model_version"), y))
            conn.close()

        def answered_by(release: dict, at_least: int = 1) -> bool:
            return sum(v == str(release["id"]) for _, v, _ in list(results)) >= at_least

        clients = [threading.Thread(target=load) for _ in range(3)]
        for c in clients:
            c.start()
        try:  # conditions, not sleeps: a busy machine may answer few requests in 0.3 s
            wait_for(lambda: answered_by(old, 20), "the old release to answer under load")
            deploy_now(fleet, new)
            wait_for(lambda: agent.serving.release_id == new["id"], "the switch")
            wait_for(lambda: answered_by(new, 20), "the new release to answer under load")
        finally:
            done.set()
            for c in clients:
                c.join(30)
        stop()
        expected[new["id"]] = agent.serving.runtime.predict(sample())["y"]
    assert agent.serving.release_id == new["id"]
    assert all(status == 200 for status, _, _ in results), "a request failed during the switch"
    versions = [v for _, v, _ in results]
    assert {str(old["id"]), str(new["id"])} <= set(versions), "the load spanned the switch"
    for _, version, y in results:  # each answer is exactly the old model's or the new one's
        np.testing.assert_allclose(y, expected[int(version)], rtol=1e-6)
    assert len(results) >= 50


def test_offline_the_device_serves_and_catches_up(store, tmp_path):
    home = tmp_path / "home"
    with fleet_server(home, root=store.root_bytes(1)) as (fleet, url):
        token = fleet.create_token("t")
        old = fleet.add_release(make_bundle(store, tmp_path, seed=1, out="1.bundle").path)
        new = fleet.add_release(make_bundle(store, tmp_path, seed=2, out="2.bundle").path)
        agent = make_agent(url, token, tmp_path)
        deploy_now(fleet, old)
        assert agent.step() == "installed"
    assert agent.step() == "offline"  # the server is gone
    assert agent.serving.release_id == old["id"] and agent.last_error.startswith("offline")
    port = int(url.rsplit(":", 1)[1])
    with fleet_server(home, root=store.root_bytes(1), port=port) as (fleet, _):
        deploy_now(fleet, fleet.release(new["id"]))
        assert agent.step() == "installed"
        assert agent.serving.release_id == new["id"]
        assert fleet.devices()[0]["current"] == new["id"]
