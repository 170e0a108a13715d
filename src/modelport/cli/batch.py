"""``modelport batch REF --input PATH --output PATH``: score files in chunks, resumably.

The options as typer shows them; ``modelport.batch.command`` runs the job (and reads a plain
command line of these same options without the full CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport.cli.common import state

_INPUT = "A .csv, .parquet, .npy or .jsonl file (.txt for text models), a folder or a glob."
_OUTPUT = "A .parquet, .csv or .npy file, written only when complete."
_COLUMNS = "Feature columns in order, or INPUT=COLUMN pairs; repeat or separate with commas."
_CHUNK_ROWS = "Rows per chunk, the unit of memory and resume (default: from the memory budget)."
_BATCH_SIZE = "Rows per model call (default: from the memory budget)."
_BUDGET = (
    "Memory for the job's rows, e.g. 512MiB or 2GB; sizes chunks and model calls "
    "(default 1GiB, or MODELPORT_BATCH_MEMORY_BUDGET)."
)
_ON_ERROR = "skip: list bad rows in the errors file and go on; fail: stop at the first."
_TEXT = "The column of texts (or chat messages) for an encoder, classifier or language model."
_TEMPERATURE = "Language models: 0 = greedy (deterministic); above, sampled with --seed."
_SEED = "Language models: sampling seed (each row uses seed + its row number)."
_CHAT = "Language models: wrap each text as a user message in the model's chat template."


def batch(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias.")],
    input: Annotated[str, typer.Option("--input", "-i", help=_INPUT)],
    output: Annotated[Path, typer.Option("--output", "-o", help=_OUTPUT)],
    columns: Annotated[list[str] | None, typer.Option("--columns", help=_COLUMNS)] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="A column copied beside the predictions.")
    ] = None,
    chunk_rows: Annotated[
        int | None, typer.Option("--chunk-rows", help=_CHUNK_ROWS, show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help=_BATCH_SIZE, show_default=False)
    ] = None,
    memory_budget: Annotated[
        str | None, typer.Option("--memory-budget", help=_BUDGET, show_default=False)
    ] = None,
    on_error: Annotated[str, typer.Option("--on-error", help=_ON_ERROR)] = "skip",
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Bad rows file (default OUTPUT.errors.csv).")
    ] = None,
    dask_workers: Annotated[
        int | None, typer.Option("--dask-workers", help="Start a local Dask cluster of N workers.")
    ] = None,
    dask_scheduler: Annotated[
        str | None, typer.Option("--dask-scheduler", help="Use the Dask cluster at this address.")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="Runtime (default: by format).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    text_column: Annotated[str | None, typer.Option("--text-column", help=_TEXT)] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Language models: most tokens per row.")
    ] = 128,
    temperature: Annotated[float, typer.Option(help=_TEMPERATURE)] = 0.0,
    seed: Annotated[int | None, typer.Option(help=_SEED)] = None,
    chat: Annotated[bool, typer.Option("--chat", help=_CHAT)] = False,
) -> None:
    """Score a file, folder or glob of inputs with a registered model, in resumable chunks."""
    from modelport.batch.command import run
    from modelport.batch.config import BatchSettings

    run(BatchSettings.of(state.settings), ref, input, output, columns=columns,
        id_column=id_column, chunk_rows=chunk_rows, batch_size=batch_size,
        memory_budget=memory_budget, on_error=on_error, errors=errors, dask_workers=dask_workers,
        dask_scheduler=dask_scheduler, backend=backend, quiet=quiet, text_column=text_column,
        max_tokens=max_tokens, temperature=temperature, seed=seed, chat=chat)  # fmt: skip
