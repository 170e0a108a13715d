"""Batch over a text column: which models take text, which column feeds them, which rows cannot.

    tmap = plan_text(version, infos, options, output)   # None: a tensor model, bound as usual
    texts = tmap.convert(table, chunk)                   # Converted: texts, ids, rows, errors

An ONNX encoder (``feature-extraction``) or sequence classifier (``text-classification``) and a
GGUF or onnxruntime-genai language model (``text-generation``) read the column named by
``--text-column`` (a plain ``.txt`` file is one column, ``text``, one text per line). For a
language model that column may hold chat messages (lists of ``{role, content}``) instead of
text; the model's chat template is applied to them, and to plain texts with ``--chat``. The text
map replaces the feature map of a tensor job: the pipeline (plan, read, score, write, commit) is
the same, and ``batch.textscorer.TextScorer`` scores its chunks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.features import Converted, _short
from modelport.batch.job import BatchOptions
from modelport.batch.sources import Chunk, FileInfo
from modelport.errors import InvalidInput

# the registry's task tag -> what batch does with the texts
TASKS = {"feature-extraction": "embed", "text-classification": "classify",
         "text-generation": "generate"}  # fmt: skip
GENERATION_FORMATS = ("gguf", "genai")
OUTPUTS = {
    "embed": ("embedding",),
    "classify": ("label", "score", "scores"),
    "generate": ("generated_text", "prompt_tokens", "completion_tokens", "finish_reason"),
}
# (chunk rows, rows per model call): an encoder call of 32 texts; 4 sequences decoded together
SIZES = {"embed": (1024, 32), "classify": (1024, 32), "generate": (32, 4)}


@dataclass(frozen=True)
class TextMap:
    """Texts (or chat messages, ``messages``) from ``column``; ``id_column`` copied beside."""

    task: str  # "embed" | "classify" | "generate"
    column: str
    id_column: str | None = None
    messages: bool = False
    text = True  # tells a job's scorer apart from a tensor job's

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.column, *([self.id_column] if self.id_column else [])]))

    @property
    def vector_inputs(self) -> tuple[str, ...]:
        return ()

    def convert(self, data: Any, chunk: Chunk) -> Converted:
        """The chunk's texts (or message lists) under ``inputs["text"]``; the rows that hold
        none (missing, empty, not text, malformed messages) as (row number, reason)."""
        meta = data.schema.metadata or {}
        dropped = json.loads(meta.get(b"dropped", b"[]"))
        physical = np.arange(chunk.rows)
        if dropped:
            physical = np.delete(physical, [i for i, _ in dropped])
        reasons: dict[int, str] = {}
        for i, reason in json.loads(meta.get(b"bad", b"[]")):
            reasons.setdefault(i, reason)
        values = data.column(self.column).to_pylist() if data.num_rows else []
        for i in json.loads(meta.get(b"nonstring", b"{}")).get(self.column, []):
            if not self.messages:  # a JSON value that is not a string, as its JSON text
                reasons.setdefault(i, f"non-string value {values[i][:40]} in column "
                                      f"{self.column!r}")  # fmt: skip
        kept, keep = [], np.zeros(len(values), dtype=bool)
        for i, value in enumerate(values):
            if i not in reasons:
                value, reason = self._value(value)
                if reason is None:
                    kept.append(value)
                    keep[i] = True
                    continue
                reasons[i] = reason
        ids = None
        if self.id_column is not None:
            ids = data.column(self.id_column).combine_chunks().filter(keep)
        errors = [(chunk.offset + int(physical[i]), r) for i, r in reasons.items()]
        errors += [(chunk.offset + i, r) for i, r in dropped]
        return Converted({"text": kept}, ids, chunk.offset + physical[keep], sorted(errors))

    def _value(self, value: Any) -> tuple[Any, str | None]:
        name = repr(self.column)
        if value is None:
            return None, f"missing value in column {name}"
        if self.messages:
            return _messages(value, name)
        if not isinstance(value, str):
            return None, f"non-string value {_short(value)} in column {name}"
        if not value.strip():
            return None, f"empty text in column {name}"
        return value, None


def _messages(value: Any, name: str) -> tuple[Any, str | None]:
    from modelport.generation.chat import check_messages

    if isinstance(value, str):  # JSON Lines rows of mixed types arrive as their JSON text
        try:
            value = json.loads(value)
        except ValueError:
            return None, f"column {name} holds text, not a list of chat messages"
    if isinstance(value, list):  # struct fields a message lacks come back as None
        value = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m
                 for m in value]  # fmt: skip
    try:
        return check_messages(value), None
    except InvalidInput as exc:
        return None, f"column {name}: {exc.message}"


def plan_text(version: Any, infos: list[FileInfo], options: BatchOptions,
              output: Path | None) -> TextMap | None:  # fmt: skip
    """The text map of a job on a text model, None for a tensor model (bound by its feature
    map); InvalidInput names what does not fit."""
    task = TASKS.get(version.tags.get("task", ""))
    if task is None:
        if options.text_column:
            raise InvalidInput(f"{version.ref} is a tensor model ({version.format}); --text-column "
                               "is for encoders, classifiers and language models")  # fmt: skip
        if infos[0].format == "txt":
            raise InvalidInput(f"unsupported input format {Path(infos[0].file).name!r} for a "
                               "tensor model (.txt files hold texts, for text models): use "
                               ".csv, .parquet, .npy or .jsonl")  # fmt: skip
        return None
    _check_model(version, task)
    column = options.text_column or ("text" if infos[0].format == "txt" else None)
    if column is None:
        raise InvalidInput(f"{version.ref} is a {version.tags['task']} model: name the column "
                           "that holds the texts with --text-column")  # fmt: skip
    if options.columns:
        raise InvalidInput("--columns maps tensor inputs; a text model reads --text-column")
    if not sum(info.rows for info in infos):
        raise InvalidInput(f"{infos[0].file} is empty: no texts to score")
    if task == "generate":
        _check_sampling(options)
    elif options.chat:
        raise InvalidInput("--chat applies a language model's chat template; "
                           f"{version.ref} is a {version.tags['task']} model")  # fmt: skip
    if options.id_column in OUTPUTS[task]:
        raise InvalidInput(f"--id-column {options.id_column!r} is also an output column; "
                           "rename it")  # fmt: skip
    kinds = {_column_kind(info, column, options.id_column) for info in infos}
    if len(kinds) > 1:
        raise InvalidInput(f"column {column!r} holds text in some files, lists in others")
    messages = kinds.pop() == "list"
    if messages and task != "generate":
        raise InvalidInput(f"column {column!r} holds lists; an encoder or classifier takes text")
    if output is not None and output.suffix.lower() == ".npy":
        if task != "embed" or options.id_column:
            raise InvalidInput("an NPY output holds one output and no id column; write Parquet "
                               "or CSV instead")  # fmt: skip
    return TextMap(task, column, options.id_column, messages)


def _check_sampling(options: BatchOptions) -> None:
    from modelport.generation.base import MAX_TOKENS_LIMIT, SamplingParams

    if not 1 <= options.max_tokens <= MAX_TOKENS_LIMIT:
        raise InvalidInput(f"--max-tokens must be between 1 and {MAX_TOKENS_LIMIT}, got "
                           f"{options.max_tokens}")  # fmt: skip
    if not 0.0 <= options.temperature <= 2.0:
        raise InvalidInput(f"--temperature must be between 0 and 2, got {options.temperature}")
    SamplingParams(max_tokens=options.max_tokens, temperature=options.temperature,
                   seed=options.seed)  # fmt: skip


def _check_model(version: Any, task: str) -> None:
    if task == "generate" and version.format not in GENERATION_FORMATS:
        raise InvalidInput(f"{version.ref} ({version.format}) needs converting to generate "
                           f"text: modelport convert {version.ref} --to gguf")  # fmt: skip
    if task != "generate" and version.format != "onnx":
        raise InvalidInput(f"{version.ref} ({version.format}) needs converting to ONNX first: "
                           f"modelport convert {version.ref} --to onnx-encoder")  # fmt: skip


def _column_kind(info: FileInfo, column: str, id_column: str | None) -> str:
    from modelport.batch.binding import _unknown

    for name, option in ((column, "--text-column"), (id_column, "--id-column")):
        if name is not None and name not in info.columns:
            raise _unknown([name], info.columns, option)
    kind = info.columns[column]
    if kind == "number":
        raise InvalidInput(f"column {column!r} of {Path(info.file).name} holds numbers, not text")
    if kind == "other":
        raise InvalidInput(f"column {column!r} of {Path(info.file).name} does not hold text")
    return kind


def text_sizes(version: Any) -> tuple[int, int] | None:
    """(chunk rows, rows per call) for a text model's job, None for a tensor model."""
    return SIZES.get(TASKS.get(version.tags.get("task", ""), ""))
