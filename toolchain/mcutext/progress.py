"""Progress bars (rich) for anything that takes more than a few seconds.

Bars go to stderr so that `--json` output on stdout stays machine-readable. They are off when
MCUTEXT_QUIET is set (the test suite sets it) or when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")
console = Console(stderr=True)


def enabled() -> bool:
    return not os.environ.get("MCUTEXT_QUIET") and sys.stderr.isatty()


def make_progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, disable=not enabled(),
                    transient=False)


def track(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    with make_progress() as p:
        task = p.add_task(description, total=total, status="")
        for item in items:
            yield item
            p.advance(task)


@contextlib.contextmanager
def task(description: str, total: int | None):
    """`with task("training", total=epochs) as update: update(advance=1, status="loss 0.3")`"""
    with make_progress() as p:
        t = p.add_task(description, total=total, status="")

        def update(advance: int = 0, status: str | None = None):
            if status is not None:
                p.update(t, status=status)
            if advance:
                p.advance(t, advance)

        yield update


def log(message: str) -> None:
    if not os.environ.get("MCUTEXT_QUIET"):
        console.print(message, highlight=False)
