from __future__ import annotations

import logging

import numpy as np
import pytest

from modelport.compression import graph as gx
from modelport.compression import quantize_model
from modelport.errors import InvalidInput
from modelport.registry import Registry

FAST = {"threads": 1, "rounds": 3}


def _accuracy_drop_points(outcome) -> float:
    return outcome.comparison.accuracy_drop * 100


def test_static_int8_is_small_and_accurate_with_lineage(
    sqlite_registry: Registry, tutorial, digits
):
    # the recipe benchmarks/compression.py shows fastest at batch 32 on the tutorial MLP
    outcome = quantize_model(
        tutorial,
        bits=8,
        calibration=digits.x_train,
        format="qoperator",
        per_channel=False,
        eval_data=digits.x_test,
        eval_labels=digits.y_test,
        max_accuracy_drop=0.005,
        registry=sqlite_registry,
        **FAST,
    )
    version = outcome.version
    assert version is not None and outcome.rejected is None
    assert version.parent == tutorial and version.transform == "quantize"
    assert version.transform_params == {
        "bits": 8,
        "mode": "static",
        "format": "qoperator",
        "per_channel": False,
        "method": "MinMax",
        "activation_type": "uint8",
        "weight_type": "int8",
        "calibration_rows": 512,
    }
    parent = sqlite_registry.resolve(tutorial)
    assert parent.size / version.size >= 3.5
    assert version.metrics["size_ratio"] == pytest.approx(parent.size / version.size)
    assert version.metrics["accuracy_drop"] <= 0.005
    assert version.metrics["parent_accuracy"] > 0.95
    for key in ("latency_ms_b1", "latency_ms_b32", "gzip_bytes", "parameters", "agreement"):
        assert key in version.metrics
    ops = [n.op_type for n in gx.load(sqlite_registry.path(version)).graph.node]
    assert ops == ["QuantizeLinear", "QGemm", "QGemm", "QGemm", "Softmax"]  # float-output QGemm
    qdq = quantize_model(
        tutorial,
        bits=8,
        format="qdq",
        calibration=digits.x_train,
        eval_data=digits.x_test,
        eval_labels=digits.y_test,
        max_accuracy_drop=0.005,
        registry=sqlite_registry,
        **FAST,
    ).version
    assert qdq.transform_params["format"] == "qdq" and qdq.transform_params["per_channel"]
    assert parent.size / qdq.size > 3.4  # per-channel scales and QDQ nodes cost a little size
    ops = {n.op_type for n in gx.load(sqlite_registry.path(qdq)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Gemm"} <= ops


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_calibration_methods(sqlite_registry, tutorial, digits, method):
    outcome = quantize_model(
        tutorial,
        bits=8,
        calibration=digits.x_train[:64],
        method=method,
        eval_data=digits.x_test,
        eval_labels=digits.y_test,
        registry=sqlite_registry,
        **FAST,
    )
    assert outcome.version.transform_params["method"] == method.capitalize()
    assert _accuracy_drop_points(outcome) <= 2.0


def test_dynamic_int8_fp16_and_int4(sqlite_registry, tutorial, digits):
    parent = sqlite_registry.resolve(tutorial)
    ev = {"eval_data": digits.x_test, "eval_labels": digits.y_test, "registry": sqlite_registry}
    root = logging.getLogger()
    level = root.level
    dynamic = quantize_model(tutorial, bits=8, **ev, **FAST).version
    assert root.level == level  # the quantizer's logging is muted only while it runs
    assert dynamic.transform_params["mode"] == "dynamic"
    assert dynamic.transform_params["per_channel"] is True
    assert dynamic.metrics["accuracy_drop"] <= 0.005
    assert dynamic.metrics["parameters"] == 17_226  # scales and zero points are not parameters
    half = quantize_model(tutorial, bits=16, **ev, **FAST).version
    assert 1.9 <= parent.size / half.size <= 2.2
    assert half.metrics["agreement"] >= 0.99
    assert half.signature == parent.signature  # float32 inputs and outputs are kept
    four = quantize_model(tutorial, bits=4, block_size=32, **ev, **FAST).version
    ops = {n.op_type for n in gx.load(sqlite_registry.path(four)).graph.node}
    assert "MatMulNBits" in ops
    assert parent.size / four.size > 4.5
    assert four.metrics["accuracy_drop"] <= 0.02
    assert [v.version for v in sqlite_registry.list_versions("digits")] == [1, 2, 3, 4]


def _count(reg: Registry) -> int:
    return len(reg.list_versions("digits"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 3}, "unsupported bit width 3"),
        ({"bits": 8, "max_drop": 0.1}, r"unknown option\(s\) \['max_drop'\]"),
        ({"bits": 8, "method": "kl"}, "unknown calibration method"),
        ({"bits": 16, "calibration": np.zeros((4, 64), np.float32)}, "static int8 only"),
        ({"bits": 8, "calibration": np.zeros((4, 63), np.float32)}, "dimension 1 is 63"),
        ({"bits": 8, "calibration": np.zeros((4, 64), np.int64).astype(str)}, "dtype"),
        (
            {"bits": 8, "eval_data": np.zeros((4, 64), np.float32), "eval_labels": np.arange(3)},
            "labels must be 4",
        ),
        (
            {
                "bits": 8,
                "eval_data": np.zeros((3, 64), np.float32),
                "eval_labels": np.array([0, 1, 12]),
            },
            "10 classes",
        ),
    ],
)
def test_bad_input_registers_nothing(sqlite_registry, tutorial, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        quantize_model(tutorial, registry=sqlite_registry, **kwargs, **FAST)
    assert _count(sqlite_registry) == 1


def test_already_quantized_and_foreign_formats_are_refused(sqlite_registry, tutorial, tmp_path):
    from modelport.registry import Artifact

    int8 = quantize_model(tutorial, bits=8, registry=sqlite_registry, **FAST).version
    with pytest.raises(InvalidInput, match="already quantized"):
        quantize_model(int8.ref, bits=8, registry=sqlite_registry, **FAST)
    blob = tmp_path / "model.tflite"
    blob.write_bytes(b"TFL3 not really")
    other = sqlite_registry.add(Artifact.single_file(blob, "tflite", int8.signature), "edge")
    with pytest.raises(InvalidInput, match="format is 'tflite'"):
        quantize_model(other.ref, bits=8, registry=sqlite_registry, **FAST)
    assert _count(sqlite_registry) == 2


def test_conv_needs_static_int8(sqlite_registry, tmp_path):
    from modelport.importers.onnx import from_path
    from tests.compression.test_prune import conv_net

    ref = sqlite_registry.add(from_path(conv_net(tmp_path / "cnn.onnx")), "cnn").ref
    with pytest.raises(InvalidInput, match="for Conv give --calibration"):
        quantize_model(ref, bits=8, registry=sqlite_registry, **FAST)
    x = np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32)
    outcome = quantize_model(
        ref, bits=8, calibration=x, eval_data=x, registry=sqlite_registry, **FAST
    )
    # random weights on random rows: cosine 0.888 with ONNX Runtime 1.32, QDQ and QOperator alike
    assert outcome.version is not None and outcome.comparison.cosine > 0.85
    ops = {n.op_type for n in gx.load(sqlite_registry.path(outcome.version)).graph.node}
    kept = outcome.version.transform_params["format"]  # the faster of the two formats
    assert ("QLinearConv" in ops) if kept == "qoperator" else {"Conv", "DequantizeLinear"} <= ops
