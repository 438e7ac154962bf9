"""The benchmarks' tables: a list of rows -> <name>.json and <name>.md."""

from __future__ import annotations

import json
from pathlib import Path

from mcutext.common.outputs import write_file


def write_table(out: Path, name: str, rows: list[dict], columns: list[tuple[str, str]],
                title: str, note: str = "") -> None:
    """rows -> out/<name>.json and out/<name>.md (columns: (key, header))."""
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / f"{name}.json", json.dumps(rows, indent=2, default=float) + "\n")
    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| " + " | ".join(h for _, h in columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for r in rows:
        cells = []
        for key, _ in columns:
            v = r.get(key, "")
            cells.append(f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else
                         f"{v:,.1f}" if isinstance(v, float) else
                         f"{v:,}" if isinstance(v, int) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    write_file(out / f"{name}.md", "\n".join(lines) + "\n")
