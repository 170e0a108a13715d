"""Pruning on the ONNX graph.

Unstructured: weights of MatMul/Gemm/Conv with small magnitude become zero (by a threshold, or to
reach a target sparsity globally or per layer). The matrices keep their shape, so a dense runtime
runs exactly as fast as before; only gzip sees the zeros.

Structured: whole hidden units of dense layers (MatMul/Gemm [+ Add bias] [+ activation] feeding the
next dense layer) and whole output channels of a Conv feeding the next Conv are removed, so the
matrices really shrink.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.compression import graph as gx
from modelport.errors import InvalidInput

SCOPES = ("global", "layer")


def check_fraction(value: float, what: str) -> float:
    if not (0.0 <= float(value) < 1.0):
        raise InvalidInput(f"{what} must be in [0, 1), got {value}")
    return float(value)


def magnitude(
    model: Any,
    *,
    threshold: float | None = None,
    sparsity: float | None = None,
    scope: str = "global",
) -> dict[str, float]:
    """Zero small weights in place; returns the achieved sparsity per weight tensor."""
    if (threshold is None) == (sparsity is None):
        raise InvalidInput("give exactly one of a threshold or a target sparsity")
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise InvalidInput(f"the threshold must be a non-negative number, got {threshold}")
    if sparsity is not None:
        check_fraction(sparsity, "sparsity")
    g = gx.Graph(model)
    names = gx.weight_names(model)
    if not names:
        raise InvalidInput("the model has no MatMul, Gemm or Conv weights to prune")
    weights = {n: g.array(n) for n in names}
    if any(w.dtype.kind != "f" for w in weights.values()):
        raise InvalidInput("magnitude pruning needs float weights; prune before quantizing")
    if sparsity is not None and scope == "global":
        threshold = _kth_magnitude(
            np.concatenate([np.abs(w).ravel() for w in weights.values()]), sparsity
        )
    achieved = {}
    for name, w in weights.items():
        cut = threshold if threshold is not None else _kth_magnitude(np.abs(w).ravel(), sparsity)
        pruned = np.where(np.abs(w) < cut, np.zeros_like(w), w)
        g.set_array(name, pruned)
        achieved[name] = 1.0 - np.count_nonzero(pruned) / pruned.size
    return achieved


def _kth_magnitude(values: np.ndarray, sparsity: float | None) -> float:
    """The magnitude below which ``sparsity`` of ``values`` lie (exclusive cut)."""
    k = int(round(float(sparsity or 0.0) * values.size))
    if k <= 0:
        return 0.0
    return float(np.partition(values, k - 1)[k - 1]) + 1e-30 if k < values.size else np.inf


def structured(model: Any, fraction: float) -> dict[str, tuple[int, int]]:
    """Remove ``fraction`` of the hidden units / channels of every prunable layer, in place.

    Returns layer name -> (units before, units after). Raises when nothing can be pruned."""
    check_fraction(fraction, "the fraction of units to remove")
    g = gx.Graph(model)
    changed: dict[str, tuple[int, int]] = {}
    for first, second in _dense_pairs(model, g):
        before = first.units
        keep = _keep(
            np.linalg.norm(first.weight(), axis=0) * np.linalg.norm(second.weight(), axis=1),
            fraction,
        )
        first.set_weight(first.weight()[:, keep])
        if first.bias_name is not None:
            first.set_bias(first.bias()[keep])
        second.set_weight(second.weight()[keep, :])
        changed[first.node.name or first.weight_name] = (before, int(keep.size))
    for conv, between, nxt in _conv_pairs(model, g):
        w = g.array(conv.input[1])
        keep = _keep(np.abs(w).reshape(w.shape[0], -1).sum(axis=1), fraction)
        g.set_array(conv.input[1], w[keep])
        if len(conv.input) > 2 and conv.input[2]:
            g.set_array(conv.input[2], g.array(conv.input[2])[keep])
        for node in between:  # BatchNormalization: scale, B, mean, var are per channel
            for name in node.input[1:]:
                g.set_array(name, g.array(name)[keep])
        w2 = g.array(nxt.input[1])
        g.set_array(nxt.input[1], w2[:, keep])
        changed[conv.name or conv.input[1]] = (int(w.shape[0]), int(keep.size))
    if not changed:
        raise InvalidInput(
            "no prunable hidden units found: structured pruning needs a dense layer (MatMul/Gemm "
            "with a weight initializer) feeding another one, or a Conv feeding another Conv"
        )
    del model.graph.value_info[:]  # intermediate shapes changed; let the runtime infer them
    return changed


def _keep(scores: np.ndarray, fraction: float) -> np.ndarray:
    n_keep = max(1, int(round(scores.size * (1.0 - fraction))))
    return np.sort(np.argsort(-scores, kind="stable")[:n_keep])


def _dense_pairs(model: Any, g: gx.Graph) -> list[tuple[gx.Dense, gx.Dense]]:
    layers = gx.dense_layers(model, g)
    by_node = {id(d.node): d for d in layers}
    pairs = []
    for d in layers:
        nxt = g.only_consumer(d.output)
        if nxt is not None and id(nxt) in by_node and nxt.input[0] == d.output:
            second = by_node[id(nxt)]
            if d.weight().dtype.kind == "f" and second.weight().dtype.kind == "f":
                pairs.append((d, second))
    return pairs


def _conv_pairs(model: Any, g: gx.Graph) -> list[tuple[Any, list[Any], Any]]:
    pairs = []
    for conv in model.graph.node:
        if not _plain_conv(conv, g):
            continue
        value, between = conv.output[0], []
        while (nxt := g.only_consumer(value)) is not None:
            if nxt.op_type == "BatchNormalization" and all(i in g.inits for i in nxt.input[1:]):
                between.append(nxt)
            elif nxt.op_type not in gx.CHANNELWISE:
                break
            value = nxt.output[0]
        if nxt is not None and _plain_conv(nxt, g) and nxt.input[0] == value:
            pairs.append((conv, between, nxt))
    return pairs


def _plain_conv(node: Any, g: gx.Graph) -> bool:
    return (
        node.op_type == "Conv"
        and gx.attr(node, "group", 1) == 1
        and len(node.input) > 1
        and node.input[1] in g.inits
        and g.array(node.input[1]).dtype.kind == "f"
    )
