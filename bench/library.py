"""The exported C library on every Cortex-M core (docs/library.md, "Measured").

For one bundle (sst2), `mcutext export --format cmake`, then per core (the first emulated
board of each `cpu`, by name): the exported example firmware built with cmake, the library's
flash without the weights read from its linker map, next to the runtime flash of mcutext's
own classification-only firmware for the same model and board (`mcutext build
--no-personalize`: flash - weights - the protocol's strings); and the example booted in QEMU
with N sst2 test sentences, its int8 scores compared with TFLite Micro's.

    python -m bench.library [--bundle build/sst2/bundle] [--out build/bench] [-n 200]

Results: OUT/library.{json,md}; the table also goes into docs/library.md (between its
result markers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mcutext.firmware.boards import PROJECT_ROOT, list_boards
from mcutext.common.errors import McutextError
from mcutext.common.outputs import replace_between_markers, write_file

DOC = PROJECT_ROOT / "docs" / "library.md"
DOC_START, DOC_END = "<!-- bench-library:start -->", "<!-- bench-library:end -->"
TARGET = 1.10   # the library's flash (with what it takes from libc) / the firmware's runtime


def core_boards() -> list[str]:
    """The first emulated board (by name) of each core."""
    seen: dict[str, str] = {}
    for b in sorted(list_boards(), key=lambda b: b.name):
        if b.qemu_machine and b.cpu not in seen:
            seen[b.cpu] = b.name
    return list(seen.values())


def bench_library(out_dir: Path, bundle: Path, n: int = 200, update_docs: bool = True) -> list:
    from mcutext.firmware import export, build as firmware
    from mcutext.device import qemu
    from mcutext.int8.bundle import load_bundle
    from mcutext.text.datasets import load_split

    t0 = time.monotonic()
    b = load_bundle(bundle)
    work = Path(out_dir) / "library"
    lib = export.export(bundle, "cmake", work / "lib", force=True)
    texts = load_split("sst2" if b.name.startswith("sst2") else b.name, "test").texts[:n]
    want = b.run_int8(b.tokenize(texts), "tflm")["logits"]
    rows = []
    for name in core_boards():
        board = next(x for x in list_boards() if x.name == name)
        row = {"board": name, "cpu": board.cpu, "kernels": "dsp" if board.dsp else "portable"}
        try:
            elf = export.build_example(lib["out"], name, work / f"example-{name}")
            size = export.library_flash(elf.with_name("classify.map"))
            fw = firmware.build(bundle, name, work / f"firmware-{name}", personalize=False,
                                force=True)
            got = qemu.classify_over_uart(elf, name, texts)
            agree = sum(s == w.tolist() for (_, s, _), w in zip(got, want))
            total = size["library"] + size["libc"]
            row.update({
                "code": size["code"], "rodata": size["rodata"], "data": size["data"],
                "library": size["library"], "libc": size["libc"], "library_total": total,
                "weights": size["weights"], "firmware_runtime": fw["runtime_flash_bytes"],
                "ratio": round(total / fw["runtime_flash_bytes"], 3),
                "tflm": f"{agree}/{len(texts)}",
                "status": "ok" if agree == len(texts) and total <= TARGET *
                fw["runtime_flash_bytes"] else "check",
            })
        except McutextError as e:
            row["status"] = f"failed: {str(e).splitlines()[0]}"
        rows.append(row)
    seconds = time.monotonic() - t0
    table = _table(b.name, rows, n, seconds)
    import json
    write_file(Path(out_dir) / "library.json", json.dumps(rows, indent=2) + "\n")
    write_file(Path(out_dir) / "library.md", "# The exported library per core\n\n" + table)
    if update_docs:
        _update_doc(table)
    return rows


def _table(model: str, rows: list[dict], n: int, seconds: float) -> str:
    cols = [("board", "board"), ("cpu", "core"), ("kernels", "kernels"), ("code", "code (B)"),
            ("rodata", "constants (B)"), ("data", ".data (B)"), ("library", "library (B)"),
            ("libc", "+ libc/libgcc (B)"), ("weights", "weights (B)"),
            ("firmware_runtime", "mcutext firmware runtime (B)"), ("ratio", "ratio"),
            ("tflm", "= TFLM"), ("status", "status")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |",
             "|" + "|".join("---" if k in ("board", "cpu", "kernels", "status") else "---:"
                            for k, _ in cols) + "|"]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k, "")
            cells.append(f"{v:,}" if isinstance(v, int) else f"{v:.3f}" if isinstance(v, float)
                         else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Model {model}; library = the exported library's code, constants and .data "
              "without the weights (weights.c), read from the example firmware's linker map "
              "(-O2, -ffunction-sections, --gc-sections); + libc/libgcc = what it and the "
              "example take from newlib and libgcc; mcutext firmware runtime = the "
              "classification-only firmware of the same model on the same board (`mcutext "
              "build --no-personalize`): flash - weights - the protocol's strings, so its "
              f"protocol, start-up and board code included. ratio = (library + libc) / "
              f"firmware runtime, target <= {TARGET:.2f}. = TFLM: sst2 test sentences sent to "
              "the example firmware over the UART under QEMU whose int8 scores are "
              "byte-identical to the TFLite Micro interpreter's.", "",
              f"Measured in {seconds:.0f} s by `python -m bench --only library` "
              "(bench/library.py)."]
    return "\n".join(lines) + "\n"


def _update_doc(table: str, doc: Path = DOC) -> bool:
    return replace_between_markers(doc, DOC_START, DOC_END, table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.library")
    ap.add_argument("--bundle", type=Path, default=Path("build/sst2/bundle"))
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args(argv)
    from mcutext.common import quiet
    quiet.setup()
    try:
        rows = bench_library(args.out, args.bundle, args.n, not args.no_docs)
    except McutextError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((args.out / "library.md").read_text())
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
