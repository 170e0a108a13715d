"""Tiny ONNX models built in the tests: a two-layer MLP whose weights live in one file each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 3]}],
}


def weights(seed: int, hidden: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(size=(4, hidden)).astype(np.float32),
        "b1": rng.normal(size=(hidden,)).astype(np.float32),
        "w2": rng.normal(size=(hidden, 3)).astype(np.float32),
        "b2": rng.normal(size=(3,)).astype(np.float32),
    }


def deep(seed: int, widths: list[int]) -> dict[str, np.ndarray]:
    """Weights of an MLP through ``widths`` (first 4, last 3): one file per layer tensor."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False), start=1):
        out[f"w{i}"] = (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32)
        out[f"b{i}"] = rng.normal(size=(b,)).astype(np.float32)
    return out


def write_mlp(folder: Path, params: dict[str, np.ndarray], nan: bool = False) -> list[str]:
    """Write ``model.onnx`` plus one external-data file per weight; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = len(params) // 2
    nodes, last = [], "x"
    for i in range(1, layers + 1):
        out = "y" if i == layers and not nan else f"h{i}"
        nodes.append(helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}" if i < layers else out]))
        if i < layers:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [out]))
        last = out
    inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    if nan:  # y = (the last layer) * NaN
        inits.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nan"))
        nodes.append(helper.make_node("Mul", [last, "nan"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    names = ["model.onnx"]
    for tensor in model.graph.initializer:
        if tensor.name in params:
            name = f"{tensor.name}.bin"
            onnx.external_data_helper.set_external_data(tensor, location=name)
            (folder / name).write_bytes(tensor.raw_data)
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            names.append(name)
    onnx.save(model, folder / "model.onnx")
    return names


def sample() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(7).normal(size=(8, 4)).astype(np.float32)}
