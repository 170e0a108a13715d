"""Scoring a chunk of texts: an encoder's vectors, a classifier's labels, a language model's text.

    scorer = TextScorer.load(spec)           # the encoder, or the generation engine, once a job
    scored = scorer.score(chunk, table)      # Scored(index, table, errors), as ``Scorer.score``
    scorer.close()

Encoders and classifiers run ``batch_size`` texts per call, texts of a similar length together
(less padding); chunks are scored side by side as a tensor job's are. A language model runs on
the serving engine: ``batch_size`` sequences decoded together by its scheduler, a finished
sequence's slot taking the chunk's next text at once (continuous batching). Chunks take the
engine in turn, each
queued whole on an idle scheduler with its cached prefixes dropped (``Scheduler.submit_all``):
llama.cpp's arithmetic depends, in the last bits, on which rows share a decode step, so a chunk
run beside another could pick another token where two are all but tied. Run on their own, the
same texts get the same tokens; with sampling seeded per row (``seed`` plus the row's number),
a job at temperature 0, or with a seed, writes the same bytes when it is resumed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.job import JobSpec
from modelport.batch.scorer import Scored, outputs_table
from modelport.batch.sources import Chunk
from modelport.batch.text import OUTPUTS
from modelport.errors import BackendError, Conflict, InvalidInput


class TextScorer:
    def __init__(self, spec: JobSpec, model: Any, labels: list[str] | None = None) -> None:
        self.spec, self.model, self.labels = spec, model, labels
        self.task = spec.fmap.task
        self._engine = threading.Lock()  # a chunk's sequences run on their own

    @classmethod
    def load(cls, spec: JobSpec) -> TextScorer:
        """Open the exact version (sha256 checked) from the job's catalogue, read-only."""
        from modelport.registry.reader import open_reader

        with open_reader(spec.settings) as registry:
            version = registry.resolve(spec.model)
            if version.sha256 != spec.sha256:
                raise Conflict(f"{spec.model} changed while the job ran")
            path = registry.path(version)
        if spec.fmap.task == "generate":
            return cls(spec, _engine(path, version.format, spec))
        from modelport.generation.encoder import open_encoder

        encoder = open_encoder(path.parent, spec.runtime_options.intra_op_threads)
        encoder.batch = spec.options.batch_size
        want = spec.fmap.task == "classify"
        if encoder.classifier != want:
            encoder.close()
            raise InvalidInput(f"{spec.model} is not {'a classifier' if want else 'an encoder'}")
        return cls(spec, encoder, _labels(path.parent, encoder.width) if want else None)

    def score(self, chunk: Chunk, data: Any) -> Scored:
        spec = self.spec
        converted = spec.fmap.convert(data, chunk)
        texts = converted.inputs["text"]
        failed: list[tuple[int, str]] = []
        if self.task == "generate":
            columns = self._generate(texts, converted.rows, failed)
        else:
            columns = self._encode(texts)
        keep = np.ones(len(texts), dtype=bool)
        if failed:  # rows the model refused (a prompt longer than the context)
            keep[[i for i, _ in failed]] = False
            columns = {k: v[keep] for k, v in columns.items()}
        ids = converted.ids.filter(keep) if converted.ids is not None and failed else \
            converted.ids  # fmt: skip
        reasons = converted.errors + [(int(converted.rows[i]), r) for i, r in failed]
        errors = [[row, Path(chunk.file).name, row - chunk.offset + chunk.start, reason]
                  for row, reason in sorted(reasons)]  # fmt: skip
        if errors and spec.options.on_error == "fail":
            row, name, file_row, reason = errors[0]
            raise InvalidInput(f"row {row} ({name}, row {file_row}): {reason}")
        table = outputs_table(columns, ids, spec.fmap.id_column)
        lists = [name for name, value in columns.items() if value.ndim > 1]
        meta = {**table.schema.metadata, b"lists": json.dumps(lists)}
        return Scored(chunk.index, table.replace_schema_metadata(meta), errors)

    def _encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Vectors (or class probabilities) in row order; the calls take texts of similar
        lengths together."""
        encoder, batch = self.model, self.spec.options.batch_size
        order = np.argsort([len(t) for t in texts], kind="stable")
        ranked = [texts[i] for i in order]
        run = encoder.classify if self.task == "classify" else encoder.embed

        def call(start: int) -> np.ndarray:
            return run(ranked[start : start + batch])[0]

        width = max(encoder.width, 0)
        out = np.empty((len(texts), width), dtype=np.float32)
        starts = range(0, len(texts), batch)
        for start, values in zip(starts, map(call, starts), strict=True):
            out[order[start : start + len(values)]] = values
        if self.task == "embed":
            return {"embedding": out}
        shifted = np.exp(out - out.max(axis=1, keepdims=True)) if len(out) else out
        probs = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        labels = np.array(self.labels, dtype=str)[best]
        return {"label": labels, "score": probs.max(axis=1, initial=0.0), "scores": probs}

    def _generate(self, texts: list[Any], rows: np.ndarray,
                  failed: list[tuple[int, str]]) -> dict[str, np.ndarray]:  # fmt: skip
        """Every text of the chunk through the engine's scheduler, queued at once and run on
        their own (``Scheduler.submit_all``: the same chunk generates the same tokens, whatever
        ran before); prompts the model refuses go to ``failed`` as (index, reason). A sequence
        that ends otherwise than by a stop or its length (the engine closing as the job is
        interrupted, a failed decode step) fails the chunk: its part is not written."""
        from modelport.generation.base import SamplingParams

        engine, options = self.model, self.spec.options
        results: list[Any] = [None] * len(texts)
        requests = []
        finished = threading.Semaphore(0)
        for i, text in enumerate(texts):
            seed = None if options.seed is None else options.seed + int(rows[i])
            params = SamplingParams(max_tokens=options.max_tokens,
                                    temperature=options.temperature, seed=seed)  # fmt: skip
            try:
                prompt = self._prompt(text)
                engine.check(len(prompt), params.max_tokens)
            except InvalidInput as exc:
                results[i] = exc.message
                continue
            requests.append((prompt, params, _collector(results, i, finished.release)))
        with self._engine:
            engine.scheduler.submit_all(requests)
            for _ in requests:
                finished.acquire()
        for i, result in enumerate(results):
            if isinstance(result, str):
                failed.append((i, result))
                results[i] = ("", 0, 0, "")
            elif result[3] not in ("stop", "length"):  # the engine closed, or a step failed:
                # not the row's fault, and not a chunk to commit (a re-run scores it again)
                raise BackendError(f"generating row {int(rows[i])} ended: {result[3]}")
        columns = list(zip(*results, strict=True)) or [(), (), (), ()]
        dtypes = (object, np.int32, np.int32, object)
        named = zip(OUTPUTS["generate"], columns, dtypes, strict=True)
        return {name: _array(values, dtype) for name, values, dtype in named}

    def _prompt(self, text: Any) -> list[int]:
        engine = self.model
        if self.spec.fmap.messages:
            return engine.chat_prompt(text)
        if self.spec.options.chat:
            return engine.chat_prompt([{"role": "user", "content": text}])
        return engine.encode(text)

    def feature_major(self) -> TextScorer:
        """Itself: texts have no feature-major form (``Scorer.feature_major``)."""
        return self

    def close(self) -> None:
        self.model.close()


def _array(values: Any, dtype: Any) -> np.ndarray:
    """Strings as objects (a NumPy string array would drop trailing NUL characters); none as
    an empty string array, which Arrow reads as strings, not nulls."""
    if dtype is object and not len(values):
        return np.array([], dtype=str)
    array = np.empty(len(values), dtype=dtype)
    array[:] = values
    return array


def _collector(results: list[Any], i: int, done: Callable[[], None]) -> Callable[[Any], None]:
    """An ``on_event`` (run on the decode thread) that gathers one sequence's text."""
    parts: list[str] = []

    def on_event(event: Any) -> None:
        parts.append(event.text)
        if event.finish is not None:
            results[i] = ("".join(parts), event.prompt_tokens, event.completion_tokens,
                          event.finish)  # fmt: skip
            done()

    return on_event


def _engine(path: Path, format: str, spec: JobSpec) -> Any:
    from modelport.generation import EngineOptions, open_engine

    # one engine for the whole job: every core (unless set); a chunk queued whole waits long
    options = EngineOptions(slots=spec.options.batch_size, threads=spec.settings.intra_op_threads,
                            first_token_timeout=86400.0, token_gap_timeout=3600.0)  # fmt: skip
    return open_engine(path, format, options)


def _labels(folder: Path, width: int) -> list[str]:
    """The classifier's class names (``id2label`` of its config), else their numbers."""
    try:
        names = json.loads((folder / "config.json").read_text()).get("id2label") or {}
    except (OSError, ValueError):
        names = {}
    return [str(names.get(str(i), i)) for i in range(max(width, 0))]
