"""The live pages (Serving, Rollouts, Fleet, Monitoring) against a real ``modelport serve``
(``tests/ui/livekit.py``), driven by Debian's Chromium, and their JSON APIs over plain HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelport import rollouts
from modelport.registry import Registry
from modelport.settings import Settings
from tests.ui.conftest import ADMIN_KEY, VIEWER_KEY, fill
from tests.ui.livekit import Live, admin_session, serving, shoot, sign_in, unchanged


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """``digits`` and ``iris`` from the dashboard fixtures, each with a rollout of its candidate
    in its first (shadow) step; ``mlp`` with reference statistics for drift."""
    import modelport
    from modelport.monitoring.reference import baseline
    from modelport.rollouts.gates import Gates
    from tests.conftest import make_mlp_onnx

    folder = tmp_path_factory.mktemp("live")
    registry = Registry(Settings(home=folder / "home", user="tester"))
    fill(registry, folder)
    modelport.register(make_mlp_onnx(folder / "mlp.onnx", seed=7), "mlp", registry=registry,
                       alias="production")  # fmt: skip
    rows = np.random.default_rng(0).standard_normal((2000, 4)).astype(np.float32)
    baseline(registry, "mlp:1", rows)
    # the gates want more samples per window than the tests send: nothing moves by itself
    slow, gates = "shadow 20% 600s; canary 50,100 600s", Gates(min_window_samples=5000)
    rollouts.start(registry, "digits", "digits@staging", plan=slow, gates=gates)
    rollouts.start(registry, "iris", "iris:2", plan=slow, gates=gates)
    try:
        with serving(registry) as server:
            yield server
    finally:
        registry.close()


# -- every page --------------------------------------------------------------------------------


def test_every_live_page_navigates(live: Live, page: Any) -> None:
    sign_in(page, live.url, VIEWER_KEY, "/ui/serving")
    nav = page.locator("header nav").inner_text()
    for label in ("Serving", "Rollouts", "Fleet", "Monitoring"):
        assert label in nav
    for path, title in (("/ui/serving", "Serving"), ("/ui/rollouts", "Rollouts"),
                        ("/ui/rollouts/digits", "Rollout of digits"), ("/ui/fleet", "Fleet"),
                        ("/ui/monitoring", "Monitoring")):  # fmt: skip
        answer = page.goto(live.url + path)
        assert answer.status == 200, path
        assert page.locator("h1").inner_text() == title
    page.goto(live.url + "/ui/rollouts/mlp")  # a model without rollouts: an empty state
    assert "no rollout yet" in page.locator("main").inner_text()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than it
    for path in ("/ui/serving", "/ui/rollouts", "/ui/rollouts/digits", "/ui/fleet"):
        page.goto(live.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live.url + "/ui/serving")
    table = page.locator("table").first.inner_text()
    assert "digits" in table and "READY" in table and "mlp" in table
    assert "empty-model" in table  # a model with nothing to load, with its reason
    page.goto(live.url + "/ui/rollouts/digits")
    assert "shadow (20%)" in page.locator("#rollout-state").inner_text()
    assert page.locator("button[data-command]").count() == 0  # a viewer gets no action buttons
    assert "Read-only" in page.locator("main").inner_text()


def test_unknown_names_answer_the_404_page(live: Live, page: Any) -> None:
    sign_in(page, live.url, VIEWER_KEY, "/ui/rollouts")
    for path in ("/ui/rollouts/no-such-model", "/ui/rollouts/bad%20name",
                 "/ui/fleet/deployments/999", "/ui/fleet/deployments/x"):  # fmt: skip
        answer = page.goto(live.url + path)
        assert answer.status == 404, path
        assert page.locator("h1").inner_text() == "Not found"
        assert "Traceback" not in page.content()
    headers = {"x-api-key": VIEWER_KEY}
    for path in ("/ui/api/rollouts/nope", "/ui/api/fleet/deployments/12"):
        answer = httpx.get(live.url + path, headers=headers)
        assert answer.status_code == 404 and "error" in answer.json()


# -- Serving -------------------------------------------------------------------------------------


def test_serving_charts_plot_real_requests(live: Live, page: Any) -> None:
    x = np.random.default_rng(1).standard_normal((4, 4)).astype(np.float32)
    stop = threading.Event()
    sent: list[int] = []

    def traffic() -> None:  # at most 600 requests or 10 s, whichever ends first
        end = time.monotonic() + 10
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and len(sent) < 600 and time.monotonic() < end:
                sent.append(live.infer("digits", x, client=client).status_code)
                time.sleep(0.01)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        sign_in(page, live.url, VIEWER_KEY, "/ui/serving")
        page.wait_for_function(
            "() => (document.querySelector('#chart-latency path.line') || {}).getAttribute?.('d')"
            "?.includes('L')",
            timeout=15_000,
        )
    finally:
        stop.set()
        worker.join()
    assert sent and set(sent) == {200}
    assert page.locator("#chart-rps path.line").count() >= 1
    assert "digits:2" in page.locator("#legend-rps").inner_text()
    shoot(page, "dashboard-serving")
    data = httpx.get(f"{live.url}/ui/api/serving", headers={"x-api-key": VIEWER_KEY}).json()
    digits = data["series"]["versions"]["digits:2"]
    assert max(y for _, y in digits["rps"]) > 0
    assert all(0 < y < 10_000 for _, y in digits["p99_ms"])
    assert all(y == 0 for _, y in digits["error_rate"])
    assert {m["name"] for m in data["models"] if m["state"] == "READY"} >= {"digits", "mlp"}
    last = max(t for _, series in data["series"]["versions"].items() for t, _ in series["rps"])
    newer = httpx.get(f"{live.url}/ui/api/serving?since={int(last * 1000) + 1}",
                      headers={"x-api-key": VIEWER_KEY}).json()["series"]  # fmt: skip
    assert all(t > last for s in newer["versions"].values() for t, _ in s["rps"])
    bad = httpx.get(f"{live.url}/ui/api/serving?since=soon", headers={"x-api-key": VIEWER_KEY})
    assert bad.status_code == 400 and "whole number" in bad.json()["error"]


def test_serving_api_counts_errors(live: Live) -> None:
    bad = np.zeros((2, 5), np.float32)  # the model takes 4 features: a 400 each
    assert {live.infer("iris", bad).status_code for _ in range(5)} == {400}
    headers = {"x-api-key": VIEWER_KEY}
    httpx.get(f"{live.url}/ui/api/serving", headers=headers)
    time.sleep(1.05)  # the next read takes a new sample
    assert live.infer("iris", bad).status_code == 400
    data = httpx.get(f"{live.url}/ui/api/serving", headers=headers).json()
    iris = data["series"]["versions"]["iris:1"]
    assert iris["error_rate"] and iris["error_rate"][-1][1] == 1.0
    assert httpx.get(f"{live.url}/ui/api/serving").status_code == 401  # no key, no figures


def test_serving_page_follows_an_unload_without_reloading(live: Live, page: Any) -> None:
    sign_in(page, live.url, VIEWER_KEY, "/ui/serving")
    state = page.locator('#models [data-ref="iris:1"]')
    assert state.inner_text() == "READY"
    admin = {"x-api-key": ADMIN_KEY}
    repository = f"{live.url}/v2/repository/models/iris"
    assert httpx.post(f"{repository}/unload", headers=admin, timeout=30).status_code == 200
    try:
        page.wait_for_function(
            "() => document.querySelector('#models [data-ref=\"iris:1\"]').textContent"
            " === 'not loaded'"
        )
        assert page.locator("#changed").is_visible()
        index = httpx.get(f"{live.url}/ui/api/serving", headers=admin).json()["models"]
        iris = [m for m in index if m["name"] == "iris"]
        assert [(m["version"], m["state"]) for m in iris] == [(None, "UNAVAILABLE")]
        assert "unloaded" in iris[0]["reason"]
        viewer = httpx.get(f"{live.url}/ui/api/serving", headers={"x-api-key": VIEWER_KEY})
        seen = [m["reason"] for m in viewer.json()["models"] if m["name"] == "iris"]
        assert seen == [""]  # the reason's text is for admins, as on the V2 repository index
    finally:
        assert httpx.post(f"{repository}/load", headers=admin, timeout=30).status_code == 200


# -- Rollouts --------------------------------------------------------------------------------------


def test_promote_from_the_page_moves_the_alias(live: Live, page: Any) -> None:
    registry = live.registry
    assert registry.resolve("digits@production").version == 2
    sign_in(page, live.url, ADMIN_KEY, "/ui/rollouts/digits")
    shoot(page, "dashboard-rollout")
    for _ in range(40):  # by keyboard alone: Tab to the Promote button, Enter, Enter
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.command") == "promote":
            break
    assert page.evaluate("document.activeElement.dataset.command") == "promote"
    page.keyboard.press("Enter")
    dialog = page.locator("dialog")
    assert "Promote rollout" in dialog.inner_text()
    assert page.evaluate("'confirmYes' in document.activeElement.dataset")  # focus in the dialog
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#rollout-state').textContent.includes('promoted')"
    )
    assert registry.resolve("digits@production").version == 3
    done = rollouts.get(registry, "digits")
    assert done.state == "promoted"
    assert registry.rollouts.decisions(done.id)[-1].action == "promote"
    assert page.locator("button[data-command]").count() == 0  # nothing left to steer
    log = page.locator("#decisions + .scroll").inner_text()
    assert "promote" in log and "promoted by an operator" in log
    assert "checked: signature (input: float32[?,4])" in log  # the start's preflight evidence


def test_a_forged_cross_site_form_cannot_abort(live: Live, page: Any) -> None:
    before = rollouts.get(live.registry, "iris")
    sign_in(page, live.url, ADMIN_KEY, "/ui/rollouts/iris")  # the victim is signed in as admin
    target = f"{live.url}/ui/api/rollouts/iris/abort"
    hostile = (
        f'<form id="f" method="post" action="{target}"><input name="expected" '
        f'value="{before.id}:{before.state}:{before.step}"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(
        "http://attacker.test/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=hostile),
    )
    with page.expect_response(target) as answer:
        page.goto("http://attacker.test/prize")
    assert answer.value.status == 403
    assert "cross-site request refused" in answer.value.text()
    assert unchanged(live.registry, before)


def test_rollout_actions_are_refused_without_admin_or_csrf(live: Live, page: Any) -> None:
    registry = live.registry
    before = rollouts.get(registry, "iris")
    expected = {"id": before.id, "state": before.state, "step": before.step}
    url = f"{live.url}/ui/api/rollouts/iris/abort"
    viewer = httpx.post(url, json={"expected": expected}, headers={"x-api-key": VIEWER_KEY})
    assert viewer.status_code == 403 and "admin" in viewer.json()["error"]
    client, csrf = admin_session(live.url)
    try:
        forged = client.post(
            url,
            json={"expected": expected},
            headers={
                "x-csrf-token": csrf,
                "origin": "http://evil.example",
                "sec-fetch-site": "cross-site",
            },
        )
        assert forged.status_code == 403 and "cross-site" in forged.json()["error"]
        tokenless = client.post(url, json={"expected": expected})  # same site, no token
        assert tokenless.status_code == 403 and "CSRF" in tokenless.json()["error"]
        assert unchanged(registry, before)
        assert registry.resolve("iris@production").version == 1
        stale = client.post(url, json={"expected": {**expected, "state": "canary", "step": 1}},
                            headers={"x-csrf-token": csrf})  # fmt: skip
        assert stale.status_code == 409
        assert "moved meanwhile" in stale.json()["error"] and "shadow" in stale.json()["error"]
        assert unchanged(registry, before)
        sign_in(page, live.url, ADMIN_KEY, "/ui/rollouts/iris")  # a page that goes stale
        done = client.post(url, json={"expected": expected, "reason": "seen enough"},
                           headers={"x-csrf-token": csrf})  # fmt: skip
    finally:
        client.close()
    assert done.status_code == 200, done.text
    assert done.json()["rollout"]["state"] == "aborted"
    after = rollouts.get(registry, "iris")
    assert after.state == "aborted" and after.reason == "seen enough"
    assert registry.resolve("iris@production").version == 1  # stable keeps serving
    page.wait_for_selector("#stale:not([hidden])")
    assert "aborted" in page.locator("#stale").inner_text()
    page.click("button[data-command=abort]")  # acting on the stale page: 409, nothing done
    page.click("dialog button[data-confirm-yes]")
    page.wait_for_selector("#toast p.bad")
    assert "moved meanwhile" in page.locator("#toast").inner_text()
    history = httpx.get(f"{live.url}/ui/api/rollouts/iris", headers={"x-api-key": VIEWER_KEY})
    actions = [d["action"] for d in history.json()["history"][0]["decisions"]]
    assert actions == ["start", "abort"]
    listed = httpx.get(f"{live.url}/ui/api/rollouts", headers={"x-api-key": VIEWER_KEY}).json()
    assert {(r["name"], r["state"]) for r in listed["items"]} >= {("iris", "aborted")}


# -- Monitoring ------------------------------------------------------------------------------------


def test_monitoring_shows_drift_of_shifted_traffic(live: Live, page: Any) -> None:
    shifted = np.random.default_rng(2).standard_normal((50, 4)).astype(np.float32) + 3.0
    for _ in range(4):  # 200 rows: past min_rows, into a 400-row window
        assert live.infer("mlp", shifted).status_code == 200
    headers = {"x-api-key": VIEWER_KEY}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        data = httpx.get(f"{live.url}/ui/api/monitoring", headers=headers).json()
        found = [v for v in data["versions"] if v["model"] == "mlp" and v["scores"]]
        if found and len(data["history"].get("mlp:1", {}).get("input[0]", [])) >= 2:
            break
        time.sleep(0.4)
    assert found, data
    mlp = found[0]
    assert mlp["flagged"]["input[0]"] is True
    assert mlp["scores"]["input[0]"]["psi"] >= mlp["thresholds"]["psi"]
    labelled = live.infer("mlp", shifted[:4], id="fb-1").json()["outputs"]
    scores = next(o for o in labelled if o["name"] == "probabilities")
    classes = np.asarray(scores["data"]).reshape(4, -1).argmax(axis=1).tolist()
    truth = [*classes[:3], (classes[3] + 1) % 3]  # three of four right
    body = {"request_ids": ["fb-1"], "ground_truth": [truth]}
    joined = httpx.post(f"{live.url}/v2/models/mlp/feedback", json=body, headers=headers)
    assert joined.status_code == 200, joined.text
    data = httpx.get(f"{live.url}/ui/api/monitoring", headers=headers).json()
    assert {"model": "mlp", "version": 1, "kind": "accuracy", "value": 0.75} in data["accuracy"]
    sign_in(page, live.url, VIEWER_KEY, "/ui/monitoring")
    text = page.locator("main").inner_text()
    assert "mlp:1" in text and "drifted" in text and "0.7500" in text
    page.wait_for_function("() => document.querySelector('svg[data-ref=\"mlp:1\"] path.line')")
    shoot(page, "dashboard-monitoring")


# -- Fleet -----------------------------------------------------------------------------------------


def test_fleet_lists_devices_and_waves(live: Live, page: Any, tmp_path: Path) -> None:
    from modelport.edge.fleet.control import status
    from modelport.edge.fleet.devices import parse_report
    from modelport.edge.fleet.store import Fleet
    from modelport.edge.keys import KeyStore
    from tests.edge.conftest import make_bundle

    fleet = Fleet(live.registry)
    token = fleet.create_token("cameras")
    secrets = {}
    for n in range(4):
        device, secret = fleet.enroll(token, {"id": f"cam-{n}", "hardware": "x86",
                                              "runtimes": ["onnx"], "ram_mb": 512,
                                              "cpu_flags": [], "tags": ["cameras"]})  # fmt: skip
        secrets[device] = f"{device}:{secret}"
    keys = KeyStore(tmp_path / "keys")
    keys.generate()
    release = fleet.add_release(make_bundle(keys, tmp_path).path)
    rid = release["id"]
    number = fleet.deploy(release["model"], ["cameras"], [50.0, 100.0], 600.0, {"x86": rid})
    first = [d["device_id"] for d in status(fleet, number)["devices"] if d["wave"] == 0]
    good, bad = (fleet.authenticate(secrets[d]) for d in first)
    fleet.report(good, parse_report({"current": rid, "health": "ok", "metrics": {"p50_ms": 1.5},
                                     "outcome": {"release": rid, "ok": True}}))  # fmt: skip
    fleet.report(bad, parse_report({"health": "failed", "last_error": "warm-up call failed",
                                    "outcome": {"release": rid, "ok": False}}))  # fmt: skip
    data = httpx.get(f"{live.url}/ui/api/fleet", headers={"x-api-key": VIEWER_KEY}).json()
    assert [d["id"] for d in data["devices"]] == [f"cam-{n}" for n in range(4)]
    assert all("secret_sha256" not in d for d in data["devices"])
    health = {d["id"]: (d["health"], d["current"]) for d in data["devices"]}
    assert health[good.id] == ("ok", rid) and health[bad.id] == ("failed", None)
    deployment = data["deployment"]
    assert deployment["id"] == number
    assert [(w["size"], w["ok"], w["failed"]) for w in deployment["waves"]] == [
        (2, 1, 1),
        (2, 0, 0),
    ]
    assert data["releases"][0]["id"] == rid
    sign_in(page, live.url, VIEWER_KEY, "/ui/fleet")
    text = page.locator("main").inner_text()
    assert "cam-3" in text and "warm-up call failed" in text and "not started" in text
    shoot(page, "dashboard-fleet")
    answer = page.goto(f"{live.url}/ui/fleet/deployments/{number}")
    assert answer.status == 200 and page.locator("h1").inner_text() == f"Deployment {number}"
