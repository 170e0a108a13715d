"""Transformer encoder graphs fused for ONNX Runtime on CPU, and their int8 form.

    fused = fuse_encoder(Path("export.onnx"), Path("fused.onnx"), heads=12, hidden=384)
    fused["fused"]      # {"Attention": 6, "SkipLayerNormalization": 12, "BiasGelu": 6, ...}
    settings = quantize_encoder(Path("fused.onnx"), Path("int8.onnx"))
    settings["reduce_range"]   # False where the CPU has int8 dot products (VNNI)

ONNX Runtime's transformer optimizer rewrites each layer's attention (Q, K, V projections,
scores, mask, softmax, context) into one ``Attention`` node, residual + LayerNorm into
``SkipLayerNormalization`` and bias + GELU into ``BiasGelu``; the graph keeps the same inputs
and output. The embedding LayerNorm stays unfused so the word, position and type tables stay
``Gather`` nodes, which int8 quantization stores as int8 (they are most of a small encoder's
bytes). int8 is dynamic (activations quantized per batch, unsigned; weights signed, one scale
per output channel); on x86 without VNNI the weights keep 7 bits (``reduce_range``), as
ONNX Runtime advises, so the AVX2 kernel's 16-bit sums cannot saturate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INT8_OPS = ("MatMul", "Attention", "Gather")


def fuse_encoder(src: Path, dst: Path, heads: int, hidden: int) -> dict[str, Any]:
    """Write the fused graph of ``src`` to ``dst``; the fused operator counts, for the record."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False  # keeps the tables as Gather, which int8 quantizes
    model = optimizer.optimize_model(
        str(src),
        model_type="bert",
        num_heads=heads,
        hidden_size=hidden,
        optimization_options=options,
        opt_level=0,  # graph rewrites only; ONNX Runtime applies its own at load time
    )
    model.save_model_to_file(str(dst))
    counts = model.get_fused_operator_statistics()
    return {
        "optimizer": "onnxruntime.transformers bert",
        "fused": {k: v for k, v in counts.items() if v},
    }


def quantize_encoder(src: Path, dst: Path) -> dict[str, Any]:
    """Dynamic int8 of a (fused) encoder graph; the settings used, for the record."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from modelport.compression.cpu import cpu_info

    info = cpu_info()
    reduce_range = "avx2" in info.flags and not info.has_vnni
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=list(INT8_OPS),
        per_channel=True,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
        # fused nodes carry no shape information the quantizer can read: their outputs are float
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    return {
        "quantized_ops": list(INT8_OPS),
        "activations": "uint8 dynamic",
        "weights": "int8 per-channel",
        "reduce_range": reduce_range,
        "cpu_int8": info.int8_features,
    }
