"""Plan parsing, gates and the decision function: pure, so every case is a plain call."""

from __future__ import annotations

import pytest

from modelport.errors import Conflict, InvalidInput
from modelport.rollouts.decide import Progress, Window, decide, operate
from modelport.rollouts.gates import Gates, evaluate
from modelport.rollouts.plan import parse_plan
from modelport.rollouts.tally import BOUNDS, Tally, bucket_of


def test_the_issue_plan_parses_into_five_steps():
    plan = parse_plan("shadow 20% 60s; canary 5,25,50,100 60s")
    assert [(s.kind, s.weight, s.bake) for s in plan.steps] == [
        ("shadow", 20, 60.0), ("canary", 5, 60.0), ("canary", 25, 60.0),
        ("canary", 50, 60.0), ("canary", 100, 60.0),
    ]  # fmt: skip
    assert plan.describe(0) == "shadow (20%)" and plan.describe(2) == "canary 2/4 (25%)"


def test_bake_units_min_samples_and_defaults():
    plan = parse_plan("shadow 10% 500ms min 30; canary 50 2m", bake=5, min_samples=7)
    assert plan.steps[0].bake == 0.5 and plan.steps[0].min_samples == 30
    assert plan.steps[1].bake == 120.0 and plan.steps[1].min_samples == 7
    assert parse_plan("canary 10").steps[0].bake == 60.0
    again = parse_plan(plan.text, bake=5, min_samples=7)
    assert type(plan).from_dict(plan.to_dict()) == plan == again


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("canary 5,25,10 60s", "must increase"),
        ("canary 5,5 60s", "must increase"),
        ("canary 50; canary 25", "must increase"),
        ("canary 5,150 60s", "outside 1..100"),
        ("shadow 120% 60s", "outside 1..100"),
        ("canary 0,5", "outside 1..100"),
        ("canary 5,25 0s", "more than zero"),
        ("canary 5,25 -3s", "more than zero"),
        ("blue-green 50%", "unknown step 'blue-green'"),
        ("canary 5; shadow 10%", "shadow steps come before"),
        ("shadow 10,20%", "one percentage"),
        ("canary", "needs a weight"),
        ("canary 5 soon", "neither a bake time"),
        ("canary 5 60s min", "needs a sample count"),
        ("canary 5;; canary 10", "empty step"),
        ("canary five", "not a whole percentage"),
    ],
)
def test_bad_plans_are_refused_with_the_reason(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_plan(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_error_rate", -0.1), ("max_error_rate", 1.0), ("max_p99_ratio", 0.5),
     ("min_agreement", 1.5), ("min_agreement", 0), ("max_shift", 0), ("window", 0),
     ("consecutive", 0), ("span", 1.5), ("min_window_samples", True)],
)  # fmt: skip
def test_impossible_gate_thresholds_are_refused(field, value):
    with pytest.raises(InvalidInput, match=field.replace("_", " ")):
        Gates(**{field: value})


def _tally(stable=(100, 0, 0.002), candidate=(100, 0, 0.002), compared=(0, 0)) -> Tally:
    tally = Tally()
    for role, (n, errors, seconds) in (("stable", stable), ("candidate", candidate)):
        for i in range(n):
            tally.observe(role, seconds, ok=i >= errors, classes=[str(i % 3)])
    tally.compared_rows(agreed=compared[0], rows=compared[1], score=float(compared[0]))
    return tally


def test_gates_pass_breach_or_say_unknown():
    gates = Gates(max_error_rate=0.05, max_p99_ratio=1.5, min_agreement=0.9)
    ok = {r.gate: r.ok for r in evaluate(gates, _tally(compared=(99, 100)))}
    assert ok == {"error_rate": True, "p99_ratio": True, "p50_ratio": True, "agreement": True,
                  "shift": True}  # fmt: skip
    bad = {
        r.gate: r for r in evaluate(gates, _tally(candidate=(100, 10, 0.02), compared=(50, 100)))
    }
    assert bad["error_rate"].ok is False and bad["error_rate"].value == pytest.approx(0.1)
    assert bad["p99_ratio"].ok is False and bad["p99_ratio"].value > 5
    assert bad["agreement"].ok is False and bad["agreement"].samples == 100
    few = {r.gate: r.ok for r in evaluate(gates, _tally(candidate=(5, 5, 0.002)))}
    assert few["error_rate"] is None and few["p99_ratio"] is None


def test_latency_under_the_floor_is_not_a_breach():
    gates = Gates(latency_floor_ms=1.0)
    result = {r.gate: r for r in evaluate(gates, _tally(stable=(100, 0, 0.0001),
                                                        candidate=(100, 0, 0.0006)))}  # fmt: skip
    assert result["p99_ratio"].ok is True and result["p99_ratio"].value == 1.0


def _latencies(tally: Tally, role: str, n: int, seconds: float, tail: int) -> None:
    """``n`` requests of ``seconds``, ``tail`` of them held up 30 ms (the host's scheduling)."""
    for i in range(n):
        tally.observe(role, 0.03 if i < tail else seconds, ok=True, classes=["0"])


def test_a_slower_candidate_breaches_when_a_shared_tail_sets_both_p99s():
    gates = Gates(max_p99_ratio=2.0, latency_floor_ms=0.5)
    slow, good = Tally(), Tally()  # 5x slower (0.4 -> 2 ms) or as fast; 2% held up in both
    for tally, seconds in ((slow, 0.002), (good, 0.0004)):
        _latencies(tally, "stable", 300, 0.0004, tail=6)
        _latencies(tally, "candidate", 300, seconds, tail=6)
    results = {r.gate: r for r in evaluate(gates, slow)}
    assert results["p99_ratio"].ok is True  # the tail both share: the p99 alone misses it
    assert results["p50_ratio"].ok is False and results["p50_ratio"].value > 4
    assert all(r.ok is not False for r in evaluate(gates, good))
    decision = decide(parse_plan("canary 50 60s"), Gates(consecutive=1, max_p99_ratio=2.0),
                      0, Progress.starting(0.0), _window(1, slow))  # fmt: skip
    assert decision.action == "rollback" and "p50_ratio" in decision.reason


def test_latency_buckets_bound_every_value():
    for seconds in (1e-6, 3e-5, 0.0012, 0.5, 7.0):
        assert BOUNDS[bucket_of(seconds)] >= seconds * (1 - 1e-9)
        assert bucket_of(seconds) == 0 or BOUNDS[bucket_of(seconds) - 1] < seconds


def test_tallies_add_up_through_json():
    a, b = _tally(), _tally(candidate=(10, 2, 0.01), compared=(3, 4))
    merged = Tally.merged([Tally.from_dict(a.to_dict()), Tally.from_dict(b.to_dict())])
    assert merged.role("candidate").n == 110 and merged.role("candidate").errors == 2
    assert (merged.compared, merged.agreed) == (4, 3)


def _window(k: int, tally: Tally) -> Window:
    return Window(k * 1000, (k + 1) * 1000, tally, tally)


def test_a_breach_held_for_n_windows_rolls_back_and_one_alone_does_not():
    plan, gates = parse_plan("canary 10,50 5s min 10"), Gates(consecutive=3)
    progress = Progress.starting(0.0)
    bad, good = _tally(candidate=(100, 50, 0.002)), _tally()
    actions = []
    for k, tally in enumerate([bad, good, bad, bad, bad]):
        decision = decide(plan, gates, 0, progress, _window(k, tally))
        progress = decision.progress
        actions.append((decision.action, progress.breaches))
    assert actions == [("hold", 1), ("hold", 0), ("hold", 1), ("hold", 2), ("rollback", 3)]
    evidence = decision.evidence()
    assert evidence["breaches_in_a_row"] == 3 and evidence["window"]["end_ms"] == 5000
    gate = next(g for g in evidence["gates"] if g["gate"] == "error_rate")
    assert gate["value"] == 0.5 and gate["threshold"] == 0.01 and gate["samples"] == 100
    assert "error_rate 0.5 breaks <= 0.01" in decision.reason


def test_passing_for_the_bake_time_advances_then_promotes():
    plan, gates = parse_plan("canary 10,50 3s min 150"), Gates()
    progress = Progress.starting(0.0)
    actions = []
    for k in range(4):
        decision = decide(plan, gates, 0, progress, _window(k, _tally()))
        progress = decision.progress
        actions.append(decision.action)
    assert actions == ["hold", "hold", "advance", "advance"]  # bake 3s reached at the 3rd window
    last = decide(plan, gates, 1, Progress(0.0, 0.0, step_samples=100), _window(3, _tally()))
    assert last.action == "promote" and "bake 3s" in last.reason


def test_too_few_samples_never_advance():
    plan = parse_plan("canary 10 1s min 1000")
    decision = decide(plan, Gates(), 0, Progress.starting(0.0), _window(5, _tally()))
    assert decision.action == "hold" and decision.progress.step_samples == 100


def test_operator_commands_follow_the_state_machine():
    assert operate("canary", "pause") == "paused" and operate("paused", "resume") == "running"
    assert operate("shadow", "promote") == "promoted" and operate("paused", "abort") == "aborted"
    for state, command, message in [("paused", "pause", "already paused"),
                                    ("canary", "resume", "not paused"),
                                    ("rolled_back", "promote", "already rolled back")]:  # fmt: skip
        with pytest.raises(Conflict, match=message):
            operate(state, command)


def test_shadow_runs_count_for_errors_and_outputs_but_not_latency():
    tally = Tally()
    for i in range(100):
        tally.observe("stable", 0.002, ok=True, classes=[str(i % 3)])
        tally.observe("shadow", 0.02, ok=i >= 10, classes=[str(i % 3)])
    results = {r.gate: r for r in evaluate(Gates(), tally)}
    assert results["error_rate"].ok is False and results["error_rate"].samples == 100
    assert results["p99_ratio"].ok is None  # no request answered by the candidate
    assert results["shift"].ok is None or results["shift"].value < 0.1


def test_a_canary_step_may_shadow_part_of_stables_traffic():
    plan = parse_plan("canary 50 60s shadow 20%; canary 100 30s")
    assert (plan.steps[0].weight, plan.steps[0].shadow, plan.steps[0].shadowed) == (50, 20, 20)
    assert plan.describe(0) == "canary 1/2 (50%, shadow 20%)" and plan.steps[1].shadow == 0
    assert parse_plan("shadow 30% 5s").steps[0].shadowed == 30
    with pytest.raises(InvalidInput, match="needs a percentage"):
        parse_plan("canary 50 shadow")
    with pytest.raises(InvalidInput, match="outside 1..100"):
        parse_plan("canary 50 shadow 120%")


def test_a_low_canary_weight_is_judged_over_the_step_when_windows_hold_too_few():
    plan, gates = parse_plan("canary 5 3s min 10"), Gates(min_window_samples=20, consecutive=3)
    progress, actions = Progress.starting(0.0), []
    for k in range(12):  # 4 candidate requests a window, a quarter failing: 20 needed
        tally = _tally(stable=(80, 0, 0.002), candidate=(4, 1, 0.002))
        decision = decide(plan, gates, 0, progress, _window(k, tally))
        progress = decision.progress
        actions.append(decision.action)
        if decision.action != "hold":
            break
    assert actions == ["hold"] * 6 + ["rollback"]  # 20 samples by the 5th window, 3 in a row
    gate = next(g for g in decision.evidence()["gates"] if g["gate"] == "error_rate")
    assert gate["scope"] == "step" and gate["samples"] == 28 and gate["ok"] is False
    assert "in the step so far" in decision.reason
    good, progress, reasons = _tally(stable=(80, 0, 0.002), candidate=(4, 0, 0.002)), \
        Progress.starting(0.0), []  # fmt: skip
    for k in range(8):
        decision = decide(plan, gates, 0, progress, _window(k, good))
        progress = decision.progress
        reasons.append(decision.reason)
        if decision.action != "hold":
            break
    assert decision.action == "promote" and k == 4  # judged once the step holds 20 samples
    assert reasons[2].startswith("too few samples to judge error_rate")  # bake done, 12 samples


def test_a_full_canary_is_not_held_for_latency_it_cannot_compare():
    only_candidate = Tally()  # at 100% stable answers nothing: no latency to compare with
    for i in range(50):
        only_candidate.observe("candidate", 0.002, ok=True, classes=[str(i % 3)])
    decision = decide(parse_plan("canary 100 1s min 10"), Gates(), 0, Progress.starting(0.0),
                      _window(2, only_candidate))  # fmt: skip
    assert decision.action == "promote"
    held = decide(parse_plan("canary 50 1s min 10"), Gates(), 0, Progress.starting(0.0),
                  _window(2, only_candidate))  # fmt: skip
    assert held.action == "hold" and held.reason == "too few samples to judge p99_ratio, p50_ratio"
