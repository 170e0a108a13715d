"""Reading and editing ONNX graphs: weights, dense layers (MatMul/Gemm + bias + activation), convs.

model = load(path)
for layer in dense_layers(model): layer.weight(), layer.bias()   # weight as [in, out]
parameter_count(model)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, first_line

# element-wise ops a hidden unit or channel passes through unchanged in position
ELEMENTWISE = {
    "Relu",
    "LeakyRelu",
    "Tanh",
    "Sigmoid",
    "Elu",
    "Selu",
    "Gelu",
    "Softplus",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Clip",
    "Identity",
}
CHANNELWISE = ELEMENTWISE | {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}


def load(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors and the like
        raise InvalidInput(f"{path} is not an ONNX model: {first_line(exc)}") from None


def require_onnx(format: str, transform: str) -> None:
    if format != "onnx":
        raise InvalidInput(f"{transform} works on ONNX models; this version's format is {format!r}")


class Graph:
    """Index over a ModelProto: initializers by name, producers and consumers of each value."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.inits = {t.name: t for t in model.graph.initializer}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in model.graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                self.consumers.setdefault(inp, []).append(node)
        self.outputs = {o.name for o in model.graph.output}

    def array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name])

    def set_array(self, name: str, value: np.ndarray) -> None:
        from onnx import numpy_helper

        self.inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), name))

    def only_consumer(self, value: str) -> Any | None:
        users = self.consumers.get(value, [])
        if len(users) != 1 or value in self.outputs:
            return None
        return users[0]


def attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


@dataclass
class Dense:
    """One fully connected layer: ``act(x @ W + b)``; ``weight()`` is always [in, out]."""

    graph: Graph
    node: Any  # MatMul or Gemm
    weight_name: str
    transposed: bool  # Gemm with transB=1 stores W as [out, in]
    bias_name: str | None
    bias_node: Any | None  # the Add node for MatMul + Add; None for Gemm
    activation: Any | None
    output: str  # the value after the activation (or after the bias)

    def weight(self) -> np.ndarray:
        w = self.graph.array(self.weight_name)
        return w.T if self.transposed else w

    def set_weight(self, w: np.ndarray) -> None:
        self.graph.set_array(self.weight_name, w.T if self.transposed else w)

    def bias(self) -> np.ndarray | None:
        return None if self.bias_name is None else self.graph.array(self.bias_name).reshape(-1)

    def set_bias(self, b: np.ndarray) -> None:
        if self.bias_name is not None:
            self.graph.set_array(self.bias_name, b.astype(np.float32))

    @property
    def units(self) -> int:
        return int(self.weight().shape[1])


def _dense_at(g: Graph, node: Any) -> Dense | None:
    if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
        return None
    w_name = node.input[1]
    if w_name not in g.inits or len(g.inits[w_name].dims) != 2:
        return None
    transposed, bias_name, bias_node = False, None, None
    if node.op_type == "Gemm":
        if (
            attr(node, "transA", 0)
            or attr(node, "alpha", 1.0) != 1.0
            or attr(node, "beta", 1.0) != 1.0
        ):
            return None
        transposed = bool(attr(node, "transB", 0))
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in g.inits:
                return None
            bias_name = node.input[2]
    out = node.output[0]
    if bias_name is None:
        nxt = g.only_consumer(out)
        if nxt is not None and nxt.op_type == "Add":
            other = [i for i in nxt.input if i != out]
            if len(other) == 1 and other[0] in g.inits:
                bias_name, bias_node, out = other[0], nxt, nxt.output[0]
    activation = g.only_consumer(out)
    if activation is not None and activation.op_type in ELEMENTWISE and len(activation.input) == 1:
        out = activation.output[0]
    else:
        activation = None
    dense = Dense(g, node, w_name, transposed, bias_name, bias_node, activation, out)
    b = dense.bias()
    if b is not None and b.size != dense.units:
        return None  # a broadcast scalar bias is not per unit
    return dense


def dense_layers(model: Any, graph: Graph | None = None) -> list[Dense]:
    g = graph or Graph(model)
    return [d for node in model.graph.node if (d := _dense_at(g, node)) is not None]


def weight_names(model: Any) -> list[str]:
    """Initializers used as weights of MatMul, Gemm and Conv nodes (at least 2-D)."""
    inits = {t.name: t for t in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm", "Conv", "ConvTranspose"):
            for name in node.input[:2]:
                if name in inits and len(inits[name].dims) >= 2 and name not in names:
                    names.append(name)
    return names


# input slots holding quantization scales / zero points rather than learned numbers
_QUANT_SLOTS = {
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
    "DynamicQuantizeLinear": set(),
    "MatMulInteger": {2, 3},
    "ConvInteger": {2, 3},
    "DynamicQuantizeMatMul": {2, 3},
    "MatMulIntegerToFloat": {2, 3, 4, 5},
    "MatMulNBits": {2, 3},
    "QGemm": {1, 2, 4, 5, 7, 8},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "QLinearConv": {1, 2, 4, 5, 6, 7},
    "QLinearAdd": {1, 2, 4, 5, 6, 7},
    "QLinearMul": {1, 2, 4, 5, 6, 7},
    "QLinearSoftmax": {1, 2, 3, 4},
}


def parameter_count(model: Any) -> int:
    """Learned numbers in the model: initializer elements, less quantization scales and zero
    points (found by the slot they feed, since names may be compacted); packed 4-bit weights
    count as their unpacked K x N."""
    g = Graph(model)
    skip: set[str] = set()
    count = 0
    for node in model.graph.node:
        slots = _QUANT_SLOTS.get(node.op_type, set())
        skip.update(name for i, name in enumerate(node.input) if i in slots)
        if node.op_type == "MatMulNBits":
            count += int(attr(node, "K")) * int(attr(node, "N"))
            skip.add(node.input[1])
        if node.op_type == "Mul":  # unfused dynamic int8: input scale x weight scale
            dq = [
                i
                for i in node.input
                if i in g.producer and g.producer[i].op_type == "DynamicQuantizeLinear"
            ]
            if dq:
                skip.update(i for i in node.input if i in g.inits)
    for t in model.graph.initializer:
        if t.name not in skip:
            count += int(np.prod(t.dims)) if len(t.dims) else 1
    return count


def save(model: Any, path: Path) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def strip(model: Any) -> Any:
    """Drop exporter debug metadata (per-node stack traces, doc strings) and stale value_info."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    model.graph.doc_string = ""
    return model


def toposort(model: Any) -> Any:
    """Order nodes so each runs after its inputs exist (some converters append nodes at the end)."""
    known = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    pending, ordered = list(model.graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise InvalidInput("the graph has a cycle or a node input that nothing produces")
        for node in ready:
            known.update(node.output)
        ordered.extend(ready)
        pending = [n for n in pending if all(n is not r for r in ready)]
    nodes = [type(n)() for n in ordered]
    for new, old in zip(nodes, ordered, strict=False):
        new.CopyFrom(old)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def compact_names(model: Any) -> Any:
    """Rename internal values, initializers and nodes to short names (inputs/outputs keep theirs).

    Quantizers spell out names like ``2.weight_kn_DequantizeLinear_Output``; on a small model
    those strings are a visible share of the file."""
    from onnx import AttributeProto

    if any(
        a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS)
        for n in model.graph.node
        for a in n.attribute
    ):
        return model  # subgraphs capture outer names; leave them alone
    keep = {i.name for i in model.graph.input} | {o.name for o in model.graph.output} | {""}
    mapping: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        if name not in mapping:
            mapping[name] = _base36(len(mapping))
        return mapping[name]

    for t in model.graph.initializer:
        t.name = short(t.name)
    for i, node in enumerate(model.graph.node):
        node.name = f"n{_base36(i)}"
        for j, name in enumerate(node.input):
            node.input[j] = short(name)
        for j, name in enumerate(node.output):
            node.output[j] = short(name)
    return model


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return "v" + out


def drop_unused(model: Any) -> Any:
    """Remove initializers no node reads any more."""
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model
