from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.compression import TrainConfig, prune_model
from modelport.compression import graph as gx
from modelport.compression import prune as pruning
from modelport.errors import InvalidInput
from modelport.importers.onnx import from_path
from modelport.registry import Registry

FAST = {"threads": 1, "rounds": 3}


def _weights(reg: Registry, ref: str) -> list[np.ndarray]:
    model = gx.load(reg.path(reg.resolve(ref)))
    g = gx.Graph(model)
    return [g.array(n) for n in gx.weight_names(model)]


def test_global_sparsity_shrinks_gzip_not_raw(sqlite_registry, tutorial, digits):
    outcome = prune_model(
        tutorial,
        sparsity=0.6,
        scope="global",
        eval_data=digits.x_test,
        eval_labels=digits.y_test,
        registry=sqlite_registry,
        **FAST,
    )
    v = outcome.version
    weights = _weights(sqlite_registry, v.ref)
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    assert zeros == pytest.approx(0.6, abs=0.01)
    assert v.transform == "prune" and v.transform_params["sparsity"] == 0.6
    parent = sqlite_registry.resolve(tutorial)
    m = v.metrics
    assert m["gzip_bytes"] < 0.6 * outcome.comparison.parent.gzip_size
    assert m["size_bytes"] > 0.85 * parent.size  # dense storage: same shapes, same bytes
    assert m["parameters"] == outcome.comparison.parent.parameters


def test_per_layer_sparsity_and_threshold(sqlite_registry, tutorial):
    per_layer = prune_model(tutorial, sparsity=0.5, scope="layer", registry=sqlite_registry, **FAST)
    for w in _weights(sqlite_registry, per_layer.version.ref):
        assert (w == 0).mean() == pytest.approx(0.5, abs=0.01)
    by_threshold = prune_model(tutorial, threshold=0.05, registry=sqlite_registry, **FAST)
    parent_weights = _weights(sqlite_registry, tutorial)
    pruned_weights = _weights(sqlite_registry, by_threshold.version.ref)
    for before, after in zip(parent_weights, pruned_weights, strict=True):
        small = np.abs(before) < 0.05
        assert np.all(after[small] == 0) and np.array_equal(after[~small], before[~small])
    achieved = by_threshold.version.transform_params["achieved_sparsity"]
    assert len(achieved) == 3 and all(0 < s < 1 for s in achieved.values())


def test_structured_half_units_with_finetune(sqlite_registry, tutorial, digits):
    outcome = prune_model(
        tutorial,
        structured=0.5,
        finetune_data=digits.x_train,
        finetune_labels=digits.y_train,
        train=TrainConfig(epochs=15),
        eval_data=digits.x_test,
        eval_labels=digits.y_test,
        max_accuracy_drop=0.01,
        registry=sqlite_registry,
        **FAST,
    )
    v = outcome.version
    assert v is not None, outcome.rejected
    layers = gx.dense_layers(gx.load(sqlite_registry.path(v)))
    assert [d.weight().shape for d in layers] == [(64, 64), (64, 32), (32, 10)]  # [in, out]
    assert v.metrics["accuracy_drop"] <= 0.01
    assert v.size < 0.5 * sqlite_registry.resolve(tutorial).size
    assert v.metrics["parameters"] < 0.4 * outcome.comparison.parent.parameters
    params = v.transform_params
    assert params["kind"] == "structured" and params["fraction"] == 0.5
    assert sorted(params["units"].values()) == [[64, 32], [128, 64]]
    assert params["finetune"]["labelled"] is True and params["finetune"]["epochs"] == 15


def conv_net(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "c1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "c2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "c1", "b1"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "c2"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4, 2, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_structured_conv_channels(sqlite_registry, tmp_path):
    ref = sqlite_registry.add(from_path(conv_net(tmp_path / "cnn.onnx")), "cnn").ref
    outcome = prune_model(ref, structured=0.5, registry=sqlite_registry, **FAST)
    model = gx.load(sqlite_registry.path(outcome.version))
    g = gx.Graph(model)
    assert sorted(g.array(n).shape for n in gx.weight_names(model)) == [(4, 1, 3, 3), (4, 4, 3, 3)]
    assert outcome.version.signature == sqlite_registry.resolve(ref).signature
    assert outcome.comparison.child.parameters < outcome.comparison.parent.parameters
    data = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(InvalidInput, match="fine-tuning needs a plain MLP"):
        prune_model(ref, structured=0.5, finetune_data=data, registry=sqlite_registry, **FAST)
    assert len(sqlite_registry.list_versions("cnn")) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sparsity": 1.0}, r"sparsity must be in \[0, 1\)"),
        ({"sparsity": -0.1}, r"sparsity must be in \[0, 1\)"),
        ({"structured": 1.5}, r"fraction of units to remove must be in \[0, 1\)"),
        ({"sparsity": 0.5, "threshold": 0.1}, "exactly one"),
        ({}, "exactly one"),
        ({"sparsity": 0.5, "scope": "row"}, "scope must be one of"),
        ({"threshold": -1.0}, "non-negative"),
        ({"structured": 0.5, "finetune_labels": np.arange(3)}, "need fine-tuning data"),
        (
            {"sparsity": 0.5, "finetune_data": np.zeros((2, 64), np.float32)},
            "structured pruning only",
        ),
        ({"structured": 0.5, "finetune_data": np.zeros((2, 8), np.float32)}, "dimension 1 is 8"),
    ],
)
def test_bad_input_registers_nothing(sqlite_registry, tutorial, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        prune_model(tutorial, registry=sqlite_registry, **kwargs, **FAST)
    assert len(sqlite_registry.list_versions("digits")) == 1


def test_structured_needs_prunable_layers(sqlite_registry, mlp_path):
    ref = sqlite_registry.add(from_path(mlp_path), "tiny").ref
    model = gx.load(mlp_path)
    # the fixture MLP has a hidden layer: prunable; a single dense layer is not
    assert pruning.structured(model, 0.5)
    single = gx.load(mlp_path)
    nodes = [n for n in single.graph.node]
    del single.graph.node[:]
    single.graph.node.extend([nodes[0], nodes[-1]])
    single.graph.node[-1].input[0] = "h"
    with pytest.raises(InvalidInput, match="no prunable hidden units"):
        pruning.structured(single, 0.5)
    assert prune_model(ref, structured=0.25, registry=sqlite_registry, **FAST).version is not None
