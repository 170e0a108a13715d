"""What a language model will take in memory once open, known before it is opened.

    need = footprint(Path("smollm2.gguf"), "gguf", 105_000_000, EngineOptions(slots=4))
    need.total       # bytes: the weights (the version's files) + every slot's key/value cache
    str(need)        # "101.2 MiB (weights 100.1 MiB + cache for 4 x 2048 positions 1.1 MiB)"

The cache is ``slots x context x layers x 2 x kv_heads x head_dim`` elements (f16 for
llama.cpp, f32 for an fp32 GGUF and for onnxruntime-genai on CPU), with the context the engine
would open (the asked one, else the model's, at most 4096; llama.cpp pads to 256).
Encoders and other formats count their weights alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from modelport.generation.options import EngineOptions


@dataclass(frozen=True, slots=True)
class Footprint:
    weights: int
    cache: int = 0
    slots: int = 0
    context: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.cache

    def __str__(self) -> str:
        text = f"{mib(self.total)} (weights {mib(self.weights)}"
        if self.cache:
            text += f" + cache for {self.slots} x {self.context} positions {mib(self.cache)}"
        return text + ")"


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def footprint(path: Path, fmt: str, weights: int, options: EngineOptions) -> Footprint:
    """The memory of ``path`` (a ``fmt`` model whose files hold ``weights`` bytes) opened with
    ``options``."""
    shape = _gguf(path) if fmt == "gguf" else _genai(path) if fmt == "genai" else None
    if shape is None:
        return Footprint(weights)
    layers, kv_width, trained, element = shape
    context = min(options.context or 4096, trained or 1 << 20)
    if fmt == "gguf":
        context = -(-context // 256) * 256
    cache = options.slots * context * layers * 2 * kv_width * element
    return Footprint(weights, cache, options.slots, context)


def _gguf(path: Path) -> tuple[int, int, int, int]:
    from modelport.importers.gguf import read_header

    meta = read_header(path).metadata
    arch = meta.get("general.architecture", "")

    def number(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(value[0] if isinstance(value, list) else value)

    heads = number("attention.head_count", 1) or 1
    head_dim = number("attention.key_length") or number("embedding_length") // heads
    kv_heads = number("attention.head_count_kv") or heads
    element = 4 if meta.get("general.file_type") == 0 else 2
    return number("block_count"), kv_heads * head_dim, number("context_length"), element


def _genai(path: Path) -> tuple[int, int, int, int]:
    folder = path if path.is_dir() else path.parent
    model = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))["model"]
    decoder = model["decoder"]
    heads = int(decoder.get("num_attention_heads", 1))
    kv_heads = int(decoder.get("num_key_value_heads") or heads)
    head_dim = int(decoder.get("head_size") or int(decoder.get("hidden_size", 0)) // heads)
    layers = int(decoder.get("num_hidden_layers", 0))
    return layers, kv_heads * head_dim, int(model.get("context_length", 0)), 4
