"""A rich progress bar counted in rows: rows done, rows/s and time left."""

from __future__ import annotations

from typing import Any


class RowProgress:
    """``with RowProgress(total, done, enabled) as bar: bar.advance(rows)`` (rich is imported
    only for a bar that shows: a quiet job starts without it)."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True) -> None:
        self._progress: Any = None
        if enabled:
            self._progress = _bar()
            self._task = self._progress.add_task("scoring", total=total, completed=done)

    def __enter__(self) -> RowProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._progress is not None:
            if exc_type is not None:  # the error message is the last word, not a stalled bar
                self._progress.live.transient = True  # a terminal's bar is erased
                if not self._progress.console.is_terminal:
                    self._progress.console.quiet = True  # a log gets not even a blank line
            self._progress.stop()

    def advance(self, rows: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, rows)


def _bar() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            shown = "--" if speed is None else f"{speed:,.0f}" if speed >= 10 else f"{speed:.2f}"
            return Text(f"{shown} rows/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("rows"), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=Console(stderr=True), transient=False,
    )  # fmt: skip
