"""Quantization with ONNX Runtime's tooling.

bits=16                      fp16 weights and compute, float32 inputs/outputs kept
bits=8                       dynamic int8: int8 weights (per channel by default), activations
                             quantized on the fly; the default recipe for transformers
bits=8 + calibration data    static int8, per-channel weights, activation ranges calibrated with
                             MinMax, Entropy or Percentile; QDQ or QOperator format (by default
                             both are measured and the faster kept: ``api.quantize_model``)
bits=4                       4-bit weight-only blocks for MatMul (MatMulNBits)
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.compression import graph as gx
from modelport.compression.data import Dataset
from modelport.errors import BackendError, InvalidInput, first_line

BITS = (4, 8, 16)
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
FORMATS = ("auto", "qdq", "qoperator")  # auto: both measured, the faster kept (static int8 only)
DYNAMIC_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class QuantizeConfig:
    bits: int = 8
    method: str = "minmax"  # calibration method, static int8 only
    per_channel: bool = True
    format: str = "auto"  # static int8 only
    block_size: int = 32  # 4-bit only
    calibration_rows: int = 512

    def check(self, calibration: Dataset | None) -> QuantizeConfig:
        if self.bits not in BITS:
            raise InvalidInput(f"unsupported bit width {self.bits}; choose one of 4, 8 or 16")
        if self.method.lower() not in METHODS:
            raise InvalidInput(
                f"unknown calibration method {self.method!r}; choose MinMax, Entropy or Percentile"
            )
        if self.format.lower() not in FORMATS:
            raise InvalidInput(
                f"unknown quantization format {self.format!r}; choose auto, QDQ or QOperator"
            )
        if calibration is not None and self.bits != 8:
            raise InvalidInput("calibration data is used by static int8 only (--bits 8)")
        if self.bits == 4 and (self.block_size < 16 or self.block_size & (self.block_size - 1)):
            raise InvalidInput(
                f"the 4-bit block size must be a power of two >= 16, got {self.block_size}"
            )
        return self

    def params(self, calibration: Dataset | None) -> dict[str, Any]:
        """The exact recipe, recorded on the new version."""
        if self.bits == 16:
            return {"bits": 16, "mode": "fp16", "keep_io_types": True}
        if self.bits == 4:
            return {
                "bits": 4,
                "mode": "weight-only",
                "op": "MatMul",
                "block_size": self.block_size,
                "symmetric": True,
                "accuracy_level": 4,
            }
        if calibration is None:
            return {
                "bits": 8,
                "mode": "dynamic",
                "per_channel": self.per_channel,
                "weight_type": "int8",
                "ops": list(DYNAMIC_OPS),
            }
        return {
            "bits": 8,
            "mode": "static",
            "format": self.format.lower(),
            "per_channel": self.per_channel,
            "method": METHODS[self.method.lower()],
            "activation_type": "uint8",
            "weight_type": "int8",
            "calibration_rows": min(len(calibration), self.calibration_rows),
        }


def quantize(
    src: Path, dst: Path, config: QuantizeConfig, calibration: Dataset | None = None
) -> dict[str, Any]:
    """Write the quantized form of ``src`` to ``dst``; returns the recipe parameters."""
    config.check(calibration)
    if calibration is not None and config.format.lower() == "auto":
        raise InvalidInput("quantize() writes one format: give qdq or qoperator")
    model = gx.load(src)
    if any(t.data_type not in (1, 6, 7, 9) for t in model.graph.initializer if len(t.dims) >= 2):
        raise InvalidInput("the model is already quantized (its weights are not float32)")
    if config.bits == 16:
        _fp16(model, dst)
    elif config.bits == 4:
        _int4(model, dst, config)
    else:
        prepared = dst.with_name("prepared.onnx")
        # dynamic quantization skips Gemm; static keeps it (QGemm carries an int32 bias)
        gx.save(model if calibration is not None else gemm_to_matmul(model), prepared)
        with _quiet():
            _int8(prepared, dst, config, calibration)
        prepared.unlink(missing_ok=True)
        result = gx.load(dst)
        if not any(t.data_type in (2, 3) for t in result.graph.initializer):  # uint8 / int8
            raise InvalidInput(
                "int8 quantization found nothing to quantize"
                + (
                    " (dynamic int8 covers MatMul and Gemm; for Conv give --calibration data)"
                    if calibration is None
                    else ""
                )
            )
        gx.save(float_outputs(drop_zero_points(result)), dst)
        if calibration is None:
            return {**config.params(None), **left_in_float(model)}
    return config.params(calibration)


def left_in_float(model: Any) -> dict[str, Any]:
    """What dynamic int8 does not touch: weighted operators other than MatMul/Gemm (Conv first
    of all), and the share of the parameters they hold: ``{"left_in_float": {"Conv": 5},
    "float_parameter_share": 0.93}`` (empty when it covers everything)."""
    import numpy as np

    g = gx.Graph(model)
    left: dict[str, int] = {}
    sizes = {name: int(np.prod(t.dims)) for name, t in g.inits.items() if len(t.dims) >= 2}
    total = sum(sizes.values())
    floating = 0
    for node in model.graph.node:
        weights = [sizes[i] for i in node.input if i in sizes]
        if weights and node.op_type not in DYNAMIC_OPS:
            left[node.op_type] = left.get(node.op_type, 0) + 1
            floating += sum(weights)
    if not left:
        return {}
    return {"left_in_float": left, "float_parameter_share": round(floating / max(total, 1), 4)}


@contextlib.contextmanager
def _quiet() -> Any:
    """ORT's quantizer prints and logs at INFO on the root logger; its errors become one line."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            yield
        except (InvalidInput, BackendError):
            raise
        except Exception as exc:  # ORT's quantizer raises plain exceptions
            raise BackendError(f"ONNX Runtime quantization failed: {first_line(exc)}") from None
        finally:
            root.setLevel(level)


def _fp16(model: Any, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet():
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    gx.save(gx.toposort(half), dst)


def _int4(model: Any, dst: Path, config: QuantizeConfig) -> None:
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError:  # older ONNX Runtime
        raise InvalidInput(
            "this ONNX Runtime has no 4-bit MatMul quantizer (MatMulNBits)"
        ) from None
    model = gemm_to_matmul(model)
    before = sum(1 for n in model.graph.node if n.op_type == "MatMul")
    with _quiet():
        quantizer = MatMulNBitsQuantizer(
            model, block_size=config.block_size, is_symmetric=True, accuracy_level=4
        )
        quantizer.process()
        result = quantizer.model.model
    if not any(n.op_type == "MatMulNBits" for n in result.graph.node):
        raise InvalidInput(
            f"4-bit quantization found no MatMul it can pack ({before} MatMul node(s); "
            "weights need "
            "a constant 2-D initializer)"
        )
    gx.save(result, dst)


def _int8(src: Path, dst: Path, config: QuantizeConfig, calibration: Dataset | None) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if calibration is None:
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=list(DYNAMIC_OPS),
            per_channel=config.per_channel,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True},
        )
        return

    rows = calibration.take(config.calibration_rows)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(rows.batches(1 if config.method.lower() != "minmax" else 32))

        def get_next(self) -> dict | None:
            return next(self._it, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ if config.format.lower() == "qdq" else QuantFormat.QOperator,
        per_channel=config.per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, METHODS[config.method.lower()]),
        op_types_to_quantize=["MatMul", "Gemm", "Conv", "Relu", "MaxPool"],
        extra_options={"MatMulConstBOnly": True},
    )


def gemm_to_matmul(model: Any) -> Any:
    """Rewrite ``Gemm(x, W, b)`` with constant weights as ``MatMul + Add``, which every quantizer
    handles (dynamic quantization ignores Gemm)."""
    import onnx
    from onnx import helper

    g = gx.Graph(model)
    nodes = []
    for node in model.graph.node:
        dense = gx._dense_at(g, node) if node.op_type == "Gemm" else None
        if dense is None:
            nodes.append(node)
            continue
        w = dense.weight()
        name = node.name or dense.weight_name
        w_name = dense.weight_name + "_kn" if dense.transposed else dense.weight_name
        if dense.transposed:
            model.graph.initializer.append(onnx.numpy_helper.from_array(w.copy(), w_name))
        out = node.output[0]
        if dense.bias_name is None:
            nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [out], name=name))
        else:
            mid = out + "_mm"
            nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mid], name=name))
            nodes.append(
                helper.make_node("Add", [mid, dense.bias_name], [out], name=name + "_bias")
            )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return gx.drop_unused(model)


def drop_zero_points(model: Any) -> Any:
    """Remove all-zero zero points of constant int8/int32 DequantizeLinear inputs (symmetric
    weights and biases): the operator defaults to zero, and on a small model they cost ~5%."""
    import numpy as np
    from onnx import numpy_helper

    g = gx.Graph(model)
    for node in model.graph.node:
        if (
            node.op_type != "DequantizeLinear"
            or len(node.input) < 3
            or node.input[0] not in g.inits
        ):
            continue
        zp = node.input[2]
        if zp in g.inits and g.inits[zp].data_type == 6:  # int32 (biases)
            if not np.any(numpy_helper.to_array(g.inits[zp])):
                del node.input[2]
    return gx.drop_unused(model)


def float_outputs(model: Any) -> Any:
    """Where a quantized matmul's result only goes back to float (into Softmax or a graph output),
    skip the round trip: ``QGemm -> DequantizeLinear`` becomes a float-output QGemm, and in QDQ
    form ``Gemm -> QuantizeLinear -> DequantizeLinear`` loses the pair, which ONNX Runtime then
    fuses into the same float-output QGemm. One kernel less per call matters on small models."""
    g = gx.Graph(model)
    for node in list(model.graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] not in g.producer:
            continue
        src = g.producer[node.input[0]]
        if len(g.consumers[node.input[0]]) != 1 or node.input[0] in g.outputs:
            continue
        users = g.consumers.get(node.output[0], [])
        if any(u.op_type in ("QuantizeLinear", *_QUANTIZED_COMPUTE) for u in users):
            continue  # the value feeds more int8 work: keep it quantized
        if src.op_type == "QGemm" and len(src.input) >= 9:
            del src.input[7:]
            src.output[0] = node.output[0]
            model.graph.node.remove(node)
        elif src.op_type == "QuantizeLinear" and src.input[0] in g.producer:
            compute = g.producer[src.input[0]]
            if compute.op_type in _QUANTIZED_COMPUTE and len(g.consumers[src.input[0]]) == 1:
                compute.output[0] = node.output[0]
                model.graph.node.remove(src)
                model.graph.node.remove(node)
    return gx.drop_unused(model)


_QUANTIZED_COMPUTE = ("Gemm", "MatMul", "Conv")
