"""Automatic rollback under a steady load on a real `modelport serve` process: three bad
candidates (errors on some inputs, 5x slower, disagreeing) are each rolled back by the
controller with no failed client request, the decision log holding the evidence; a good one goes
through every step and is promoted, again with no failed request."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from modelport import rollouts
from modelport.registry import Registry
from modelport.rollouts.gates import Gates
from modelport.settings import Settings
from tests.rollouts.conftest import fill
from tests.rollouts.load import Load
from tests.rollouts.servers import Serve, serve

GATES = Gates(max_error_rate=0.01, max_p99_ratio=2.0, min_agreement=0.98, window=0.5, span=4,
              consecutive=3, min_window_samples=10, latency_floor_ms=0.5)  # fmt: skip
CASES = {  # candidate -> (plan, the gates of which one must breach)
    "failing": ("canary 50 60s", ("error_rate",)),
    "slow": ("canary 50 60s", ("p99_ratio", "p50_ratio")),  # the tail, the median or both
    "disagreeing": ("shadow 100% 60s; canary 50 60s", ("agreement",)),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, dict, Serve]]:
    root = tmp_path_factory.mktemp("rollback")
    registry = Registry(Settings(home=root / "home", user="tester"))
    versions = fill(registry, root / "models", stable_work=2)
    server = serve(root / "home", "--poll-interval", "0.5")
    try:
        yield registry, versions, server
    finally:
        code = server.stop()
        registry.close()
        assert code == 0, server.output()[-2000:]


@pytest.fixture(autouse=True)
def no_rollout_left(setup) -> Iterator[None]:
    """A test that fails leaves no active rollout behind for the next one to trip over."""
    yield
    registry = setup[0]
    if rollouts.get(registry, "digits").active:
        rollouts.abort(registry, "digits", "left by a failed test")


def wait_until_ended(registry: Registry, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        rollout = rollouts.get(registry, "digits")
        if not rollout.active:
            return rollout
        time.sleep(0.1)
    raise AssertionError(f"the rollout is still {rollouts.get(registry, 'digits').state}")


@pytest.mark.parametrize("kind", list(CASES))
def test_a_bad_candidate_is_rolled_back_under_load_with_no_failed_request(setup, kind):
    registry, versions, server = setup
    plan, gates = CASES[kind]
    with Load([server.url], rate=100, threads=8) as load:
        time.sleep(1.0)  # steady load first
        rollouts.start(registry, "digits", f"digits:{versions[kind]}", plan=plan, gates=GATES)
        ended = wait_until_ended(registry)
        time.sleep(1.0)  # and after the rollback
    assert ended.state == "rolled_back", ended.reason
    assert load.failed == 0, load.errors[:5]
    assert load.sent >= 100
    log = rollouts.history(registry, "digits")[0][1]
    assert log[0].action == "start" and log[-1].action == "rollback"
    assert log[-1].actor.startswith("controller@")
    evidence = log[-1].evidence
    breached = {g["gate"]: g for g in evidence["gates"] if g["ok"] is False}
    assert set(gates) & set(breached), evidence
    assert all(
        breached[g]["samples"] >= GATES.min_window_samples for g in set(gates) & set(breached)
    )
    assert evidence["breaches_in_a_row"] == GATES.consecutive
    assert [d.action for d in log[-3:-1]] == ["breach", "breach"]  # the windows before it
    assert registry.resolve("digits@production").version == 1
    delay = log[-1].at.timestamp() - evidence["window"]["end_ms"] / 1000
    print(
        f"{kind}: rolled back {delay:.2f}s after the breach was sustained; "
        f"{load.sent} requests at {load.rate:.0f}/s, {load.failed} failed"
    )


def test_a_good_candidate_is_promoted_through_every_step_with_no_failed_request(setup):
    registry, versions, server = setup
    plan = "shadow 50% 1s min 20; canary 20,50,100 1s min 20"
    with Load([server.url], rate=100, threads=8) as load:
        time.sleep(0.5)
        # the same work as stable: its latency ratios are noise around 1, and on a loaded
        # 2-core machine one request delayed by a descheduled process sets a short window's p99
        # (any bound is a wall-clock guess); the "slow" case above shows the latency gates
        # refusing a slower candidate, so here they bound nothing and errors and agreement judge
        gates = dataclasses.replace(GATES, max_p99_ratio=1000)
        rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=plan, gates=gates)
        ended = wait_until_ended(registry)
        time.sleep(2.0)  # the replicas swap to the promoted version meanwhile
    log = rollouts.history(registry, "digits")[0][1]
    assert ended.state == "promoted", [(d.action, d.evidence.get("reason")) for d in log]
    assert load.failed == 0, load.errors[:5]
    steps = [(d.evidence.get("from"), d.evidence.get("to")) for d in log if d.action == "advance"]
    assert steps == [("shadow (50%)", "canary 1/3 (20%)"), ("canary 1/3 (20%)", "canary 2/3 (50%)"),
                     ("canary 2/3 (50%)", "canary 3/3 (100%)")]  # fmt: skip
    assert log[-1].action == "promote" and "every gate passed" in log[-1].evidence["reason"]
    assert registry.resolve("digits@production").version == versions["good"]
    moved = registry.audit.entries(action="alias_set")[-1]  # the audit log says who moved it
    assert (moved.actor, moved.source) == (log[-1].actor, "rollout controller")
    assert [e.action for e in registry.audit.entries()][-2:] == ["rollout_start", "alias_set"]
