"""A plain MLP in PyTorch: built from hidden sizes (a distillation student) or rebuilt from an ONNX
chain of dense layers (to fine-tune after pruning, then written back into the same graph)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelport.compression import graph as gx
from modelport.compression.training import import_torch
from modelport.errors import InvalidInput

_ACTIVATIONS = ("Relu", "Tanh", "Sigmoid", "Gelu", "LeakyRelu")


def build(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    activations: Sequence[str] | None = None,
    softmax: bool = False,
) -> Any:
    """``Linear -> act -> ... -> Linear [-> Softmax]``; ``.logits(x)`` skips the softmax."""
    torch = import_torch()
    nn = torch.nn
    if any(int(h) < 1 for h in hidden):
        raise InvalidInput(f"hidden sizes must be positive, got {list(hidden)}")
    sizes = [n_in, *[int(h) for h in hidden], n_out]
    acts = list(activations) if activations is not None else ["Relu"] * len(hidden) + [None]

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linears = nn.ModuleList(
                nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False)
            )
            self.acts = nn.ModuleList(_activation(nn, a) for a in acts)
            self.softmax = softmax

        def logits(self, x: Any) -> Any:
            for linear, act in zip(self.linears, self.acts, strict=False):
                x = act(linear(x))
            return x

        def forward(self, x: Any) -> Any:
            z = self.logits(x)
            return torch.softmax(z, dim=-1) if self.softmax else z

    return MLP()


def _activation(nn: Any, op: str | None) -> Any:
    return {
        None: nn.Identity(),
        "Relu": nn.ReLU(),
        "Tanh": nn.Tanh(),
        "Sigmoid": nn.Sigmoid(),
        "Gelu": nn.GELU(),
        "LeakyRelu": nn.LeakyReLU(0.01),
    }[op]


def chain(model: Any) -> tuple[gx.Graph, list[gx.Dense], bool]:
    """The dense layers of a pure MLP graph in order, and whether it ends with a Softmax."""
    g = gx.Graph(model)
    inits = set(g.inits)
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise InvalidInput("fine-tuning needs a model with one input and one output")
    by_node = {id(d.node): d for d in gx.dense_layers(model, g)}
    layers: list[gx.Dense] = []
    value, softmax = inputs[0], False
    while value not in g.outputs:
        nxt = g.only_consumer(value)
        if nxt is not None and id(nxt) in by_node and nxt.input[0] == value:
            layer = by_node[id(nxt)]
            act = layer.activation.op_type if layer.activation is not None else None
            if act is not None and act not in _ACTIVATIONS:
                raise InvalidInput(f"fine-tuning does not support the {act} activation")
            if act == "LeakyRelu" and abs(gx.attr(layer.activation, "alpha", 0.01) - 0.01) > 1e-9:
                raise InvalidInput("fine-tuning supports LeakyRelu with alpha 0.01 only")
            layers.append(layer)
            value = layer.output
        elif nxt is not None and nxt.op_type == "Softmax" and layers and not softmax:
            softmax, value = True, nxt.output[0]
        else:
            what = nxt.op_type if nxt is not None else "a value used twice"
            raise InvalidInput(
                f"fine-tuning needs a plain MLP (dense layers, activations, an optional softmax); "
                f"found {what}"
            )
    if not layers:
        raise InvalidInput("fine-tuning needs at least one dense layer")
    return g, layers, softmax


def from_onnx(model: Any) -> tuple[Any, list[gx.Dense]]:
    """A torch MLP holding the weights of the ONNX chain, and the layers to write them back to."""
    torch = import_torch()
    _, layers, softmax = chain(model)
    acts = [d.activation.op_type if d.activation is not None else None for d in layers]
    n_in = layers[0].weight().shape[0]
    hidden = [d.units for d in layers[:-1]]
    net = build(n_in, hidden, layers[-1].units, acts, softmax)
    with torch.no_grad():
        for linear, d in zip(net.linears, layers, strict=False):
            linear.weight.copy_(torch.from_numpy(d.weight().T.copy()))
            bias = d.bias()
            linear.bias.copy_(
                torch.from_numpy(bias.copy()) if bias is not None else torch.zeros(d.units)
            )
            linear.bias.requires_grad_(bias is not None)
    return net, layers


def write_back(net: Any, layers: list[gx.Dense]) -> None:
    for linear, d in zip(net.linears, layers, strict=False):
        d.set_weight(linear.weight.detach().numpy().T.astype(np.float32))
        if d.bias_name is not None:
            d.set_bias(linear.bias.detach().numpy())
