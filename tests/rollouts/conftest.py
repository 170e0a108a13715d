"""Models for rollout tests, built here: a small classifier and candidates that misbehave in one
way each (errors on some inputs, slower, disagreeing), plus registries holding them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.registry import Registry

N_IN, N_OUT = 4, 5


def classifier_onnx(path: Path, seed: int = 1, work: int = 0, fail_above: float | None = None,
                    noise: float = 0.0) -> Path:  # fmt: skip
    """input float[batch, 4] -> probabilities float[batch, 5].

    ``seed`` picks the weights (another seed disagrees); ``noise`` nudges them (still agrees);
    ``work`` adds that many 128x128 matrix products that depend on the input (slower, same
    answers); ``fail_above``: rows whose first value is above it index out of range (an error)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((N_IN, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, N_OUT)).astype(np.float32)
    if noise:
        w1 = w1 + np.random.default_rng(99).normal(0, noise, w1.shape).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["logits0"])]  # fmt: skip
    last = "logits0"
    extras = []
    if work:
        inits.append(
            numpy_helper.from_array(
                np.random.default_rng(5).standard_normal((128, 128)).astype(np.float32) / 128, "m"
            )
        )
        nodes += [helper.make_node("ReduceMean", ["input"], ["s"], keepdims=0),
                  helper.make_node("Mul", ["m", "s"], ["p0"])]  # fmt: skip
        for i in range(work):
            nodes.append(helper.make_node("MatMul", [f"p{i}", "m"], [f"p{i + 1}"]))
        extras.append(f"p{work}")
    if fail_above is not None:
        inits += [numpy_helper.from_array(np.zeros(10, np.float32), "table"),
                  numpy_helper.from_array(np.array([10.0 / fail_above], np.float32), "scale"),
                  numpy_helper.from_array(np.array([0], np.int64), "zero")]  # fmt: skip
        nodes += [helper.make_node("Gather", ["input", "zero"], ["x0"], axis=1),
                  helper.make_node("Abs", ["x0"], ["ax0"]),
                  helper.make_node("Mul", ["ax0", "scale"], ["scaled"]),
                  helper.make_node("Floor", ["scaled"], ["floored"]),
                  helper.make_node("Cast", ["floored"], ["index"], to=TensorProto.INT64),
                  helper.make_node("Gather", ["table", "index"], ["looked"])]  # fmt: skip
        extras.append("looked")
    for i, extra in enumerate(extras):  # fold each extra into the logits as zero
        nodes += [helper.make_node("ReduceSum", [extra], [f"sum{i}"], keepdims=0),
                  helper.make_node("Mul", [f"sum{i}", "nought"], [f"z{i}"]),
                  helper.make_node("Add", [last, f"z{i}"], [f"logits{i + 1}"])]  # fmt: skip
        last = f"logits{i + 1}"
    if extras:
        inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "nought"))
    nodes.append(helper.make_node("Softmax", [last], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", N_IN])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", N_OUT])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def other_signature_onnx(path: Path) -> Path:
    """input float[batch, 7]: a candidate stable's clients could not call."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["input"], ["probabilities"], axis=1)], "other",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 7])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 7])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.save(model, str(path))
    return path


CANDIDATES = {  # name -> builder options; version numbers follow this order after stable (1)
    "good": {"noise": 1e-5},
    "failing": {"fail_above": 0.8},
    "slow": {"work": 40},  # about 2.4 ms a call: well past the gates' 0.5 ms latency floor
    "disagreeing": {"seed": 7},
}


def fill(reg: Registry, folder: Path, stable_work: int = 0) -> dict[str, int]:
    """digits:1 (production) and one version per candidate kind; returns kind -> version."""
    folder.mkdir(parents=True, exist_ok=True)
    stable = classifier_onnx(folder / "stable.onnx", work=stable_work)
    modelport.register(stable, "digits", registry=reg, alias="production")
    versions = {}
    for kind, options in CANDIDATES.items():
        options = {"work": stable_work, **options}
        if kind == "slow":  # at least 5x stable and 2.4 ms, whatever a shared machine adds
            options["work"] = max(5 * stable_work, 40)
        path = classifier_onnx(folder / f"{kind}.onnx", **options)
        versions[kind] = modelport.register(path, "digits", registry=reg).version
    return versions


def inputs(n: int, seed: int = 0) -> np.ndarray:
    """Rows with the first value in [0, 1): about 20% make the failing candidate fail."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN)).astype(np.float32)
    x[:, 0] = rng.random(n, dtype=np.float32)
    return x


@pytest.fixture
def versions(registry: Registry, tmp_path: Path) -> dict[str, int]:
    """The catalogue-backend-parametrised ``registry`` (SQLite and PostgreSQL), filled."""
    return fill(registry, tmp_path / "models")
