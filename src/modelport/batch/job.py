"""What a batch job is made of: its options, what a worker needs, what a chunk and a job report.

    options = BatchOptions(columns=(), id_column="id", chunk_rows=65536, batch_size=4096)
    spec = JobSpec(settings, "digits:3", sha256, signature, fmap, options, runtime_options, ...)
    summary.rows, summary.errors, summary.throughput     # BatchSummary, what predict_batch returns

Plain data only: the steps (``plan``, ``sources``, ``scorer``, ``sinks``) and who runs them
(``executors``) live in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.batch.config import BatchSettings
from modelport.batch.features import FeatureMap
from modelport.errors import InvalidInput
from modelport.runtimes import RuntimeOptions
from modelport.signature import Signature


@dataclass(frozen=True)
class BatchOptions:
    columns: tuple[str, ...] = ()
    id_column: str | None = None
    chunk_rows: int = 65536
    batch_size: int = 4096
    on_error: str = "skip"
    # a text model's job (batch.text): the column of texts, and how a language model generates
    text_column: str | None = None
    max_tokens: int = 128
    temperature: float = 0.0
    seed: int | None = None
    chat: bool = False

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise InvalidInput("--chunk-rows must be at least 1")
        if self.batch_size < 1:
            raise InvalidInput("--batch-size must be at least 1")
        if self.on_error not in ("skip", "fail"):
            raise InvalidInput(f"--on-error must be skip or fail, not {self.on_error!r}")

    @property
    def first_rows(self) -> int:
        """Rows of each file's first chunk: one model batch, so that a job's first part is
        committed soon after it starts, whatever the chunk size."""
        return min(self.batch_size, self.chunk_rows)


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to read, score and write a chunk; small and picklable (no data,
    no sessions). ``parts``: chunks are committed as part files in ``workdir``."""

    settings: BatchSettings
    model: str  # "name:version"
    sha256: str
    signature: Signature
    fmap: FeatureMap
    options: BatchOptions
    runtime_options: RuntimeOptions
    workdir: str
    backend: str | None = None
    parts: bool = True


@dataclass(frozen=True)
class ChunkResult:
    index: int
    rows: int
    errors: int
    worker: str = ""
    # in-process only (a cluster's driver never holds data): the written outputs and errors
    table: Any = None
    error_rows: list[list[Any]] | None = None


@dataclass
class BatchSummary:
    """What a job did. ``outputs`` holds the predictions when no output file was asked for."""

    rows: int
    errors: int
    chunks: int
    resumed: int
    elapsed: float
    output: Path | None = None
    errors_path: Path | None = None
    outputs: dict[str, np.ndarray] | None = None
    error_rows: list[list[Any]] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)  # "host:pid" of the processes that scored
    scored: int | None = None  # rows read by this run (a resumed job skips the committed ones)
    chunk_rows: int = 0  # as chosen (from the memory budget unless given)
    batch_size: int = 0

    @property
    def throughput(self) -> float:
        rows = self.rows + self.errors if self.scored is None else self.scored
        return rows / self.elapsed if self.elapsed > 0 else 0.0
