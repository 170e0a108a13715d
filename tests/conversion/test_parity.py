from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.conversion.parity import (
    OutputParity,
    Tolerance,
    compare,
    random_inputs,
    tolerance,
)
from modelport.errors import InvalidInput
from modelport.runtimes import open_artifact
from modelport.signature import Signature, TensorSpec
from tests.conftest import make_mlp_onnx


def test_random_inputs_fit_the_signature() -> None:
    signature = Signature((TensorSpec("a", "float32", (-1, 3, -1)), TensorSpec("b", "int64", (-1,)),
                           TensorSpec("c", "bool", (2,))))  # fmt: skip
    data = random_inputs(signature, rows=5)
    assert data["a"].shape == (5, 3, 8) and data["a"].dtype == np.float32
    assert data["b"].shape == (5,) and data["b"].dtype == np.int64
    assert data["c"].shape == (2,) and data["c"].dtype == bool
    signature.coerce_inputs(data)  # valid by construction
    with pytest.raises(InvalidInput, match="cannot draw random values"):
        random_inputs(Signature((TensorSpec("s", "string", (-1,)),)))


def test_tolerance_defaults_and_overrides() -> None:
    assert tolerance("fp32") == Tolerance(1e-4) and tolerance("fp16") == Tolerance(1e-2)
    assert tolerance("int8") == Tolerance(0.25, min_agreement=0.97)
    assert tolerance("int8", atol=0.5) == Tolerance(0.25, 0.97, atol=0.5)
    assert tolerance("int8", rtol=0.1, min_agreement=0.9) == Tolerance(0.1, 0.9)
    with pytest.raises(InvalidInput, match="non-negative"):
        tolerance("fp32", -1.0)
    with pytest.raises(InvalidInput, match="min agreement must be in"):
        tolerance("int8", min_agreement=1.5)
    with pytest.raises(InvalidInput, match="precision 'fp4'"):
        tolerance("fp4")


def test_compare_identical_and_different_models(tmp_path: Path) -> None:
    same_a = open_artifact(make_mlp_onnx(tmp_path / "a.onnx", seed=0), "onnx")
    same_b = open_artifact(make_mlp_onnx(tmp_path / "b.onnx", seed=0), "onnx")
    other = open_artifact(make_mlp_onnx(tmp_path / "c.onnx", seed=1), "onnx")
    inputs = random_inputs(same_a.signature, rows=64)
    report = compare(same_a, same_b, inputs, tolerance("fp32", atol=1e-6))
    assert report.ok and report.max_abs == 0 and report.top1 == 1.0 and report.rows == 64
    assert report.metrics()["parity_max_abs_error"] == 0.0
    worse = compare(same_a, other, inputs, tolerance("int8"), source="random data")
    assert not worse.ok and worse.worst.name == "probabilities"
    assert 0 < worse.max_rel <= 1.0 and worse.top1 is not None and worse.top1 < 0.97
    refusal = worse.refusal()  # a broken conversion: the agreement says so
    assert refusal.startswith(
        "parity check failed on 64 rows of random data: output 'probabilities' (top-1 agreement "
        f"{worse.top1:.1%}, max abs error"
    )
    assert "outside top-1 agreement >= 97.0%" in refusal


def test_compare_refuses_a_child_with_other_outputs(tmp_path: Path) -> None:
    parent = open_artifact(make_mlp_onnx(tmp_path / "a.onnx", n_out=3), "onnx")
    child = open_artifact(make_mlp_onnx(tmp_path / "b.onnx", n_out=4), "onnx")
    with pytest.raises(InvalidInput, match=r"output 'probabilities' has shape \[32, 4\]"):
        compare(parent, child, random_inputs(parent.signature), tolerance("fp32"))


def test_each_output_is_judged_by_what_it_is() -> None:
    logits = OutputParity("logits", max_abs=1.97, max_rel=0.15, top1=0.985)
    embedding = OutputParity("embedding", max_abs=0.3, max_rel=0.3, top1=None)
    int8 = tolerance("int8")
    assert int8.rule(logits) == "agreement" and int8.passes(logits)  # logits far off, same class
    assert int8.rule(embedding) == "relative" and not int8.passes(embedding)
    assert int8.bound(embedding) == "relative error <= 0.25"
    fp32 = tolerance("fp32")  # full precision: every output within a relative bound
    assert fp32.rule(logits) == "relative" and not fp32.passes(logits)
    explicit = tolerance("int8", atol=2.0)
    assert explicit.rule(logits) == "absolute" and explicit.passes(logits)
    assert not explicit.passes(OutputParity("x", 2.5, 0.01, 1.0))


def test_integer_labels_are_judged_by_rows_that_agree() -> None:
    from modelport.conversion.parity import _one

    want = np.array([7, 8, 1, 2] * 25, dtype=np.int64)
    have = want.copy()
    have[0] = 8  # one label of 100 moved by one class: 11% of the range, still a wrong class
    out = _one("label", want, have)
    assert out.top1 == 0.99 and out.max_rel == 1 / 8
    assert tolerance("int8").rule(out) == "agreement" and tolerance("int8").passes(out)
    assert not tolerance("fp32").passes(out)
    have[:10] = 0
    assert not tolerance("int8").passes(_one("label", want, have))  # 90% of rows agree
