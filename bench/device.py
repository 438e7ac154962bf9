"""Device benchmark: every bundle built for every board, booted in QEMU where QEMU runs it.

Per (bundle, board, kernel path): flash and RAM against the board's budget (RAM = .data + .bss
+ the stack's measured high-water mark, read back with the protocol's `stats` after the
classifications), the runtime's flash (everything but the weights and the protocol's text),
instructions per classification for a 32-word sentence split into tokenizer and model,
instructions per multiply-accumulate of the model, and agreement with TFLite Micro on test
sentences sent over the UART. On boards whose core has the DSP extension (Cortex-M4) the
firmware is built twice: the optimized kernels and the portable C path (-DMT_FORCE_PORTABLE).

Counts under QEMU are instructions (-icount), not cycles. Results: build/bench/device.json and
device.md; the sst2 table also goes into docs/boards.md (between its result markers).

    python -m bench --only device [--recipes sst2]      (bundles from build/bench/bundles)
    python -m bench.device [--out build/bench] [--bundle NAME=PATH ...] [--n 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mcutext.common import progress
from mcutext.firmware.boards import PROJECT_ROOT, Board, list_boards
from mcutext.text.datasets import SENTENCE_WORDS, long_sentence
from mcutext.common.errors import McutextError
from mcutext.common.outputs import replace_between_markers, write_file

# Targets of issue 3 (Cortex-M4, optimized kernels).
TARGET_INSTR_PER_MAC = 1.5
TARGET_SPEEDUP = 3.0
TARGET_RUNTIME_FLASH = 12 * 1024
JITTER = 32  # instructions: see measure()
DOC = PROJECT_ROOT / "docs" / "boards.md"
DOC_START, DOC_END = "<!-- bench-device:start -->", "<!-- bench-device:end -->"


def _variants(board: Board) -> list[bool]:
    """portable=False (the default build), plus portable=True where that differs."""
    return [False, True] if board.dsp else [False]


def measure(bundle_path: Path, board: Board, portable: bool, out: Path, texts: list[str],
            sentence: str, reference: np.ndarray) -> dict:
    """Build (and, for an emulated board, boot and measure) one configuration."""
    from mcutext.int8.bundle import load_bundle
    from mcutext.device.client import Device
    from mcutext.firmware.build import build
    from mcutext.device.qemu import boot

    bundle = load_bundle(bundle_path)
    row: dict = {"bundle": bundle.name, "board": board.name, "cpu": board.cpu,
                 "kernels": "dsp" if board.dsp and not portable else "portable"}
    try:
        rep = build(bundle_path, board, out, portable=portable)
    except McutextError as e:
        if "does not fit" not in str(e):
            raise
        row["status"] = str(e).split(": ", 1)[-1]
        return row
    row.update({
        "status": "built", "flash": rep["flash_bytes"], "flash_budget": rep["flash_budget"],
        "ram_static": rep["ram_bytes"] - rep["stack_reserve"], "stack_reserve":
        rep["stack_reserve"], "ram_budget": rep["ram_budget"],
        "weights": rep["weights_bytes"], "arena": rep["arena_bytes"], "macs": rep["macs"],
        "runtime_flash": rep["runtime_flash_bytes"], "elf": rep["elf"],
        "personalization_flash": rep.get("personalization_flash_bytes"),
    })
    # The classification-only firmware (no on-device learning): the runtime overhead target
    # of the protocol + tokenizer + kernels is measured on it.
    rep_c = build(bundle_path, board, out / "classify-only", portable=portable, personalize=False)
    row["runtime_flash_classification"] = rep_c["runtime_flash_bytes"]
    row["flash_classification"] = rep_c["flash_bytes"]
    if not board.qemu_machine:
        row["status"] = "built (hardware only: not run)"
        return row
    with boot(rep["elf"], board, log_path=out / "qemu.log") as url, \
            Device(url, timeout=60, log=out / "session.log") as dev:
        info = dev.info()
        row["kernels"] = info.get("kernels", row["kernels"])
        runs = [dev.classify(sentence) for _ in range(3)]
        # -icount makes execution deterministic; what varies between runs is the phase of the
        # timer's tick against the first instruction (+-1) and whether a SysTick wrap
        # interrupt (a few instructions, every 2^24 ticks) falls inside the region.
        tok, model = (sorted(r["instructions"][k] for r in runs)[1]
                      for k in ("tokenizer", "model"))
        for r in runs:
            if max(abs(r["instructions"]["tokenizer"] - tok),
                   abs(r["instructions"]["model"] - model)) > JITTER:
                raise McutextError(f"{board.name}: instruction counts differ between "
                                   f"identical runs: {[r['instructions'] for r in runs]} "
                                   "(is QEMU running with -icount?)")
        same = 0
        for text, want in zip(texts, reference):
            r = dev.classify(text)
            same += int(np.array_equal(np.array(r["scores"], dtype=np.int8), want))
        stats = dev.stats()
    # The same firmware with a counter read around every kernel call: the split per operator
    # (the last one is the head, features -> classes).
    prof = build(bundle_path, board, out / "profile", portable=portable, profile=True)
    with boot(prof["elf"], board, log_path=out / "profile" / "qemu.log") as url, \
            Device(url, timeout=60) as dev:
        ops = dev.classify(sentence).get("ops", [])
    row["ops"] = [{"op": name, "instructions": n} for name, n in zip(prof["ops"] or [], ops)]
    row["head_instr"] = ops[-1] if ops else None
    row.update({
        "words": runs[0]["words"], "tokenizer_instr": tok, "model_instr": model,
        "instr_per_mac": round(model / rep["macs"], 3) if rep["macs"] else None,
        "stack_used": stats["stack"]["used"],
        "ram": row["ram_static"] + stats["stack"]["used"],
        "identical": f"{same}/{len(texts)}", "identical_n": same, "n": len(texts),
        "status": "ok" if same == len(texts) else "DIFFERS from TFLite Micro",
    })
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """Per bundle and DSP board: the optimized path against the portable one and the targets."""
    out = []
    for r in rows:
        if r.get("kernels") != "dsp" or "model_instr" not in r:
            continue
        port = next((p for p in rows if p["bundle"] == r["bundle"] and p["board"] == r["board"]
                     and p.get("kernels") == "portable" and "model_instr" in p), None)
        s = {"bundle": r["bundle"], "board": r["board"], "instr_per_mac": r["instr_per_mac"],
             "runtime_flash": r["runtime_flash_classification"],
             "runtime_flash_with_personalization": r["runtime_flash"]
             + (r.get("personalization_flash") or 0),
             "meets_instr_per_mac": r["instr_per_mac"] is not None
             and r["instr_per_mac"] <= TARGET_INSTR_PER_MAC,
             "meets_runtime_flash": r["runtime_flash_classification"] <= TARGET_RUNTIME_FLASH}
        if port:
            s["portable_instr_per_mac"] = port["instr_per_mac"]
            s["speedup"] = round(port["model_instr"] / r["model_instr"], 2)
            s["meets_speedup"] = s["speedup"] >= TARGET_SPEEDUP
        out.append(s)
    return out


COLUMNS = [("bundle", "bundle"), ("board", "board"), ("cpu", "CPU"), ("kernels", "kernels"),
           ("flash", "flash (B)"), ("flash_budget", "of"), ("ram", "RAM (B)"),
           ("ram_static", "data+bss"), ("stack_used", "stack peak"), ("ram_budget", "of"),
           ("weights", "weights"), ("runtime_flash", "runtime flash"),
           ("personalization_flash", "personalization flash"), ("macs", "MACs"),
           ("tokenizer_instr", "tokenizer instr."), ("model_instr", "model instr."),
           ("head_instr", "of which head"),
           ("instr_per_mac", "instr./MAC"), ("identical", "= TFLM"), ("status", "status")]


def markdown(rows: list[dict], summary: list[dict], sentence: str, seconds: float) -> str:
    def cell(v):
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else \
            f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v)

    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join("---:" if k not in ("bundle", "board", "cpu", "kernels", "status")
                            else "---" for k, _ in COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(k)) for k, _ in COLUMNS) + " |")
    lines += ["", "Instructions are counted by QEMU (`-icount`), not cycles; per classification "
              f"of a {SENTENCE_WORDS}-word sst2 test sentence: \"{sentence}\". RAM = .data + "
              ".bss + the stack's high-water mark (read with `stats` after all "
              "classifications); runtime flash = flash - weights - the protocol's strings - "
              "personalization (its code, the factory head in float, libm: column "
              "'personalization flash'). The runtime flash target is checked on the "
              "classification-only build (`mcutext build --no-personalize`). "
              "`= TFLM`: test sentences sent over the UART whose int8 scores are "
              "byte-identical to the TFLite Micro interpreter.", ""]
    if summary:
        lines += ["| bundle | board | instr./MAC (DSP) | target | instr./MAC (portable) | "
                  "portable / DSP | target | runtime flash, classification firmware (B) | target "
                  "| runtime + personalization (B) |",
                  "|---|---|---:|---|---:|---:|---|---:|---|---:|"]
        for s in summary:
            def ok(key):
                return "met" if s.get(key) else ("missed" if key in s else "")
            lines.append(
                f"| {s['bundle']} | {s['board']} | {cell(s['instr_per_mac'])} | <= "
                f"{TARGET_INSTR_PER_MAC}: {ok('meets_instr_per_mac')} | "
                f"{cell(s.get('portable_instr_per_mac'))} | {cell(s.get('speedup'))}x | >= "
                f"{TARGET_SPEEDUP:g}x: {ok('meets_speedup')} | {cell(s['runtime_flash'])} | "
                f"<= {TARGET_RUNTIME_FLASH}: {ok('meets_runtime_flash')} | "
                f"{cell(s.get('runtime_flash_with_personalization'))} |")
        lines.append("")
    lines += per_op_table(rows)
    lines.append(f"Measured in {seconds:.0f} s by `python -m bench --only device` "
                 "(bench/device.py).")
    return "\n".join(lines) + "\n"


def per_op_table(rows: list[dict]) -> list[str]:
    """Instructions of each kernel call (profiling builds), per bundle one table with a column
    per board and kernel path."""
    lines: list[str] = []
    for bundle in dict.fromkeys(r["bundle"] for r in rows):
        cols = [r for r in rows if r["bundle"] == bundle and r.get("ops")]
        if not cols:
            continue
        lines += [f"{bundle}: instructions per operator (profiling build, same sentence; the "
                  "last FULLY_CONNECTED is the head):", "",
                  "| operator | " + " | ".join(f"{r['board']} {r['kernels']}" for r in cols)
                  + " |", "|---|" + "---:|" * len(cols)]
        for k, op in enumerate(cols[0]["ops"]):
            cells = [f"{r['ops'][k]['instructions']:,}" if k < len(r["ops"]) else ""
                     for r in cols]
            lines.append(f"| {k}: {op['op']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def update_doc(table: str, doc: Path = DOC) -> bool:
    """Replaces the text between the result markers of docs/boards.md."""
    return replace_between_markers(doc, DOC_START, DOC_END, table)


def bench_device(out_dir: Path, bundles: dict[str, Path] | None = None,
                 boards: list[str] | None = None, n: int = 50, update_docs: bool = True
                 ) -> dict:
    """Measures every bundle on every board (see the module docstring). Without an sst2
    bundle, trains one (the full recipe) under out_dir/bundles/sst2."""
    from mcutext.int8.bundle import load_bundle
    from mcutext.text.datasets import load_split

    t0 = time.monotonic()
    out_dir = Path(out_dir)
    bundles = dict(bundles or {})
    if "sst2" not in bundles:
        from mcutext.model.recipe import load_recipe
        from mcutext.train.pipeline import train
        progress.log("device bench: training the sst2 bundle first")
        bundles = {"sst2": train(load_recipe("sst2"), out=out_dir / "bundles" / "sst2"),
                   **bundles}
    all_boards = [b for b in list_boards() if boards is None or b.name in boards]
    configs = [(name, path, b, portable) for name, path in bundles.items()
               for b in all_boards for portable in _variants(b)]
    rows, sentence = [], ""
    prepared: dict[str, tuple] = {}
    for name, path, board, portable in progress.track(configs, len(configs), "device bench"):
        if name not in prepared:
            b = load_bundle(path)
            texts = load_split(b.manifest.get("dataset", name), "test").texts
            s = long_sentence(texts, b.tokenizer)
            ref = b.run_int8(b.tokenize(texts[:n]), "tflm")["logits"]
            prepared[name] = (texts[:n], s, ref)
        texts, s, ref = prepared[name]
        sentence = sentence or s
        fw = out_dir / "firmware" / name / (board.name + ("-portable" if portable else ""))
        row = measure(Path(path), board, portable, fw, texts, s, ref)
        rows.append(row)
        progress.log(f"{name} on {board.name} ({row['kernels']}): {row['status']}"
                     + (f", model {row['model_instr']} instructions, "
                        f"{row['instr_per_mac']} per MAC" if "model_instr" in row else ""))
    summary = summarize(rows)
    seconds = time.monotonic() - t0
    result = {"rows": rows, "summary": summary, "sentence": sentence,
              "sentence_words": SENTENCE_WORDS, "counter": "instructions (QEMU -icount)",
              "targets": {"instr_per_mac": TARGET_INSTR_PER_MAC, "speedup": TARGET_SPEEDUP,
                          "runtime_flash_bytes": TARGET_RUNTIME_FLASH},
              "seconds": round(seconds, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_file(out_dir / "device.json", json.dumps(result, indent=2) + "\n")
    md = markdown(rows, summary, sentence, seconds)
    write_file(out_dir / "device.md", "# Device benchmark\n\n" + md)
    if update_docs:
        sst2 = [r for r in rows if r["bundle"] == "sst2"]
        update_doc(markdown(sst2, [s for s in summary if s["bundle"] == "sst2"], sentence,
                            seconds))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.device")
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--board", action="append", default=None)
    ap.add_argument("--n", type=int, default=50, help="test sentences compared with TFLM")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/boards.md")
    args = ap.parse_args(argv)
    try:
        bundles = dict(b.split("=", 1) for b in args.bundle)
        res = bench_device(args.out, {k: Path(v) for k, v in bundles.items()}, args.board,
                           args.n, update_docs=not args.no_docs)
    except (McutextError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((args.out / "device.md").read_text())
    return 0 if all(r["status"] != "DIFFERS from TFLite Micro" for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
