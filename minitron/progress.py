"""The one progress bar of every long command (rich, on stderr), or a silent stand-in (tests,
non-zero ranks, --no-progress)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Advance = Callable[[int], None]


class Bar:
    """`bar(n)` advances by n; `bar.update(completed=..., **fields)` sets the count and the named fields
    the bar shows; `bar.print(...)` prints above it (or plainly when the bar is off)."""

    def __init__(self, progress=None, task=None, console=None):
        self._progress, self._task = progress, task
        self.console = console

    def __call__(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **values: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **values)

    def print(self, *objects: Any) -> None:
        from rich.console import Console

        (self.console or Console()).print(*objects)


@contextmanager
def progress_bar(
    description: str,
    total: int,
    enabled: bool,
    *,
    completed: int = 0,
    fields: dict[str, Any] | None = None,
    columns: tuple[str, ...] = (),
    unit: str = "items",
    console=None,
    transient: bool = False,
) -> Iterator[Bar]:
    """A bar over `total` items (or bytes, with unit="bytes"): description, bar, count, any `columns`
    (rich format strings over `fields`, e.g. "loss {task.fields[loss]:.3f}"), time remaining."""
    if not enabled:
        yield Bar(console=console)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        count,
        *(TextColumn(c) for c in columns),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=transient,
    ) as progress:
        task = progress.add_task(description, total=total, completed=completed, **(fields or {}))
        yield Bar(progress, task, progress.console)
