"""onnxruntime-genai model folders (genai_config.json, model.onnx + its data, tokenizer).

    card = read_card(Path("tiny-int4"))     # task, architecture, parameters, quantization, ...
    artifact = from_folder(Path("tiny-int4"))

The decoder graph is parsed without its weights; every external weight's offset and length is
checked against its data file, so a truncated or corrupt folder is refused at registration with
the reason. The tokenizer and chat template are files of the version like the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput
from modelport.importers.hf import chat_template, folder_artifact
from modelport.registry.artifact import Artifact

FORMAT = "genai"
CONFIG = "genai_config.json"
_NOT_WEIGHTS = ("cos_cache", "sin_cache")


def is_genai_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


def _config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{CONFIG} is not valid JSON: {exc}") from None
    model = data.get("model") if isinstance(data, dict) else None
    decoder = model.get("decoder") if isinstance(model, dict) else None
    if not isinstance(decoder, dict) or not isinstance(decoder.get("filename"), str):
        raise InvalidInput(f"{CONFIG} names no decoder model (model.decoder.filename)")
    return model


def _graph(folder: Path, name: str):
    """The decoder graph without its weights, each external weight checked against its file."""
    import onnx
    from google.protobuf.message import DecodeError

    path = folder / name
    if not path.is_file():
        raise InvalidInput(f"the decoder {name} named by {CONFIG} is missing")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidInput(f"{name} is not a valid ONNX model ({exc})") from None
    sizes: dict[str, int] = {}
    for init in graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        location = info.get("location", "")
        if location not in sizes:
            data = folder / location
            if not location or Path(location).is_absolute() or ".." in Path(location).parts:
                raise InvalidInput(f"{name}: weight {init.name!r} points outside the folder")
            if not data.is_file():
                raise InvalidInput(f"{name}: the weights file {location} is missing")
            sizes[location] = data.stat().st_size
        end = int(info.get("offset", 0)) + int(info.get("length", 0))
        if end > sizes[location]:
            raise InvalidInput(
                f"{location} is truncated: weight {init.name!r} ends at byte {end}, the file "
                f"holds {sizes[location]}"
            )
    return graph


def _weights(graph) -> tuple[int, str]:
    """(parameter count, quantization): MatMulNBits weights count as their K x N elements."""
    import onnx

    bits, packed, skip = set(), {}, set()
    for node in graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            bits.add(int(attrs.get("bits", 4)))
            packed[node.input[1]] = int(attrs["K"]) * int(attrs["N"])
            skip.update(node.input[2:])
    count, dtypes = 0, {}
    for init in graph.initializer:
        if init.name in skip or init.name.endswith(_NOT_WEIGHTS):
            continue
        n = packed.get(init.name)
        if n is None:
            n = 1
            for d in init.dims:
                n *= d
        count += n
        kind = onnx.TensorProto.DataType.Name(init.data_type)
        dtypes[kind] = dtypes.get(kind, 0) + n
    if bits:
        return count, "+".join(f"INT{b}" for b in sorted(bits))
    top = max(dtypes, key=dtypes.__getitem__) if dtypes else "FLOAT"
    return count, {"FLOAT": "F32", "FLOAT16": "F16", "BFLOAT16": "BF16"}.get(top, top)


def read_card(folder: Path) -> dict[str, str]:
    model = _config(folder)
    if not (folder / "tokenizer.json").is_file():
        raise InvalidInput("the folder has no tokenizer.json")
    try:
        json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"tokenizer.json is not valid JSON: {exc}") from None
    params, quant = _weights(_graph(folder, model["decoder"]["filename"]))
    return {
        "task": "text-generation",
        "architecture": str(model.get("type", "unknown")),
        "parameters": str(params),
        "context_length": str(model.get("context_length", 0)),
        "vocab_size": str(model.get("vocab_size", 0)),
        "quantization": quant,
        "chat_template": "yes" if chat_template(folder) else "no",
    }


def from_folder(folder: Path) -> Artifact:
    return folder_artifact(folder, FORMAT, CONFIG, read_card)
