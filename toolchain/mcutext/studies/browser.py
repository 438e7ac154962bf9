"""A page opened in a real browser: headless Chromium (Debian's `chromium`) from the command
line, for checking what `mcutext report` writes.

    res = open_page(Path("build/sst2/report.html"), screenshot=Path("build/report.png"))
    res.dom        # the document after its scripts ran (--dump-dom)
    res.console    # every console message of the page (errors, warnings, logs), one a line

With `--enable-logging=stderr` Chromium writes each console message of the page to stderr as
`...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)`, whatever its level (an
uncaught exception, a blocked load, console.error/log); the page of `mcutext report` writes
none, so any such line is a fault. Each run gets a fresh profile folder (runs in parallel do
not share one).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..common.errors import McutextError

NAMES = ("chromium", "chromium-browser", "google-chrome")
_CONSOLE = re.compile(r":CONSOLE(?::\d+)?\]\s*(.*)$")


@dataclasses.dataclass
class Page:
    dom: str
    console: list[str]
    screenshot: Path | None


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def console_lines(stderr: str) -> list[str]:
    """The page's console messages in Chromium's log."""
    return [m.group(1) for line in stderr.splitlines() if (m := _CONSOLE.search(line))]


MAX_HEIGHT = 16384   # pixels of a screenshot


def open_page(page: Path, screenshot: Path | None = None, width: int = 1280,
              height: int | None = None, timeout: float = 120) -> Page:
    """Loads the file `page` in headless Chromium (no network is needed for a file: URL) and
    returns its DOM, its console messages and, with `screenshot`, a PNG width pixels wide
    and `height` high. Without `height`, the whole page: the height its script wrote on
    <html> as data-height (the page of `mcutext report` does), found by a first load; else
    4000."""
    if screenshot is not None and height is None:
        first = _load(page, None, width, 2000, timeout)
        m = re.search(r'<html[^>]*\sdata-height="(\d+)"', first.dom)
        height = min(int(m.group(1)), MAX_HEIGHT) if m else 4000
    return _load(page, screenshot, width, height or 2000, timeout)


def _load(page: Path, screenshot: Path | None, width: int, height: int,
          timeout: float) -> Page:
    exe = find_chromium()
    if exe is None:
        raise McutextError("chromium not found",
                           hint="install Debian's chromium (`make report-deps`, or `make "
                                "setup` as root)")
    url = Path(page).absolute().as_uri()
    with tempfile.TemporaryDirectory(prefix="mcutext-chromium-") as profile:
        cmd = [exe, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
               "--disable-extensions", "--hide-scrollbars", "--mute-audio",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               f"--window-size={width},{height}", "--virtual-time-budget=5000"]
        if screenshot is not None:
            screenshot = Path(screenshot).absolute()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            cmd.append(f"--screenshot={screenshot}")
        cmd += ["--dump-dom", url]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise McutextError(f"chromium did not finish loading {url} in {timeout:.0f} s") \
                from None
    if p.returncode != 0 or not p.stdout.strip():
        tail = "\n".join(p.stderr.strip().splitlines()[-10:])
        raise McutextError(f"chromium failed on {url} (exit code {p.returncode}):\n{tail}")
    return Page(p.stdout, console_lines(p.stderr), screenshot)
