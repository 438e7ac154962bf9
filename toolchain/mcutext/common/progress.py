"""Progress bars (rich) for anything that takes more than a few seconds.

Bars go to stderr so that `--json` output on stdout stays machine-readable. They are off when
MCUTEXT_QUIET is set (the test suite sets it). When stderr is not a terminal (a log file, a
pipe) a task writes a plain line instead every MCUTEXT_PROGRESS_EVERY seconds (default 30):
how far it got and about how long is left.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
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
    with task(description, total) as update:
        for item in items:
            yield item
            update(advance=1)


@contextlib.contextmanager
def task(description: str, total: int | None):
    """`with task("training", total=epochs) as update: update(advance=1, status="loss 0.3")`"""
    with make_progress() as p:
        t = p.add_task(description, total=total, status="")
        lines = _Lines(description, total) if _lines_enabled() else None

        def update(advance: int = 0, status: str | None = None):
            if status is not None:
                p.update(t, status=status)
            if advance:
                p.advance(t, advance)
            if lines is not None:
                lines.update(advance, status)

        yield update


def _lines_enabled() -> bool:
    return not os.environ.get("MCUTEXT_QUIET") and not sys.stderr.isatty()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


class _Lines:
    """The plain-text progress of a task for a stderr that is not a terminal."""

    def __init__(self, description: str, total: int | None):
        try:
            self.every = float(os.environ.get("MCUTEXT_PROGRESS_EVERY", "30"))
        except ValueError:
            self.every = 30.0
        self.description, self.total = description, total
        self.done, self.status = 0, ""
        self.t0 = self.last = time.monotonic()

    def update(self, advance: int, status: str | None) -> None:
        if status is not None:
            self.status = status
        self.done += advance
        now = time.monotonic()
        if not advance or now - self.last < self.every:
            return
        self.last = now
        left = ""
        if self.total and self.done:
            left = (f", about {_clock((now - self.t0) * (self.total - self.done) / self.done)} "
                    "left")
        of = f"/{self.total}" if self.total else ""
        status = f" {self.status}" if self.status else ""
        console.print(f"{self.description}: {self.done}{of}{status} ({_clock(now - self.t0)} "
                      f"elapsed{left})", highlight=False, markup=False, soft_wrap=True)


def log(message: str) -> None:
    if not os.environ.get("MCUTEXT_QUIET"):
        console.print(message, highlight=False)
