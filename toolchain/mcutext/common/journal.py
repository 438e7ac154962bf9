"""Progress journals: what a long device session has done so far, so that a vanished port or a
device reset loses nothing (`mcutext personalize --resume`, `mcutext attack --resume`).

A journal is a JSON-lines file: one header line (what the session is: its inputs and options)
and then one line per finished piece of work, each flushed and fsync'ed before the next piece
starts. A line torn by a crash or power cut is the last one; reading ignores it. The file is
created atomically (temp file + rename) and deleted when the session ends normally.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import McutextError


def digest(obj) -> str:
    """A short SHA-256 of a JSON-serializable value (inputs that a resume must match)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False,
                                     default=str).encode("utf-8", "surrogatepass")).hexdigest()[:16]


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header: dict | None = None
        self.entries: list[dict] = []
        self._f = None

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> "Journal":
        """Reads an existing journal (header and complete entries)."""
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise McutextError(f"{self.path}: cannot read the journal ({e.strerror})") from None
        lines = raw.split(b"\n")
        if lines and lines[-1] != b"":
            lines.pop()   # torn last line: its piece of work is done again
        lines = [ln for ln in lines if ln]
        try:
            self.header = json.loads(lines[0])
            self.entries = [json.loads(ln) for ln in lines[1:]]
        except (IndexError, json.JSONDecodeError, UnicodeDecodeError):
            raise McutextError(f"{self.path}: not a journal of mcutext (unreadable)",
                               hint="delete it to start over") from None
        if not isinstance(self.header, dict) or "journal" not in self.header:
            raise McutextError(f"{self.path}: not a journal of mcutext",
                               hint="delete it to start over")
        return self

    def check(self, header: dict, hint: str) -> None:
        """The loaded header must describe the same session as `header`."""
        assert self.header is not None
        want = {"journal": 1, **header}
        diff = sorted(k for k in set(want) | set(self.header)
                      if self.header.get(k) != want.get(k))
        if diff:
            raise McutextError(f"{self.path}: the interrupted session differs from this one in "
                               f"{', '.join(diff)}", hint=hint)

    def start(self, header: dict) -> None:
        """A new journal holding only `header` (replaces any older one atomically)."""
        from .outputs import write_file
        write_file(self.path, json.dumps({"journal": 1, **header}) + "\n")
        self.header = {"journal": 1, **header}
        self.entries = []

    def append(self, entry: dict) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(entry) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.entries.append(entry)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def finish(self) -> None:
        """The session ended normally: the journal is not needed any more."""
        self.close()
        self.path.unlink(missing_ok=True)
