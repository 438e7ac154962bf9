"""`python -m bench.robust`: the robust encoding on the device (docs/robustness.md).

For a robust bundle and an emulated board: build the firmware, boot it in QEMU and classify
every test sentence over serial; the device's words and int8 scores must equal TFLite
Micro's on the ids the Python encoder gives (the specification), sentence by sentence. A
disagreement is a failure, not a statistic. Writes build/bench/robust_device_<recipe>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mcutext.common import progress


def device_agreement(bundle_path: Path, board: str, limit: int | None = None) -> dict:
    from mcutext.int8.bundle import load_bundle
    from mcutext.text.datasets import load_split
    from mcutext.device.client import Device
    from mcutext.firmware.build import build
    from mcutext.device.qemu import boot
    b = load_bundle(bundle_path)
    texts = load_split(b.manifest["dataset"], "test").texts[:limit]
    rep = build(bundle_path, board, reuse=True)
    want = b.run_int8(b.tokenize(texts), "tflm")["logits"]   # the Python encoder's ids
    same_scores = same_words = 0
    t0 = time.time()
    with boot(rep["elf"], board) as url:
        dev = Device(url)
        with progress.task(f"{b.name} on {board}", total=len(texts)) as update:
            for k, t in enumerate(texts):
                r = dev.classify(t)
                same_words += r["words"] == b.tokenizer.num_words(t)
                same_scores += list(r["scores"]) == [int(v) for v in want[k]]
                update(advance=1)
        dev.close()
    return {"recipe": b.name, "board": board, "sentences": len(texts),
            "identical_scores": same_scores, "identical_word_counts": same_words,
            "encoding_bytes": rep.get("encoding_bytes"), "flash_bytes": rep.get("flash_bytes"),
            "ram_bytes": rep.get("ram_bytes"), "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--board", default="netduinoplus2")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    a = ap.parse_args(argv)
    from mcutext.common.errors import McutextError
    try:
        res = device_agreement(a.bundle, a.board, a.limit)
    except McutextError as e:
        print(f"error: {e}" + (f"\nhint: {e.hint}" if e.hint else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
    a.out.mkdir(parents=True, exist_ok=True)
    from mcutext.common.outputs import write_file
    write_file(a.out / f"robust_device_{res['recipe']}_{a.board}.json",
               json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0 if res["identical_scores"] == res["sentences"] else 1


if __name__ == "__main__":
    raise SystemExit(main())


# Boards the device check runs on, per recipe (the others are measured in TFLite Micro).
DEVICE_BOARDS = {"sst2": "microbit", "clinc150": "mps2-an386"}


def bench_robust(out: Path, recipes: list[str], reuse: bool = False, n: int = 500) -> list[dict]:
    """The `robust` section of `make bench`: per dataset, its `<name>_robust` recipe trained
    into OUT/bundles/, then int8 (TFLite Micro) clean accuracy, the char attack (the stronger of
    DeepWordBug and the adaptive attack) and the word attack at 2 words, certified accuracy at
    2 edits (and at the narrower threats no-injection, deletion, real-words and typos,
    `mcutext certify --threat`), on `n` test sentences; the device check where DEVICE_BOARDS
    names a board."""
    from mcutext.attack.run import run_attack
    from .tables import write_table
    from mcutext.int8.bundle import load_bundle
    from mcutext.attack.certify import certify
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    rows = []
    for name in recipes:
        rname = f"{name}_robust"
        path = out / "bundles" / rname
        if not (reuse and (path / "manifest.json").is_file()):
            train(load_recipe(rname), out=path, force=True)
        b = load_bundle(path)
        (out / "certify").mkdir(parents=True, exist_ok=True)
        cert = certify(b, edits=2, n=n, out=out / "certify" / f"{rname}-2.json", force=True)
        # what limits the certificate: the same at narrower threats (bounds from above)
        narrow = {t: certify(b, edits=2, n=n, threat=t, force=True,
                             out=out / "certify" / f"{rname}-2-{t}.json")["certified_accuracy"]
                  for t in ("no-injection", "deletion", "real-words", "typos")}
        char = run_attack(b, "char", n=n, budget=2, out=out / "attacks" / rname)
        word = run_attack(b, "word", n=n, budget=2, out=out / "attacks" / rname)
        row = {"recipe": rname, "clean": char["clean_accuracy"],
               "char": char["accuracy_under_attack"], "word": word["accuracy_under_attack"],
               "certified": cert["certified_accuracy"],
               "no_injection": narrow["no-injection"], "deletion": narrow["deletion"],
               "real_words": narrow["real-words"], "typos": narrow["typos"],
               "test_int8": b.manifest["metrics"]["test"]["tflm"]["accuracy"],
               "table_bytes": b.manifest["encoding"]["table_bytes"]}
        if name in DEVICE_BOARDS:
            dev = device_agreement(path, DEVICE_BOARDS[name])
            row["device"] = f"{dev['identical_scores']}/{dev['sentences']} on {dev['board']}"
        rows.append(row)
    write_table(out, "robust", rows,
                [("recipe", "recipe"), ("test_int8", "int8 test acc."), ("clean", "clean"),
                 ("char", "char (strongest)"), ("word", "word (pwws)"),
                 ("certified", "certified, 2 edits"),
                 ("no_injection", "certified, no-injection"),
                 ("deletion", "certified, deletion only"),
                 ("real_words", "certified, real words only"),
                 ("typos", "certified, internal typos only"),
                 ("table_bytes", "table bytes"),
                 ("device", "device = TFLite Micro")],
                "The robust encoding against the strongest attack (int8, TFLite Micro)",
                f"{n} test sentences, budget 2 words; docs/robustness.md explains each column.")
    return rows
