"""Baselines benchmark: FastGRNN and PRADO through the mcutext pipeline, side by side with the
default student (docs/baselines.md).

For each dataset, the mcutext student with the full three-part objective within the budget
(STUDENTS: the dataset's recipe, or its `_96k` variant where the recipe's table is larger)
and the `<dataset>_fastgrnn` and `<dataset>_prado` recipes (CE alone, as published) are
trained, converted to int8 and verified in TFLite Micro; then the
clean float and int8 accuracy, the char-level (the stronger of DeepWordBug and the adaptive
attack, per sentence) and word-level (PWWS) attacks on
the int8 model in TFLite Micro, the int8 weight bytes against the budget, the graph's MACs and
op count, TFLite Micro's activation arena, and the training time. Bundles given as `students`
(the default recipe's student of each dataset, e.g. from the pipeline section) are measured
the same way in the same table.

    build/bench/baselines.json, baselines.md         the table
    build/bench/bundles/<dataset>_<arch>/            the bundles
    build/bench/attacks/baselines/<recipe>/          per-example attack records

    python -m bench.baselines [--out build/bench] [--recipes sst2,sms_spam,...]
        [--archs fastgrnn,prado] [--attack-n 500] [--reuse] [--student sst2=PATH ...]

The device figures (`--device`, with `--reuse` for the bundles already trained): each bundle
built with `mcutext build` for the Cortex-M4 board (netduinoplus2, DSP kernels) and booted in
QEMU (-icount): flash, RAM, instructions per classification of a long test sentence, and
agreement with TFLite Micro on test sentences sent over the UART.

    build/bench/baselines_device.json, baselines_device.md
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mcutext.common import progress
from mcutext.common.errors import McutextError

DATASETS = ("sst2", "sms_spam", "ag_news", "clinc150")
ARCHS = ("fastgrnn", "prado")
FULL = "student"
# the student recipe of each dataset within the budget, trained with the full objective
STUDENTS = {"sst2": "sst2", "sms_spam": "sms_spam", "ag_news": "ag_news_96k",
            "clinc150": "clinc150_96k"}
BUDGET_BYTES = 96 * 1024       # int8 weights (constant buffers of the flatbuffer)
# char: per sentence the stronger of deepwordbug and the adaptive attack (attack.attack_char)
ATTACKS = (("char", "char"), ("word", "pwws"))
ATTACKS_VERSION = 2   # rows measured with other attack definitions are measured again
ATTACK_N = 500                 # the robustness bench's sample size (the same seeded sample)
ATTACK_BUDGET = 2              # words edited per sentence, as in the robustness bench
ATTACK_SEED = 0


# --- graph measurements -----------------------------------------------------------------------
def graph_cost(tflite: bytes) -> dict:
    """Multiply-accumulates of FULLY_CONNECTED and CONV_2D, and the element count of every
    other op's outputs (the elementwise work), for one classification."""
    from mcutext.int8.convert import op_names, read_model
    fb = read_model(tflite)
    sg = fb.subgraphs[0]
    macs = elementwise = 0
    for name, op in zip(op_names(fb), sg.operators):
        out = int(np.prod(sg.tensors[op.outputs[0]].shape))
        if name == "FULLY_CONNECTED":
            macs += out * int(sg.tensors[op.inputs[1]].shape[1])
        elif name == "CONV_2D":
            w = sg.tensors[op.inputs[1]].shape          # [cout, kh, kw, cin]
            macs += out * int(np.prod(w[1:]))
        elif name != "RESHAPE":
            elementwise += out
    return {"macs": macs, "elementwise": elementwise, "ops": len(sg.operators)}


def tflm_arena(tflite: bytes) -> dict:
    """TFLite Micro's arena use, from its allocation recorder: `head` is the activation
    memory planned over tensor lifetimes (the same on a 32-bit MCU), `tail` the persistent
    interpreter data (measured on this 64-bit host; smaller on a 32-bit MCU)."""
    from mcutext.int8.convert import tflm_interpreter
    it = tflm_interpreter(tflite)
    with tempfile.TemporaryFile(mode="w+b") as f:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            it.print_allocations()
            sys.stdout.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        f.seek(0)
        text = f.read().decode(errors="replace")
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if m:
            out[key] = int(m.group(1))
    return out


# --- one bundle ---------------------------------------------------------------------------
def measure(bundle_path: Path, dataset: str, model: str, out_dir: Path,
            attack_n: int | None = ATTACK_N, attacks=ATTACKS) -> dict:
    """One table row: sizes, costs, clean and robust accuracy of a bundle."""
    from mcutext.attack.run import run_attack
    from mcutext.int8.bundle import load_bundle
    b = load_bundle(bundle_path)
    m = b.manifest
    t = m["metrics"]["test"]
    arch = m["recipe"]["model"].get("arch", "cnn")
    cost = graph_cost(b.tflite_bytes)
    arena = tflm_arena(b.tflite_bytes)
    row = {
        "dataset": dataset, "model": model, "recipe": m["name"], "arch": arch,
        "tflite_sha256": _file_sha256(Path(bundle_path) / "model_int8.tflite"),
        "attack_n_asked": attack_n, "attacks_version": ATTACKS_VERSION,
        "params": m["sizes"]["params"], "int8_weights_bytes": m["sizes"]["int8_weights_bytes"],
        "within_budget": "yes" if m["sizes"]["int8_weights_bytes"] <= BUDGET_BYTES else "NO",
        "tflite_bytes": m["sizes"]["int8_file_bytes"], "ops": cost["ops"],
        "op_kinds": ",".join(sorted(set(m["int8"]["ops"]))), "macs": cost["macs"],
        "elementwise": cost["elementwise"], "arena_activations": arena.get("head", 0),
        "arena_host_total": arena.get("total", 0),
        "train_seconds": m["training"]["seconds"], "epochs": m["training"]["epochs"],
        "test_n": t["tflm"]["n"], "float_accuracy": t["keras"]["accuracy"],
        "int8_accuracy": t["tflm"]["accuracy"], "int8_float_agreement": t["int8_float_agreement"],
    }
    if arch == "fastgrnn":
        from mcutext.model.baselines import compression_report
        rep = compression_report(b.keras_model())
        row["rnn_nonzero"] = f"{rep['nonzero']}/{rep['dense_int8_bytes']}"
    for short, attack in attacks:
        if attack_n == 0:
            break
        res = run_attack(b, attack, runtime="tflm", n=attack_n, budget=ATTACK_BUDGET,
                         seed=ATTACK_SEED, transfer=False,
                         out=out_dir / "attacks" / "baselines" / m["name"])
        row[f"{short}_n"] = res["n"]
        row[f"{short}_clean"] = res["clean_accuracy"]
        row[f"{short}_robust"] = res["accuracy_under_attack"]
        row[f"{short}_success"] = res["success_rate"]
        row[f"{short}_queries"] = res["mean_queries"] or 0.0
        progress.log(f"{m['name']} {attack}: {res['clean_accuracy']:.3f} -> "
                     f"{res['accuracy_under_attack']:.3f} ({res['seconds']:.0f} s)")
    return row


COLUMNS = [
    ("dataset", "dataset"), ("model", "model"), ("int8_weights_bytes", "int8 weights (B)"),
    ("within_budget", "<= 96 KB"), ("ops", "ops"), ("macs", "MACs"),
    ("arena_activations", "TFLM activation arena (B)"), ("train_seconds", "training (s)"),
    ("float_accuracy", "float acc."), ("int8_accuracy", "int8 acc. (TFLM)"),
    ("int8_float_agreement", "int8/float agreement"), ("char_clean", "clean acc. (attack n)"),
    ("char_robust", "char-level robust acc."), ("word_robust", "word-level robust acc."),
    ("char_success", "char success"), ("word_success", "word success"),
]


def student_label(bundle_path: Path) -> str:
    """'mcutext student (<objective>)', from the bundle's recipe: CE, + KD, + mapping, + adv."""
    import json
    obj = json.loads((Path(bundle_path) / "manifest.json").read_text())["recipe"]["objective"]
    parts = ["CE"] + [term for key, term in (("kd_weight", "KD"), ("map_weight", "mapping"),
                                              ("adv_weight", "adversarial"))
                      if obj.get(key, 0) > 0]
    return "mcutext student (" + " + ".join(parts) + ")"


def bench_baselines(out_dir: Path, recipes=DATASETS, archs=ARCHS,
                    students: dict[str, Path] | None = None, attack_n: int | None = ATTACK_N,
                    reuse: bool = False, epochs: int | None = None,
                    full: bool = True) -> list[dict]:
    """Train (or with `reuse`, reuse) and measure, per dataset, the STUDENTS recipe's student
    (unless `full` is false) and every `<dataset>_<arch>` baseline, plus the `students`
    bundles (dataset -> bundle path; one trained from the STUDENTS recipe is used instead of
    training it again); write baselines.json / .md under out_dir. `attack_n` = 0 skips the
    attacks; `epochs` overrides the recipes' (smoke runs only)."""
    import json
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    out_dir = Path(out_dir)
    rows = []
    # Rows measured before for the same model file (same SHA-256) with the same attack sample
    # are kept: a run that stopped half-way resumes where it stopped.
    done = {}
    prev = out_dir / "baselines.json"
    if prev.is_file():
        for r in json.loads(prev.read_text()):
            if r.get("tflite_sha256"):
                done[(r["dataset"], r["model"], r["tflite_sha256"], r.get("attack_n_asked"),
                      r.get("attacks_version"))] = r

    def measured(path: Path, ds: str, model: str) -> dict:
        key = (ds, model, _file_sha256(Path(path) / "model_int8.tflite"), attack_n,
               ATTACKS_VERSION)
        if key not in done:
            done[key] = measure(path, ds, model, out_dir, attack_n)
            # the rows so far, then the earlier run's others (kept for a resumed run)
            write(list(rows) + [done[key]] +
                  [r for r in done.values() if r is not done[key] and r not in rows])
        return done[key]

    def write(rows_so_far: list[dict]) -> None:
        note = (f"Budget: int8 weights <= {BUDGET_BYTES:,} bytes (96 KB: every constant buffer "
                "of the .tflite, embedding table included). Baselines trained with "
                "cross-entropy alone, as published; the mcutext students' objective is named in "
                f"their row (recipes {', '.join(STUDENTS[d] for d in recipes)}). Accuracy on "
                "the full test split (clinc150: out-of-scope left out). Attacks on the int8 "
                f"model in TFLite Micro, {attack_n} test sentences (seeded sample, seed 0), at "
                f"most {ATTACK_BUDGET} words edited: char = per sentence the stronger of "
                "DeepWordBug and the adaptive attack, word = PWWS (WordNet synonyms). MACs: FULLY_CONNECTED + CONV_2D per classification. Activation "
                "arena: TFLite Micro's planned activation memory. Training: wall time on 2 "
                "shared CPU cores. Produced by `python -m bench --only baselines` "
                "(docs/baselines.md).")
        from .tables import write_table
        write_table(out_dir, "baselines", rows_so_far, COLUMNS,
                    "Baselines: FastGRNN and PRADO through the mcutext pipeline", note)

    for ds in recipes:
        if ds not in DATASETS:
            raise McutextError(f"unknown dataset '{ds}' (known: {', '.join(DATASETS)})")
        for arch in archs:
            if arch not in ARCHS:
                raise McutextError(f"unknown baseline '{arch}' (known: {', '.join(ARCHS)})")
        given = Path(students[ds]) if students and ds in students else None
        if given is not None and not (full and _recipe_name(given) == STUDENTS[ds]):
            rows.append(measured(given, ds, student_label(given)))
        for arch in ([FULL] if full else []) + list(archs):
            name = STUDENTS[ds] if arch == FULL else f"{ds}_{arch}"
            path = out_dir / "bundles" / name
            if arch == FULL and given is not None and _recipe_name(given) == name:
                path = given
            elif not (reuse and (path / "manifest.json").is_file()):
                t0 = time.time()
                train(load_recipe(name), out=path, epochs=epochs)
                progress.log(f"{name}: trained, converted and verified in {time.time() - t0:.0f} s")
            rows.append(measured(path, ds, student_label(path) if arch == FULL else arch))
    write(rows)
    return rows


# --- device figures -------------------------------------------------------------------------
DEVICE_BOARD = "netduinoplus2"
DEVICE_N = 20          # test sentences checked against TFLite Micro over the UART

DEVICE_COLUMNS = [
    ("dataset", "dataset"), ("model", "model"), ("firmware", "firmware"),
    ("kernels", "kernels"), ("calls", "kernel calls"),
    ("flash", "flash (B)"), ("weights", "weights (B)"), ("ram", "RAM (B)"),
    ("arena", "arena (B)"), ("macs", "MACs"), ("tokenizer_instr", "tokenizer instr."),
    ("model_instr", "model instr."), ("instr_per_mac", "instr./MAC"),
    ("identical", "= TFLM"), ("status", "status"),
]


def measure_device(bundle_path: Path, dataset: str, model: str, out_dir: Path,
                   board: str = DEVICE_BOARD, n: int = DEVICE_N) -> dict:
    """Build the bundle's firmware for `board`, boot it in QEMU, classify a long test sentence
    (instructions, the median of 3 runs) and n test sentences (int8 scores against TFLite
    Micro)."""
    from mcutext.text.datasets import long_sentence
    from mcutext.int8.bundle import load_bundle
    from mcutext.text.datasets import load_split
    from mcutext.device.client import Device
    from mcutext.firmware.build import build
    from mcutext.device.qemu import boot
    b = load_bundle(bundle_path)
    texts = load_split(b.manifest["dataset"], "test").texts
    sentence = long_sentence(texts, b.tokenizer)
    texts = texts[:n]
    ref = b.run_int8(b.tokenize(texts), "tflm")["logits"]
    row: dict = {"dataset": dataset, "model": model, "bundle": str(bundle_path),
                 "board": board}
    row["tflite_sha256"] = _file_sha256(Path(bundle_path) / "model_int8.tflite")
    out = (out_dir / "firmware" / "baselines"
           / re.sub(r"\W+", "_", f"{b.name}_{model}").strip("_"))
    row["firmware"] = "full"
    try:
        rep = build(bundle_path, board, out)
    except McutextError as e:
        if "does not fit" not in str(e):
            raise
        # The on-device learning reserves RAM per class (clinc150: 151); the
        # classification-only firmware (`mcutext build --no-personalize`) may still fit.
        row["firmware"] = "classification only"
        row["full_firmware"] = str(e).split(": ", 1)[-1]
        try:
            rep = build(bundle_path, board, out, personalize=False)
        except McutextError as e2:
            if "does not fit" not in str(e2):
                raise
            row["status"] = str(e2).split(": ", 1)[-1]
            progress.log(f"{b.name} on {board}: {row['status']}")
            return row
    row.update({"kernels": "dsp", "calls": len(rep.get("ops") or []),
                "flash": rep["flash_bytes"], "flash_budget": rep["flash_budget"],
                "weights": rep["weights_bytes"], "arena": rep["arena_bytes"],
                "macs": rep["macs"], "stack_reserve": rep["stack_reserve"],
                "ram_static": rep["ram_bytes"] - rep["stack_reserve"]})
    with boot(rep["elf"], board, log_path=out / "qemu.log") as url, \
            Device(url, timeout=120) as dev:
        runs = [dev.classify(sentence)["instructions"] for _ in range(3)]
        tok, instr = (sorted(r[k] for r in runs)[1] for k in ("tokenizer", "model"))
        same = sum(int(np.array_equal(np.array(dev.classify(t)["scores"], dtype=np.int8), w))
                   for t, w in zip(texts, ref))
        stats = dev.stats()
    row.update({"tokenizer_instr": tok, "model_instr": instr,
                "instr_per_mac": round(instr / rep["macs"], 2) if rep["macs"] else None,
                "stack_used": stats["stack"]["used"],
                "ram": row["ram_static"] + stats["stack"]["used"],
                "identical": f"{same}/{len(texts)}",
                "status": "ok" if same == len(texts) else "DIFFERS from TFLite Micro"})
    progress.log(f"{b.name} on {board}: flash {row['flash']:,} B, RAM {row['ram']:,} B, "
                 f"model {instr:,} instructions, {row['identical']} identical to TFLM")
    return row


def bench_baselines_device(out_dir: Path, recipes=DATASETS, archs=ARCHS,
                           students: dict[str, Path] | None = None,
                           board: str = DEVICE_BOARD, n: int = DEVICE_N,
                           full: bool = True) -> list[dict]:
    """Device figures of the trained full-objective students and baselines
    (out_dir/bundles/<dataset>_full, <dataset>_<arch>) and of the `students`; a bundle that is
    missing is skipped (listed in the note)."""
    import json
    out_dir = Path(out_dir)
    rows, missing = [], []
    # Rows measured before for the same model file (same SHA-256) are kept: a run that
    # stopped half-way resumes where it stopped.
    done = {}
    prev = out_dir / "baselines_device.json"
    if prev.is_file():
        for r in json.loads(prev.read_text()):
            if r.get("tflite_sha256") and r.get("board") == board and \
                    r.get("status") == "ok":
                done[(r["dataset"], r["model"], r["tflite_sha256"])] = \
                    {"firmware": "full", **r}
    for ds in recipes:
        given = Path(students[ds]) if students and ds in students else None
        todo = [(given, "")] if given is not None else []
        if full and not (given is not None and _recipe_name(given) == STUDENTS[ds]):
            todo.append((out_dir / "bundles" / STUDENTS[ds], ""))
        todo += [(out_dir / "bundles" / f"{ds}_{arch}", arch) for arch in archs]
        for path, model in todo:
            if not (path / "manifest.json").is_file():
                missing.append(str(path))
                continue
            model = model or student_label(path)
            sha = _file_sha256(path / "model_int8.tflite")
            row = done.get((ds, model, sha))
            rows.append(row if row is not None else
                        measure_device(path, ds, model, out_dir, board, n))
            _write_device_table(out_dir, rows, board, n, missing)
    _write_device_table(out_dir, rows, board, n, missing)
    return rows


def _recipe_name(bundle_path: Path) -> str:
    import json
    try:
        return json.loads((Path(bundle_path) / "manifest.json").read_text())["name"]
    except (OSError, ValueError, KeyError):
        return ""


def _file_sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _write_device_table(out_dir: Path, rows: list[dict], board: str, n: int,
                        missing: list[str]) -> None:
    note = (f"`mcutext build` for {board} (Cortex-M4F, DSP kernels), booted in QEMU with "
            "-icount: instructions (not cycles) per classification of the first test sentence "
            "with at least 32 words (median of 3 runs; tokenizer and model separately); RAM = "
            ".data + .bss + the stack's high-water mark; weights = the generated constant "
            f"arrays the build links. `= TFLM`: of the first {n} test sentences, those whose "
            "int8 scores over the UART are byte-identical to the TFLite Micro interpreter. "
            "Produced by `python -m bench --only baselines` (alone: `python -m "
            "bench.baselines --device --reuse`) "
            "(docs/baselines.md). Firmware 'classification only': the full firmware (with "
            "on-device learning, whose RAM grows with the classes) does not fit the board's "
            "RAM, so `--no-personalize`." + (f" Not measured (no bundle): "
                                              f"{', '.join(missing)}." if missing else ""))
    from .tables import write_table
    write_table(out_dir, "baselines_device", rows, DEVICE_COLUMNS,
                f"Baselines on the Cortex-M4 board ({board})", note)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.baselines")
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--recipes", default=",".join(DATASETS), help="datasets")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--attack-n", type=int, default=ATTACK_N, help="0 = no attacks")
    ap.add_argument("--reuse", action="store_true", help="reuse bundles already trained")
    ap.add_argument("--student", action="append", default=[], metavar="DATASET=BUNDLE",
                    help="a default-student bundle to measure alongside")
    ap.add_argument("--device", action="store_true",
                    help="the device figures (Cortex-M4 board under QEMU) instead of the "
                         "accuracy table; needs the bundles (--reuse)")
    ap.add_argument("--device-n", type=int, default=DEVICE_N,
                    help="test sentences checked against TFLite Micro on the device")
    args = ap.parse_args(argv)
    students = {}
    for s in args.student:
        ds, _, path = s.partition("=")
        if not path:
            print(f"error: --student wants DATASET=BUNDLE, got '{s}'", file=sys.stderr)
            return 2
        students[ds] = Path(path)
    from mcutext.common.determinism import configure_tensorflow
    configure_tensorflow()
    recipes = [r for r in args.recipes.split(",") if r]
    archs = [a for a in args.archs.split(",") if a]
    try:
        if args.device:
            if not args.reuse:
                print("error: --device measures trained bundles: add --reuse (train them "
                      "first without --device)", file=sys.stderr)
                return 2
            bench_baselines_device(args.out, recipes, archs, students or None, n=args.device_n)
            print(f"results under {args.out}/baselines_device.md")
            return 0
        bench_baselines(args.out, recipes, archs, students or None, args.attack_n, args.reuse)
    except McutextError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"results under {args.out}/baselines.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
