"""Robustness benchmark: every attack on every host runtime for each bundle, a transfer
matrix, a budget sweep, certified accuracy at 1 and 2 edits, and deepwordbug through the
firmware under QEMU compared example by example with the same attack on TFLite Micro.
Tables (markdown + JSON) under build/bench/ (robustness, robustness_transfer,
robustness_budget, robustness_certified, robustness_device); the per-example records under
build/bench/attacks/<recipe>/, the certification verdicts under build/bench/certify/.
docs/robustness.md reports the sst2 figures.

    python -m bench --only robustness              (bundles from the pipeline section)
    python -m bench.attack sst2=PATH [more=PATH ...] [--out build/bench] [--n 500]
                                   [--device-n 100] [--board BOARD] [--no-device]
                                   [--certify-edits 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

from mcutext.common import progress
from mcutext.attack.catalog import ATTACKS, HOST_RUNTIMES
from mcutext.attack.run import run_attack
from .tables import write_table
from mcutext.common.errors import McutextError
from mcutext.common.outputs import write_file

BUDGET = 2
# every attack but the adaptive one alone: `char` runs it where deepwordbug fails, and alone
# it costs ten times deepwordbug's queries on every runtime (docs/robustness.md)
BENCH_ATTACKS = tuple(a for a in ATTACKS if a != "adaptive")
SWEEP_ATTACKS = ("char", "pwws")
CERTIFY_EDITS = (1, 2)     # certified accuracy (mcutext.attack.certify) at these numbers of edits
SWEEP_BUDGETS = (1, 2, 3, 4, 0.1, 0.2)
SEED = 0
# attacked through the firmware, compared with tflm: deepwordbug's ~50 queries per sentence
# keep the serial path practical (the adaptive attack asks up to ~1,300)
DEVICE_ATTACKS = ("deepwordbug",)
DEVICE_N = 100
DEVICE_RECIPES = ("sst2",)


def _row(recipe: str, res: dict) -> dict:
    return {
        "recipe": recipe, "attack": res["attack"], "runtime": res["runtime"],
        "budget": res["budget"], "n": res["n"], "clean_accuracy": res["clean_accuracy"],
        "accuracy_under_attack": res["accuracy_under_attack"],
        "success_rate": res["success_rate"],
        "mean_words_changed": res["mean_words_changed"] or 0.0,
        "mean_share_words_changed": res["mean_share_words_changed"] or 0.0,
        "mean_queries": res["mean_queries"] or 0.0, "seconds": res["seconds"],
        **({"float_success_rate": res["float_success_rate"]} if "float_success_rate" in res
           else {}),
    }


def robustness_bench(bundle_paths: dict[str, Path], out_dir: Path, n: int = 500,
                     runtimes: tuple[str, ...] = HOST_RUNTIMES,
                     attacks: tuple[str, ...] = BENCH_ATTACKS, sweep: bool = True,
                     port: str | None = None, device: bool | None = None,
                     device_n: int = DEVICE_N, board: str | None = None,
                     device_recipes: tuple[str, ...] = DEVICE_RECIPES,
                     certify_edits: tuple[int, ...] = CERTIFY_EDITS) -> dict:
    """Attack `n` test examples (seeded sample, seed 0) of every bundle with every attack at
    a budget of 2 words, on every runtime; replay each runtime's adversarial texts on the
    others; sweep the budget of the char- and word-level attacks on tflm; certify the same
    sentences at each of `certify_edits` edited words (verdicts under <out>/certify/). With
    `port`, the device there is attacked too (one serial exchange per query) in the main
    table.

    The device comparison (`device`; None = whenever the firmware can be built and booted
    here): for each of `device_recipes`, the firmware built for an emulated board and
    attacked over serial under QEMU on `device_n` sentences, compared example by example
    with the same attack on tflm."""
    out_dir = Path(out_dir)
    if not bundle_paths:
        raise McutextError("robustness bench: no bundles (run the pipeline section first)")
    runtimes = tuple(runtimes) + (("device",) if port and "device" not in runtimes else ())
    rows, transfer_rows, sweep_rows, cert_rows = [], [], [], []
    t_start = time.time()
    for recipe, path in bundle_paths.items():
        from mcutext.int8.bundle import load_bundle
        bundle = load_bundle(path)
        rec_dir = out_dir / "attacks" / recipe
        for attack in attacks:
            for runtime in runtimes:
                res = run_attack(bundle, attack, runtime=runtime, n=n, budget=BUDGET,
                                 seed=SEED, port=port, out=rec_dir)
                rows.append(_row(recipe, res))
                tr = {"recipe": recipe, "attack": attack, "source": runtime,
                      "adversarial": res["successes"]}
                for target, t in res["transfer"].items():
                    tr[f"to_{target}"] = t["rate"] if t["rate"] is not None else ""
                tr[f"to_{runtime}"] = 1.0 if res["successes"] else ""
                transfer_rows.append(tr)
                progress.log(f"{recipe} {attack} {runtime}: accuracy "
                             f"{res['clean_accuracy']:.3f} -> {res['accuracy_under_attack']:.3f}"
                             f" ({res['seconds']:.0f} s)")
        if sweep:
            for attack in SWEEP_ATTACKS:
                for b in SWEEP_BUDGETS:
                    res = run_attack(bundle, attack, runtime="tflm", n=n, budget=b, seed=SEED,
                                     transfer=False)
                    sweep_rows.append(_row(recipe, res))
        for k in certify_edits:
            from mcutext.attack.certify import certify
            (out_dir / "certify").mkdir(parents=True, exist_ok=True)
            c = certify(bundle, edits=k, n=n, out=out_dir / "certify" / f"{recipe}-k{k}.json",
                        force=True)
            cert_rows.append({"recipe": recipe, **{key: c[key] for key in (
                "edits", "n", "clean_accuracy", "certified_accuracy", "certified", "attacked",
                "too_many", "wrong_clean", "evaluations", "engine", "seconds")}})
            progress.log(f"{recipe} certified at {k} edits: {c['certified_accuracy']:.3f} "
                         f"({c['seconds']:.0f} s)")

    cols = [("recipe", "recipe"), ("attack", "attack"), ("runtime", "runtime"),
            ("budget", "budget"), ("n", "n"), ("clean_accuracy", "clean acc."),
            ("accuracy_under_attack", "acc. under attack"), ("success_rate", "success rate"),
            ("mean_words_changed", "words changed"),
            ("mean_share_words_changed", "share of words changed"),
            ("mean_queries", "queries"), ("seconds", "time (s)")]
    note = (f"Budget: at most {BUDGET} words edited per sentence; {n} test sentences per "
            f"recipe (seeded sample, seed {SEED}). Words changed and their share: mean over "
            "successful attacks; queries: mean over attacked examples (the clean query "
            "included). hotflip searches on the float Keras model and is judged on the "
            "runtime named. Time: the whole attack on 2 CPU cores, runtime already loaded. "
            "Produced by `python -m bench --only robustness`.")
    write_table(out_dir, "robustness", rows, cols,
                "Robustness: accuracy under attack, per runtime", note)
    tcols = [("recipe", "recipe"), ("attack", "attack"), ("source", "found on"),
             ("adversarial", "adversarial texts")] + [
        (f"to_{t}", f"fools {t}") for t in runtimes]
    write_table(out_dir, "robustness_transfer", transfer_rows, tcols,
                "Robustness: transfer of adversarial texts between runtimes",
                "Share of the adversarial texts found on one runtime that also fool another "
                "(among those whose original the other runtime classified correctly).")
    if sweep_rows:
        write_table(out_dir, "robustness_budget", sweep_rows, cols,
                    "Robustness: budget sweep on the int8 model (TFLite Micro)",
                    "Budget >= 1: words edited per sentence; below 1: share of the words.")
    if cert_rows:
        ccols = [("recipe", "recipe"), ("edits", "edits"), ("n", "n"),
                 ("clean_accuracy", "clean acc."), ("certified_accuracy", "certified acc."),
                 ("attacked", "attacked"), ("too_many", "too many"),
                 ("wrong_clean", "wrong clean"), ("evaluations", "rows evaluated"),
                 ("seconds", "time (s)")]
        write_table(out_dir, "robustness_certified", cert_rows, ccols,
                    "Robustness: certified accuracy under character edits (TFLite Micro int8)",
                    f"`mcutext certify`: the share of the same {n} sentences that no "
                    "combination of at most `edits` one-character word edits misclassifies, "
                    "by enumeration; 'too many': over 200,000 combinations, not certified. "
                    "Verdicts: certify/<recipe>-k<edits>.json.")
    device_rows: list[dict] = []
    why_not = device_unavailable() if device is not False else "not asked for (--no-device)"
    targets = {r: p for r, p in bundle_paths.items() if r in device_recipes}
    if why_not is None and targets:
        for recipe, path in targets.items():
            device_rows += device_bench(Path(path), recipe, out_dir, n=device_n, board=board)
        write_device_table(out_dir, device_rows, device_n)
    elif device:
        raise McutextError(f"robustness bench: cannot attack the device: {why_not}")
    else:
        why_not = why_not or f"no bundle of {', '.join(device_recipes)}"
        write_device_table(out_dir, [], device_n, f"Not measured in this run: {why_not}.")
    summary = {"rows": rows, "transfer": transfer_rows, "budget_sweep": sweep_rows,
               "certified": cert_rows, "device": device_rows,
               "seconds": round(time.time() - t_start, 1)}
    write_file(out_dir / "robustness_all.json", json.dumps(summary, indent=2) + "\n")
    return summary


# --- the attack through the firmware --------------------------------------------------------
def device_unavailable() -> str | None:
    """Why the firmware cannot be built and booted here (None when it can)."""
    import importlib.util

    from mcutext.firmware.build import CC
    from mcutext.device.qemu import QEMU
    if importlib.util.find_spec("mcutext.codegen") is None:
        return "mcutext.codegen (the model's C generator) is not there yet"
    for tool, pkg in ((CC, "gcc-arm-none-eabi"), (QEMU, "qemu-system-arm")):
        if shutil.which(tool) is None:
            return f"{tool} not found (install {pkg}: `make setup`)"
    return None


def emulated_board(name: str | None = None):
    """The board to attack under QEMU: `name`, else $MCUTEXT_BOARD, else the emulated board
    with the most RAM (so that any recipe's model fits)."""
    from mcutext.firmware.boards import get_board, list_boards
    from mcutext.common.errors import McutextError
    name = name or os.environ.get("MCUTEXT_BOARD")
    if name:
        board = get_board(name)
        if not board.qemu_machine:
            raise McutextError(f"board '{board.name}' is not emulated by QEMU")
        return board
    emulated = [b for b in list_boards() if b.qemu_machine]
    if not emulated:
        raise McutextError("no board with a QEMU machine under boards/")
    return max(emulated, key=lambda b: b.ram_bytes)


@contextlib.contextmanager
def booted_device(bundle_path: Path, board=None, out_dir: Path | None = None
                  ) -> Iterator[tuple[str, dict]]:
    """Build the firmware of `bundle_path` for an emulated board, boot it in QEMU and yield
    (pyserial URL of its UART, build report); QEMU is stopped when the block ends."""
    from mcutext.firmware.build import build
    from mcutext.device.qemu import boot
    board = emulated_board(board if isinstance(board, str) or board is None else board.name)
    report = build(bundle_path, board, out_dir)
    with boot(report["elf"], board) as url:
        yield url, report


def compare_runs(device: dict, reference: dict) -> dict:
    """Example-by-example comparison of one attack run on the device with the same run on
    the reference runtime: status, adversarial text, queries and the verdict's int8 scores
    must all be equal (the firmware is bit-exact with TFLite Micro, so any difference is a
    bug)."""
    keys = ("index", "status", "perturbed", "pred", "queries", "scores_int8")
    pairs = list(zip(device["examples"], reference["examples"]))
    if len(device["examples"]) != len(reference["examples"]):
        raise ValueError("the runs attacked different numbers of examples")
    differ = []
    for d, r in pairs:
        bad = [k for k in keys if d.get(k) != r.get(k)]
        if bad:
            differ.append({"index": r["index"], "fields": bad,
                           "device": {k: d.get(k) for k in bad},
                           reference["runtime"]: {k: r.get(k) for k in bad}})
    return {"n": len(pairs), "identical": len(pairs) - len(differ), "differ": differ,
            "successes_device": device["successes"],
            f"successes_{reference['runtime']}": reference["successes"],
            "same_successes": [e["index"] for e in device["examples"]
                               if e["status"] == "success"] == [
                e["index"] for e in reference["examples"] if e["status"] == "success"]}


def device_bench(bundle_path: Path, recipe: str, out_dir: Path, n: int = DEVICE_N,
                 attacks: tuple[str, ...] = DEVICE_ATTACKS, board: str | None = None,
                 port: str | None = None) -> list[dict]:
    """Each attack on `n` test sentences through the firmware over serial (QEMU, or the
    board at `port`), then on TFLite Micro with the same seed, compared example by example.
    Returns one row per attack (also in robustness_device.json/.md)."""
    rec_dir = out_dir / "attacks" / recipe
    rows = []
    with contextlib.ExitStack() as stack:
        info = {}
        if port is None:
            port, report = stack.enter_context(
                booted_device(bundle_path, board, out_dir / "firmware" / recipe))
            info = {"board": report["board"], "qemu_machine": report["qemu_machine"]}
        else:
            info = {"board": board or "(given port)", "qemu_machine": ""}
        for attack in attacks:
            dev = run_attack(bundle_path, attack, runtime="device", port=port, n=n,
                             budget=BUDGET, seed=SEED, out=rec_dir, transfer=False)
            ref = run_attack(bundle_path, attack, runtime="tflm", n=n, budget=BUDGET,
                             seed=SEED, transfer=False)
            cmp = compare_runs(dev, ref)
            write_file(rec_dir / f"{attack}-device-vs-tflm.json",
                       json.dumps(cmp, indent=2) + "\n")
            rows.append({
                "recipe": recipe, "attack": dev["attack"], **info, "n": dev["n"],
                "clean_accuracy": dev["clean_accuracy"],
                "accuracy_under_attack": dev["accuracy_under_attack"],
                "success_rate": dev["success_rate"], "successes_device": dev["successes"],
                "successes_tflm": ref["successes"],
                "identical_examples": cmp["identical"],
                "same_successes": "yes" if cmp["same_successes"] else "NO",
                "queries": dev["runtime_rows"], "mean_queries": dev["mean_queries"] or 0.0,
                "device_seconds": dev["seconds"], "tflm_seconds": ref["seconds"],
                "ms_per_query_device": round(
                    1000 * dev["seconds"] / max(dev["runtime_rows"], 1), 2),
            })
            progress.log(f"{recipe} {attack} device: {dev['successes']} successes, tflm "
                         f"{ref['successes']}; {cmp['identical']}/{cmp['n']} examples identical "
                         f"({dev['seconds']:.0f} s)")
    return rows


def write_device_table(out_dir: Path, rows: list[dict], n: int, note: str = "") -> None:
    cols = [("recipe", "recipe"), ("attack", "attack"), ("board", "board"), ("n", "n"),
            ("clean_accuracy", "clean acc."), ("accuracy_under_attack", "acc. under attack"),
            ("successes_device", "successes (device)"), ("successes_tflm", "successes (tflm)"),
            ("identical_examples", "identical examples"), ("same_successes", "same successes"),
            ("queries", "serial queries"), ("device_seconds", "device time (s)"),
            ("ms_per_query_device", "ms per query"), ("tflm_seconds", "tflm time (s)")]
    write_table(out_dir, "robustness_device", rows, cols,
                "Robustness: the attack through the firmware (QEMU, serial) vs TFLite Micro",
                note or (f"{n} test sentences (seeded sample), budget {BUDGET} words, seed "
                         f"{SEED}. Identical: same status, adversarial text, queries and int8 "
                         "scores of the verdict. Produced by `python -m bench "
                         "--only robustness`."))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.attack")
    ap.add_argument("bundles", nargs="+", help="RECIPE=BUNDLE_PATH")
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--runtimes", default=",".join(HOST_RUNTIMES))
    ap.add_argument("--attacks", default=",".join(BENCH_ATTACKS))
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--certify-edits", default=",".join(map(str, CERTIFY_EDITS)),
                    help="certified accuracy at these numbers of edits ('' for none)")
    ap.add_argument("--port", default=None, help="also attack the device at this URL")
    ap.add_argument("--device-n", type=int, default=DEVICE_N,
                    help="sentences for the firmware-vs-TFLite-Micro comparison under QEMU")
    ap.add_argument("--board", default=None, help="emulated board for that comparison")
    dev = ap.add_mutually_exclusive_group()
    dev.add_argument("--device", dest="device", action="store_true", default=None,
                     help="require the firmware comparison (error when it cannot run)")
    dev.add_argument("--no-device", dest="device", action="store_false")
    ap.add_argument("--device-only", action="store_true",
                    help="only the firmware comparison (robustness_device.*)")
    args = ap.parse_args(argv)
    paths = {}
    for b in args.bundles:
        name, sep, p = b.partition("=")
        if not sep:
            print(f"error: expected RECIPE=PATH, got {b!r}", file=sys.stderr)
            return 2
        paths[name] = Path(p)
    try:
        edits = tuple(int(k) for k in args.certify_edits.split(",") if k.strip())
    except ValueError:
        print(f"error: --certify-edits: expected numbers like 1,2, got {args.certify_edits!r}",
              file=sys.stderr)
        return 2
    from mcutext.common.determinism import configure_tensorflow
    configure_tensorflow()
    try:
        if args.device_only:
            why = device_unavailable()
            if why:
                raise McutextError(f"cannot attack the device: {why}")
            rows = []
            for recipe, path in paths.items():
                rows += device_bench(path, recipe, args.out, n=args.device_n, board=args.board)
            write_device_table(args.out, rows, args.device_n)
            print(f"results under {args.out}/")
            return 0
        robustness_bench(paths, args.out, n=args.n,
                         runtimes=tuple(r for r in args.runtimes.split(",") if r),
                         attacks=tuple(a for a in args.attacks.split(",") if a),
                         sweep=not args.no_sweep, port=args.port, device=args.device,
                         device_n=args.device_n, board=args.board,
                         certify_edits=edits)
    except McutextError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"results under {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
