"""Rollouts as catalogue objects (SQLite and PostgreSQL): start checks, one active rollout per
model, the decision log, operator commands, the controller pausing on hand-made changes."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from modelport import rollouts
from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry import Registry
from modelport.registry import catalog as c
from modelport.rollouts.controller import Controller
from modelport.rollouts.gates import Gates
from tests.rollouts.conftest import classifier_onnx, inputs, other_signature_onnx
from tests.rollouts.servers import wait_for

PLAN = "shadow 20% 1s; canary 10,50 1s"


def test_start_stores_the_rollout_and_logs_the_evidence(registry: Registry, versions):
    r = rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN,
                       gates=Gates(max_error_rate=0.02))  # fmt: skip
    assert (r.state, r.step, r.stable, r.candidate, r.alias) == ("shadow", 0, 1, 2, "production")
    assert r.gates["max_error_rate"] == 0.02 and len(r.plan["steps"]) == 3
    assert rollouts.api.describe(r) == "shadow (20%)"
    [(_, log)] = rollouts.history(registry, "digits")
    assert [d.action for d in log] == ["start"] and log[0].actor == "tester"
    assert log[0].evidence["signature"]["compatible"] is True
    assert set(log[0].evidence["warm_ms"]) == {"stable", "candidate"}


def test_a_second_active_rollout_is_a_conflict(registry: Registry, versions):
    rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN)
    with pytest.raises(Conflict, match="already has an active rollout"):
        rollouts.start(registry, "digits", f"digits:{versions['slow']}", plan=PLAN)
    with pytest.raises(Conflict, match="already has an active rollout"):  # the store refuses too
        registry.rollouts.create("digits", alias="production", stable=1, candidate=3,
                                 candidate_alias=None, plan={}, gates={}, state="shadow",
                                 progress={}, evidence={})  # fmt: skip
    rollouts.abort(registry, "digits")
    again = rollouts.start(registry, "digits", f"digits:{versions['slow']}", plan=PLAN)
    assert again.state == "shadow" and again.candidate == versions["slow"]


def test_bad_starts_change_nothing(registry: Registry, versions, tmp_path):
    modelport_register(registry, other_signature_onnx(tmp_path / "other.onnx"))
    cases = [
        ("digits:1", PLAN, InvalidInput, "is the stable version"),
        ("digits:99", PLAN, NotFound, "no version 99"),
        ("digits@canary", PLAN, NotFound, "no alias 'canary'"),
        ("other:1", PLAN, InvalidInput, "not a version of 'digits'"),
        ("digits:6", PLAN, InvalidInput, "incompatible.*input 'input' is input: float32"),
        ("digits:2", "canary 50,10", InvalidInput, "must increase"),
        ("digits:2", "canary 10 0s", InvalidInput, "more than zero"),
        ("digits:2", "rainbow 10", InvalidInput, "unknown step"),
    ]
    for candidate, plan, error, message in cases:
        with pytest.raises(error, match=message):
            rollouts.start(registry, "digits", candidate, plan=plan)
    with pytest.raises(NotFound, match="not found"):
        rollouts.start(registry, "digitz", "digitz:2", plan=PLAN)
    with pytest.raises(InvalidInput, match="min agreement"):
        rollouts.start(registry, "digits", "digits:2", plan=PLAN, gates=Gates(min_agreement=2))
    with pytest.raises(NotFound, match="no rollouts"):
        rollouts.get(registry, "digits")


def modelport_register(registry: Registry, path) -> None:
    import modelport

    assert modelport.register(path, "digits", registry=registry).version == 6


def test_a_golden_set_is_checked_before_the_start(registry: Registry, versions, tmp_path):
    golden = tmp_path / "golden.npz"
    x = inputs(200)
    np.savez(golden, input=x)
    r = rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN, golden=golden)
    evidence = rollouts.history(registry, "digits")[0][1][0].evidence["golden"]
    assert evidence["rows"] == 200 and evidence["agreement"] == 1.0
    rollouts.abort(registry, "digits")
    with pytest.raises(InvalidInput, match=r"fails the golden set \(golden.npz\): agreement 0"):
        rollouts.start(registry, "digits", f"digits:{versions['disagreeing']}", plan=PLAN,
                       golden=golden)  # fmt: skip
    np.savez(golden, wrong=x)
    with pytest.raises(InvalidInput, match="needs arrays"):
        rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN, golden=golden)
    assert rollouts.get(registry, "digits").id == r.id  # nothing new was stored


def test_operator_commands_and_their_log(registry: Registry, versions):
    rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN)
    assert rollouts.pause(registry, "digits").state == "paused"
    with pytest.raises(Conflict, match="already paused"):
        rollouts.pause(registry, "digits")
    assert rollouts.resume(registry, "digits").state == "shadow"
    with pytest.raises(Conflict, match="not paused"):
        rollouts.resume(registry, "digits")
    done = rollouts.promote(registry, "digits")
    assert done.state == "promoted" and not done.active
    assert registry.resolve("digits@production").version == versions["good"]
    with pytest.raises(Conflict, match="no active rollout.*promoted"):
        rollouts.abort(registry, "digits")
    log = rollouts.history(registry, "digits")[0][1]
    assert [(d.action, d.from_state, d.to_state) for d in log] == [
        ("start", "-", "shadow"), ("pause", "shadow", "paused"), ("resume", "paused", "shadow"),
        ("promote", "shadow", "promoted"),
    ]  # fmt: skip


def test_operator_commands_are_audited(registry: Registry, versions):
    rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN)
    rollouts.pause(registry, "digits", reason="looking at it")
    rollouts.resume(registry, "digits")
    rollouts.promote(registry, "digits")
    entries = registry.audit.entries()[-5:]
    assert [(e.action, e.actor, e.source) for e in entries] == [
        ("rollout_start", "tester", "cli"), ("rollout_pause", "tester", "cli"),
        ("rollout_resume", "tester", "cli"), ("alias_set", "tester", "cli"),
        ("rollout_promote", "tester", "cli"),
    ]  # fmt: skip
    assert entries[1].detail["reason"] == "looking at it"
    assert entries[-1].detail["candidate"] == versions["good"] and entries[-1].model == "digits"


def test_a_stale_writer_loses_the_compare_and_set(registry: Registry, versions):
    r = rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN)
    rollouts.pause(registry, "digits")
    with pytest.raises(Conflict, match="changed meanwhile"):
        registry.rollouts.update(r, state="canary", step=1)
    assert rollouts.get(registry, "digits").state == "paused"


@pytest.mark.parametrize("change", ["delete", "move-candidate-alias", "move-serving-alias"])
def test_hand_made_changes_pause_the_rollout_with_the_reason(registry: Registry, versions,
                                                             tmp_path, change):  # fmt: skip
    registry.set_alias("digits", "staging", versions["good"])
    candidate = "digits:3" if change == "delete" else "digits@staging"
    r = rollouts.start(registry, "digits", candidate, plan=PLAN)
    controller = Controller(registry)
    assert controller.tick() == []
    if change == "delete":
        registry.delete("digits:3")
        expected = "the candidate digits:3 was deleted"
    elif change == "move-candidate-alias":
        registry.set_alias("digits", "staging", versions["slow"])
        expected = "alias 'staging' of 'digits' was moved to version 4 by hand"
    else:
        registry.set_alias("digits", "production", versions["slow"])
        expected = "alias 'production' of 'digits' was moved by hand to version 4"
    assert controller.tick() == [f"#{r.id} pause"]
    paused = rollouts.get(registry, "digits")
    assert paused.state == "paused" and expected in paused.reason
    assert rollouts.history(registry, "digits")[0][1][-1].evidence["reason"] == paused.reason
    with pytest.raises(Conflict, match="cannot resume"):
        rollouts.resume(registry, "digits")


def test_the_lease_has_one_holder_until_it_expires(registry: Registry):
    """Long leases where a test process descheduled for a while must not lose one; a short one
    renewed by its holder, then waited out."""
    store = registry.rollouts
    assert store.lease("rollouts", "a", ttl=60) and not store.lease("rollouts", "b", ttl=60)
    assert store.holder("rollouts") == "a" and store.lease("rollouts", "a", ttl=0.5)
    wait_for(lambda: store.lease("rollouts", "b", ttl=60), "the renewed lease to expire", 10)
    assert store.holder("rollouts") == "b" and not store.lease("rollouts", "a", ttl=60)
    store.release("rollouts", "b")
    assert store.holder("rollouts") is None


def test_a_version_1_catalogue_gains_the_rollout_tables(registry: Registry, versions):
    with registry.engine.begin() as conn:
        for table in (c.leases, c.rollout_windows, c.rollout_decisions, c.rollouts):
            table.drop(conn)
        conn.execute(sa.update(c.meta).values(value="1"))
    upgraded = Registry(registry.settings)
    try:
        tables = set(sa.inspect(upgraded.engine).get_table_names())
        assert {"rollouts", "rollout_decisions", "rollout_windows", "leases"} <= tables
        r = rollouts.start(upgraded, "digits", "digits:2", plan=PLAN)
        assert rollouts.get(upgraded, "digits").id == r.id
    finally:
        upgraded.close()


def test_a_candidate_with_an_extra_input_is_incompatible(registry: Registry, versions, tmp_path):
    assert classifier_onnx(tmp_path / "x.onnx").exists()  # the builder stays importable
    from modelport.rollouts.preflight import check_compatible
    from modelport.signature import Signature, TensorSpec

    stable = registry.resolve("digits:1").signature
    extra = Signature((*stable.inputs, TensorSpec("mask", "float32", (-1, 4))), stable.outputs)
    with pytest.raises(InvalidInput, match="needs input.*mask"):
        check_compatible(stable, extra)
    assert check_compatible(stable, stable)["compatible"] is True


def heavy_onnx(path, megabytes: int):
    """The classifier's signature with ``megabytes`` of weights it multiplies by (all used)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    columns = megabytes * (1 << 20) // 16  # float32 weights of shape [4, columns]
    big = numpy_helper.from_array(np.full((4, columns), 1e-3, np.float32), "big")
    starts, ends = (numpy_helper.from_array(np.array([v], np.int64), n)
                    for v, n in ((0, "starts"), (5, "ends")))  # fmt: skip
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node("MatMul", ["input", "big"], ["wide"]),
             helper.make_node("Slice", ["wide", "starts", "ends", "axes"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]  # fmt: skip
    graph = helper.make_graph(
        nodes, "heavy", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 5])],
        [big, starts, ends, axes],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_a_stored_evaluation_set_and_a_memory_budget_gate_the_start(registry: Registry, versions,
                                                                    tmp_path):  # fmt: skip
    import modelport
    from modelport.registry import evalset

    heavy = modelport.register(heavy_onnx(tmp_path / "heavy.onnx", 48), "digits",
                               registry=registry).version  # fmt: skip
    with pytest.raises(InvalidInput, match=r"adds \d+\.\d+ MiB .* over the budget of 16 MiB"):
        rollouts.start(registry, "digits", f"digits:{heavy}", plan=PLAN, memory_budget_mb=16)
    r = rollouts.start(registry, "digits", f"digits:{heavy}", plan=PLAN, memory_budget_mb=4096)
    assert registry.rollouts.decisions(r.id)[0].evidence["memory_mb"] >= 40
    rollouts.abort(registry, "digits")

    x = inputs(100, seed=7)
    labels = np.argmax(modelport.load("digits:1", registry=registry).predict({"input": x})
                       ["probabilities"], axis=1)  # fmt: skip
    np.savez(tmp_path / "eval.npz", input=x, label=labels)
    evalset.store(registry, "digits:1", tmp_path / "eval.npz")  # stored with stable
    with pytest.raises(InvalidInput, match=r"fails the golden set \(the evaluation set of "
                                           r"digits:1\): agreement 0\.\d+ < 0\.98"):  # fmt: skip
        rollouts.start(registry, "digits", f"digits:{versions['disagreeing']}", plan=PLAN)
    r = rollouts.start(registry, "digits", f"digits:{versions['good']}", plan=PLAN)
    golden = registry.rollouts.decisions(r.id)[0].evidence["golden"]
    assert golden["source"] == "the evaluation set of digits:1" and golden["rows"] == 100
    assert golden["accuracy"] == {"stable": 1.0, "candidate": 1.0}
