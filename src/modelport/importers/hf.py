"""Hugging Face checkpoint folders (config.json, *.safetensors, tokenizer) as artifacts.

    card = read_card(Path("my-llama"))   # task, architecture, parameters, context, vocab, ...
    artifact = from_folder(Path("my-llama"))

The tokenizer files and the chat template are files of the version, content-addressed like the
weights. Each safetensors file's header is read (never its data) and checked against the file
size, so a truncated or corrupt checkpoint is refused at registration with the reason.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput
from modelport.registry.artifact import Artifact
from modelport.signature import Signature, TensorSpec

FORMAT = "hf"
TASKS = {"ForCausalLM": "text-generation", "ForSequenceClassification": "text-classification"}
MAX_HEADER = 100 << 20
DTYPE_NAMES = {"F32": "F32", "F16": "F16", "BF16": "BF16", "I8": "INT8", "U8": "UINT8"}


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def text_signature(task: str) -> Signature:
    """Text in; text, vectors or class scores out: what V2 clients see for a language model."""
    outputs = {
        "text-generation": TensorSpec("text_output", "string", (-1,)),
        "text-classification": TensorSpec("logits", "float32", (-1, -1)),
    }
    out = outputs.get(task, TensorSpec("embedding", "float32", (-1, -1)))
    return Signature((TensorSpec("text_input", "string", (-1,)),), (out,))


def safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of one safetensors file, checked against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidInput(f"{path.name} is truncated (no safetensors header)")
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER or 8 + n > size:
            raise InvalidInput(f"{path.name} is corrupt or truncated (header of {n} bytes)")
        try:
            table = json.loads(f.read(n))
        except ValueError:
            raise InvalidInput(f"{path.name} has a corrupt safetensors header") from None
    if not isinstance(table, dict):
        raise InvalidInput(f"{path.name} has a corrupt safetensors header")
    table.pop("__metadata__", None)
    data = size - 8 - n
    for name, info in table.items():
        try:
            start, end = info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"{path.name}: tensor {name!r} has no data offsets") from None
        if end > data or start > end:
            raise InvalidInput(
                f"{path.name} is truncated: tensor {name!r} ends at byte {end} of the data, "
                f"which holds {data}"
            )
    return table


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path.name} must hold a JSON object")
    return data


def chat_template(folder: Path) -> str | None:
    """The Jinja chat template shipped with the tokenizer, if any."""
    loose = folder / "chat_template.jinja"
    if loose.is_file():
        return loose.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    template = _json(config).get("chat_template") if config.is_file() else None
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def read_card(folder: Path) -> dict[str, str]:
    config = _json(folder / "config.json")
    archs = config.get("architectures") or [config.get("model_type", "unknown")]
    arch = str(archs[0])
    task = next((t for suffix, t in TASKS.items() if arch.endswith(suffix)), "feature-extraction")
    if not (folder / "tokenizer.json").is_file():
        raise InvalidInput(f"{folder} has no tokenizer.json (a fast tokenizer is needed)")
    _json(folder / "tokenizer.json")
    params, dtypes = 0, {}
    for shard in sorted(folder.glob("*.safetensors")):
        for info in safetensors_header(shard).values():
            count = 1
            for d in info.get("shape", ()):
                count *= d
            params += count
            dtypes[info.get("dtype")] = dtypes.get(info.get("dtype"), 0) + count
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        missing = {s for s in _json(index).get("weight_map", {}).values()}
        missing -= {p.name for p in folder.glob("*.safetensors")}
        if missing:
            raise InvalidInput(f"{folder} lacks shard(s) {sorted(missing)} named by its index")
    top = max(dtypes, key=dtypes.__getitem__) if dtypes else "F32"
    quant = (
        config.get("quantization_config", {}).get("quant_method")
        if isinstance(config.get("quantization_config"), dict)
        else None
    )
    return {
        "task": task,
        "architecture": arch,
        "parameters": str(params),
        "context_length": str(config.get("max_position_embeddings", 0)),
        "vocab_size": str(config.get("vocab_size", 0)),
        "quantization": str(quant or DTYPE_NAMES.get(top, top)),
        "chat_template": "yes" if chat_template(folder) else "no",
    }


def from_folder(folder: Path) -> Artifact:
    return folder_artifact(folder, FORMAT, "config.json", read_card)


def folder_artifact(
    folder: Path, fmt: str, entrypoint: str, card_of: Callable[[Path], dict[str, str]]
) -> Artifact:
    """A model folder as an artifact: every file, the card read by ``card_of`` as tags (its
    refusal names the folder)."""
    try:
        card = card_of(folder)
    except InvalidInput as exc:
        raise InvalidInput(f"{folder}: {exc}") from None
    return Artifact(
        fmt, folder, folder_files(folder), entrypoint, text_signature(card["task"]), card
    )


def folder_files(folder: Path) -> tuple[str, ...]:
    """Every file under ``folder`` (relative paths), hidden ones left out."""
    return tuple(
        str(p.relative_to(folder))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
