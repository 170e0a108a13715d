"""``modelport batch``, the command: its options, a quick reading of them, the run and its report.

    args = quick_args(["batch", "digits", "-i", "rows.npy", "-o", "scores.npy", "-q"])
    run(BatchSettings.read(**args.pop("settings")), **args)   # what the command does

A batch job's start-up is part of its time, and the full CLI (typer, rich, every command's
module) costs more than the rest of it. ``quick_args`` reads the plain forms of the command line
(``--option value``, ``--option=value``, ``-i value``, flags) for the options below; whatever it
does not read with certainty (``--help``, an unknown option, a bad number, a missing argument,
``MODELPORT_BATCH__*`` defaults) it leaves to the typer command, which runs the same ``run``
and gives its usual messages. A test keeps this table equal to the typer command's options.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# flag -> (parameter, type); typer's `batch` command declares the same options (cli/batch.py)
OPTIONS: dict[str, tuple[str, type]] = {
    "--input": ("input", str), "-i": ("input", str),
    "--output": ("output", Path), "-o": ("output", Path),
    "--columns": ("columns", list), "--id-column": ("id_column", str),
    "--chunk-rows": ("chunk_rows", int), "--batch-size": ("batch_size", int),
    "--memory-budget": ("memory_budget", str), "--on-error": ("on_error", str),
    "--errors": ("errors", Path), "--dask-workers": ("dask_workers", int),
    "--dask-scheduler": ("dask_scheduler", str), "--backend": ("backend", str),
    "--quiet": ("quiet", bool), "-q": ("quiet", bool),
    "--text-column": ("text_column", str), "--max-tokens": ("max_tokens", int),
    "--temperature": ("temperature", float), "--seed": ("seed", int), "--chat": ("chat", bool),
}  # fmt: skip
DEFAULTS: dict[str, Any] = {"columns": None, "id_column": None, "chunk_rows": None,
                            "batch_size": None, "memory_budget": None, "on_error": "skip",
                            "errors": None, "dask_workers": None, "dask_scheduler": None,
                            "backend": None, "quiet": False, "text_column": None,
                            "max_tokens": 128, "temperature": 0.0, "seed": None,
                            "chat": False}  # fmt: skip


def quick_args(argv: list[str]) -> dict[str, Any] | None:
    """``run``'s arguments (and ``settings``: the ``--home`` override) for a plain
    ``[--home DIR] batch REF OPTIONS`` command line; None for anything else."""
    if any(k.lower().startswith("modelport_batch__") for k in os.environ):
        return None  # option defaults from the environment: the typer command applies them
    args, settings = list(argv), {}
    if args[:1] == ["--home"] and len(args) > 1:
        settings["home"] = Path(args[1])
        del args[:2]
    elif args[:1] and args[0].startswith("--home="):
        settings["home"] = Path(args.pop(0).removeprefix("--home="))
    if args[:1] != ["batch"]:
        return None
    values: dict[str, Any] = {"settings": settings}
    rest = iter(args[1:])
    for token in rest:
        flag, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if flag in OPTIONS:
            name, kind = OPTIONS[flag]
            value = True if kind is bool else inline if eq else next(rest, None)
            if (kind is bool and eq) or value is None or (name in values and kind is not list):
                return None
            if kind is not bool and (value == "" or value.startswith("-")):
                return None
            if kind is int and not (value.isascii() and value.isdigit()):
                return None
            if kind is float and not _decimal(value):
                return None
            values[name] = _typed(kind, value, values.get(name))
        elif not token.startswith("-") and "ref" not in values:
            values["ref"] = token
        else:
            return None
    if not {"ref", "input", "output"} <= set(values):
        return None
    return {**DEFAULTS, **values}


def _decimal(value: str) -> bool:
    """A plain decimal number (``0.7``, ``1``); anything else is typer's to read."""
    whole, _, fraction = value.partition(".")
    return value.isascii() and (whole + fraction).isdigit()


def _typed(kind: type, value: Any, earlier: Any) -> Any:
    if kind is list:
        return [*(earlier or []), value]
    return value if kind is bool else kind(value)


def run(settings: Any, ref: str, input: str, output: Path, *, columns: list[str] | None,
        id_column: str | None, chunk_rows: int | None, batch_size: int | None,
        memory_budget: str | None, on_error: str, errors: Path | None,
        dask_workers: int | None, dask_scheduler: str | None, backend: str | None,
        quiet: bool, text_column: str | None = None, max_tokens: int = 128,
        temperature: float = 0.0, seed: int | None = None,
        chat: bool = False) -> None:  # fmt: skip
    """Score ``input`` into ``output`` with ``ref`` from the catalogue ``settings`` name (a
    ``BatchSettings``), then print what was done."""
    from modelport.batch.api import predict_batch
    from modelport.errors import InvalidInput
    from modelport.registry.reader import open_reader

    if dask_workers is not None and dask_scheduler is not None:
        raise InvalidInput("give --dask-workers or --dask-scheduler, not both")
    names = [c for item in columns or [] for c in item.split(",") if c.strip()]
    with open_reader(settings) as catalogue:
        summary = predict_batch(
            ref, input, output, registry=catalogue, columns=names, id_column=id_column,
            chunk_rows=chunk_rows, batch_size=batch_size, memory_budget=memory_budget,
            on_error=on_error, errors_path=errors,
            dask_workers=dask_workers, dask_scheduler=dask_scheduler, backend=backend,
            progress=not quiet, text_column=text_column, max_tokens=max_tokens,
            temperature=temperature, seed=seed, chat=chat,
        )  # fmt: skip
    report(summary)


def report(summary: Any) -> None:
    from rich.console import Console

    # as the CLI's console (cli/common.py): pipes and logs get every value in full
    console = Console(width=None if sys.stdout.isatty() else 100_000)
    resumed = f" ({summary.resumed} of {summary.chunks} chunks resumed)" if summary.resumed else ""
    console.print(
        f"scored [bold]{summary.rows:,}[/] rows, [bold]{summary.errors:,}[/] bad, in "
        f"{summary.elapsed:.2f} s ({_rate(summary.throughput)} rows/s){resumed}", highlight=False
    )  # fmt: skip
    console.print(f"output: {summary.output}", highlight=False, soft_wrap=True)
    if summary.errors_path is not None:
        console.print(f"bad rows: {summary.errors_path}", highlight=False, soft_wrap=True)


def _rate(per_second: float) -> str:
    """Whole rows per second, or two decimals below ten (a language model's rows are slow)."""
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.2f}"
