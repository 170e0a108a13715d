"""Hugging Face Llama / Qwen2 checkpoint -> GGUF (f32 or q8_0), served by llama.cpp.

    version = convert_to_gguf(registry, "tiny-llama:1", precision="q8_0")

Weights are renamed to llama.cpp's tensor names (Llama's query and key rows are reordered for
its rotary layout), the byte-level BPE vocabulary and merges come from ``tokenizer.json`` and
the chat template from the tokenizer config. Each conversion records a parity check against
the fp32 transformers model: greedy next-token agreement over a text and the perplexity change,
and is refused above the tolerance unless forced.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from modelport.conversion.textparity import (
    PARITY_TEXT,
    check,
    checkpoint,
    measure,
    parity_tokens,
)
from modelport.errors import InvalidInput
from modelport.importers.hf import chat_template
from modelport.registry import ModelVersion, Registry

ARCHS = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
PRECISIONS = {"f32": 0, "q8_0": 7}  # llama.cpp file types
TOLERANCE = {"f32": (0.99, 0.01), "q8_0": (0.90, 0.05)}  # least agreement, most ppl change
_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}  # fmt: skip


def _name(hf: str) -> str | None:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[:2] == ["model", "layers"] and len(parts) >= 5:
        module, kind = ".".join(parts[3:-1]), parts[-1]
        if module in _LAYER:
            return f"blk.{parts[2]}.{_LAYER[module]}.{kind}"
    return None


def _rotary_order(w: np.ndarray, heads: int) -> np.ndarray:
    """Llama's HF rows are [first halves..., second halves...] per head; llama.cpp interleaves."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def _vocab(folder: Path, size: int) -> tuple[list[str], list[int], list[str]]:
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise InvalidInput("only byte-level BPE tokenizers convert to GGUF here")
    by_id = {i: t for t, i in model["vocab"].items()}
    special = set()
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        if added.get("special"):
            special.add(added["id"])
    tokens, types = [], []
    for i in range(max(size, len(by_id))):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(3 if i in special else (5 if i not in by_id else 1))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def write_gguf(folder: Path, target: Path, precision: str) -> dict[str, Any]:
    import gguf

    config = json.loads((folder / "config.json").read_text())
    arch = ARCHS.get((config.get("architectures") or [""])[0])
    if arch is None:
        raise InvalidInput(
            f"GGUF conversion supports {sorted(ARCHS)}, not {config.get('architectures')}"
        )
    w = gguf.GGUFWriter(str(target), arch)
    heads, kv_heads = _write_hyperparameters(w, folder, config, precision)
    _write_tokenizer(w, folder, config, arch)
    count = _write_tensors(w, folder, arch, precision, heads, kv_heads)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"architecture": arch, "parameters": count}


def _write_hyperparameters(
    w: Any, folder: Path, config: dict[str, Any], precision: str
) -> tuple[int, int]:
    """The model's shape as GGUF metadata; returns (attention heads, key-value heads)."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    w.add_name(folder.name)
    w.add_context_length(config.get("max_position_embeddings", 2048))
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    w.add_rope_freq_base(config.get("rope_theta", 10000.0))
    w.add_rope_dimension_count(config.get("head_dim") or config["hidden_size"] // heads)
    w.add_file_type(PRECISIONS[precision])
    return heads, kv_heads


def _write_tokenizer(w: Any, folder: Path, config: dict[str, Any], arch: str) -> None:
    tokens, types, merges = _vocab(folder, config["vocab_size"])
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch == "qwen2" else "default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, add in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id)):
        value = config.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            add(value)
    w.add_add_bos_token(False)
    template = chat_template(folder)
    if template:
        w.add_chat_template(template)


def _write_tensors(
    w: Any, folder: Path, arch: str, precision: str, heads: int, kv_heads: int
) -> int:
    """Every weight of the checkpoint's shards under its GGUF name; returns the parameter count."""
    import gguf
    from safetensors import safe_open

    count = 0
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="np") as f:
            for key in f.keys():
                name = _name(key)
                if name is None:
                    continue
                data = f.get_tensor(key).astype(np.float32)
                if arch == "llama" and ".attn_q." in name and name.endswith("weight"):
                    data = _rotary_order(data, heads)
                elif arch == "llama" and ".attn_k." in name and name.endswith("weight"):
                    data = _rotary_order(data, kv_heads)
                if precision == "q8_0" and data.ndim == 2 and data.shape[-1] % 32 == 0:
                    kind = gguf.GGMLQuantizationType.Q8_0
                    w.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
                else:
                    w.add_tensor(name, data)
                count += int(data.size)
    return count


def measure_parity(folder: Path, gguf_path: Path, text: str = PARITY_TEXT) -> dict[str, float]:
    """Teacher-forced on ``text``: how often both models pick the same next token, and the
    perplexity of each (``textparity``)."""
    from modelport.generation.llama import LlamaModel
    from modelport.generation.options import EngineOptions

    ids, expected = parity_tokens(folder, text)
    limit = len(ids)
    options = EngineOptions(slots=1, context=limit, batch=max(limit, 32), threads=1)
    return measure(ids, expected, LlamaModel.load(gguf_path, options, limit, f32_cache=True))


def convert_to_gguf(
    registry: Registry, ref: str, precision: str = "f32", force: bool = False
) -> ModelVersion:
    from modelport.importers.gguf import from_file

    if precision not in PRECISIONS:
        raise InvalidInput(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    parent, folder = checkpoint(registry, ref)
    with tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="gguf-") as work:
        target = Path(work) / f"{parent.name}-{precision}.gguf"
        facts = write_gguf(folder, target, precision)
        parity = measure_parity(folder, target)
        check(parity, TOLERANCE[precision], f"the {precision} GGUF", force)
        change = parity["perplexity_change"]
        artifact = from_file(target)
        params = {"to": "gguf", "precision": precision, **facts, **parity}
        return registry.add(
            artifact, parent.name, parent=parent.ref, transform="convert",
            transform_params=params,
            metrics={"next_token_agreement": parity["next_token_agreement"],
                     "perplexity_change": change},
        )  # fmt: skip
