"""The ``modelport`` command's entry point: a plain ``modelport batch`` starts light.

    modelport batch digits -i rows.npy -o scores.npy     # read by modelport.batch.command
    modelport --help                                      # everything else: the typer app

A batch job's first output part is due within half a second of its start, less than the full
CLI takes to import; so a plain ``batch`` command line skips it (see ``batch.command``). Both
ways run the same job and end the same way: a ``ModelportError`` is one line and exit code 1.

A job scored on this machine does no BLAS (ONNX Runtime does the arithmetic), so NumPy's
OpenBLAS is told to start no thread pool (``OPENBLAS_NUM_THREADS=1``, unless it is set): its
threads spin at NumPy's import, 0.05 CPU-s of the 0.45 a job spends up to its first part. A job
with Dask options keeps the default: a cluster started here would hand it to its workers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def main() -> None:
    args = None if len(sys.argv) < 3 else _quick_batch(sys.argv[1:])
    if args is None:
        from modelport.cli import main as full_cli

        full_cli()
    else:
        guarded(lambda: _batch(args))


def _quick_batch(argv: list[str]) -> dict | None:
    from modelport.batch.command import quick_args

    return quick_args(argv)


def _batch(args: dict) -> None:
    if args["dask_workers"] is None and args["dask_scheduler"] is None:  # before NumPy loads
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from modelport.batch.command import run
    from modelport.batch.config import BatchSettings

    run(BatchSettings.read(**args.pop("settings")), **args)


def guarded(command: Callable[[], object]) -> None:
    """Run ``command``; errors become one line on stderr and an exit code."""
    from modelport.errors import ModelportError

    try:
        command()
    except ModelportError as exc:  # escaped: "pip install 'modelport[extra]'" is not markup
        from rich.markup import escape

        _err().print(f"[red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        _err().print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug or an environment failure: one line unless asked for more
        if _debug():
            raise
        _err().print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {exc} "
            "(set MODELPORT_DEBUG=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)


def _err() -> object:
    from modelport.cli.common import err_console

    return err_console


def _debug() -> bool:
    """``MODELPORT_DEBUG``, read through the settings like every other variable."""
    from modelport.settings import Settings

    try:
        return Settings().debug
    except Exception:  # the settings themselves are what failed
        return False
