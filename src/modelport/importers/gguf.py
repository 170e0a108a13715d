"""GGUF files (llama.cpp's format) as artifacts: the header is read, the weights never are.

    card = read_card(Path("smollm2.gguf"))      # architecture, parameters, context, vocab, ...
    artifact = from_file(Path("smollm2.gguf"))  # refused with the reason if truncated or corrupt

Only the metadata and tensor table at the head of the file are parsed (a few MB even for a
multi-GB model); the tensor table is checked against the file size, so a truncated download is
refused at registration instead of crashing the server later.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from modelport.errors import InvalidInput
from modelport.importers.hf import text_signature
from modelport.registry.artifact import Artifact

FORMAT = "gguf"
MAGIC = b"GGUF"
MAX_STRING = 64 << 20  # a chat template or a token: anything longer is corruption
MAX_COUNT = 1 << 28
# ggml type id -> (elements per block, bytes per block)
BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66),
    39: (32, 17),
}  # fmt: skip
TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
              10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}  # fmt: skip
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
              10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
              16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}  # fmt: skip
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # fmt: skip
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class Header:
    metadata: dict[str, Any]
    tensors: list[tuple[str, tuple[int, ...], int, int]]  # name, dims, type, offset
    data_start: int


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise InvalidInput("the file ends inside its header (truncated)")
        return data

    def scalar(self, code: str) -> Any:
        return struct.unpack("<" + code, self.take(struct.calcsize(code)))[0]

    def string(self) -> str:
        n = self.scalar("Q")
        if n > MAX_STRING or self.f.tell() + n > self.size:
            raise InvalidInput(f"a header string claims {n} bytes (corrupt or truncated)")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, n = self.scalar("I"), self.scalar("Q")
            if n > MAX_COUNT:
                raise InvalidInput(f"a header array claims {n} items (corrupt)")
            if item in _SCALARS:  # skipped in one seek: vocabularies hold ~100k scores
                width = struct.calcsize(_SCALARS[item])
                self.f.seek(width * n, 1)
                if self.f.tell() > self.size:
                    raise InvalidInput("the file ends inside its header (truncated)")
                return _Length(n)
            for _ in range(n):
                self.value(item)
            return _Length(n)
        raise InvalidInput(f"unknown metadata value type {kind} (corrupt header)")


class _Length(int):
    """An array that was skipped: only its length is kept."""


def read_header(path: Path) -> Header:
    """Parse the metadata and tensor table; InvalidInput names what is wrong."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        r = _Reader(f, size)
        if f.read(4) != MAGIC:
            raise InvalidInput(f"{path} is not a GGUF file (no GGUF magic)")
        version = r.scalar("I")
        if version not in (2, 3):
            raise InvalidInput(f"{path}: GGUF version {version} is not supported (2 or 3)")
        n_tensors, n_kv = r.scalar("Q"), r.scalar("Q")
        if n_tensors > MAX_COUNT or n_kv > MAX_COUNT:
            raise InvalidInput(f"{path}: the GGUF header counts are corrupt")
        metadata = {}
        for _ in range(n_kv):
            key = r.string()
            metadata[key] = r.value(r.scalar("I"))
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.scalar("I")
            if n_dims > 8:
                raise InvalidInput(f"{path}: tensor {name!r} has {n_dims} dimensions (corrupt)")
            dims = tuple(r.scalar("Q") for _ in range(n_dims))
            tensors.append((name, dims, r.scalar("I"), r.scalar("Q")))
        align = int(metadata.get("general.alignment", 32)) or 32
        data_start = -(-f.tell() // align) * align
    return Header(metadata, tensors, data_start)


def check_tensors(path: Path, header: Header) -> int:
    """The parameter count; raises if a tensor lies past the end of the file."""
    size = path.stat().st_size
    params = 0
    for name, dims, kind, offset in header.tensors:
        count = 1
        for d in dims:
            count *= d
        params += count
        per_block = BLOCKS.get(kind)
        if per_block is None:
            continue  # a type this table does not know: llama.cpp decides at load
        nbytes = -(-count // per_block[0]) * per_block[1]
        end = header.data_start + offset + nbytes
        if end > size:
            raise InvalidInput(
                f"{path} is truncated: tensor {name!r} ends at byte {end}, the file has {size}"
            )
    return params


def quantization(header: Header) -> str:
    file_type = header.metadata.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        return FILE_TYPES[file_type]
    kinds: dict[int, int] = {}
    for _, dims, kind, _ in header.tensors:
        kinds[kind] = kinds.get(kind, 0) + (dims[0] if dims else 0)
    top = max(kinds, key=kinds.__getitem__) if kinds else 0
    return TYPE_NAMES.get(top, f"type{top}")


def read_card(path: Path) -> dict[str, str]:
    """What the version records: task, architecture, parameters, context, vocab, quantization."""
    header = read_header(path)
    params = check_tensors(path, header)
    meta = header.metadata
    arch = str(meta.get("general.architecture", "unknown"))
    vocab = meta.get(f"{arch}.vocab_size") or meta.get("tokenizer.ggml.tokens") or 0
    pooling = meta.get(f"{arch}.pooling_type")
    card = {
        "task": "feature-extraction" if pooling not in (None, 0) else "text-generation",
        "architecture": arch,
        "parameters": str(params),
        "context_length": str(meta.get(f"{arch}.context_length", 0)),
        "vocab_size": str(int(vocab)),
        "quantization": quantization(header),
        "chat_template": "yes" if isinstance(meta.get("tokenizer.chat_template"), str) else "no",
    }
    if not header.tensors:
        raise InvalidInput(f"{path} holds no tensors")
    return card


def is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    if path.suffix.lower() == ".gguf":
        return True
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def from_file(path: Path) -> Artifact:
    try:
        card = read_card(path)
    except InvalidInput as exc:
        message = str(exc)
        raise InvalidInput(message if str(path) in message else f"{path}: {message}") from None
    return Artifact(FORMAT, path.parent, (path.name,), path.name, text_signature(card["task"]),
                    card)  # fmt: skip
