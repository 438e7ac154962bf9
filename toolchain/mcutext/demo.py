"""`make demo`: the whole pipeline on sst2, end to end.

train a small model -> int8 -> verified in TFLite Micro -> firmware -> boot in QEMU ->
classify a few test sentences over the emulated UART and compare with TFLite Micro.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .common import progress
from .common.errors import McutextError

SENTENCES = [
    "a gorgeous , witty , seductive movie .",
    "the story is lame and the acting is wooden .",
    "an absolute dellight from start to fnish",   # typos on purpose
    "i wanted to like it , but it 's simply not funny .",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mcutext.demo")
    ap.add_argument("--recipe", default="sst2")
    ap.add_argument("--board", default=os.environ.get("MCUTEXT_BOARD", "mps2-an386"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true",
                    help="Show the libraries' warnings and log lines.")
    args = ap.parse_args(argv)
    if not args.verbose:
        from .common import quiet
        quiet.setup()
    try:
        return run(args.recipe, args.board, args.out)
    except McutextError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2


def run(recipe_name: str, board: str, out: Path | None) -> int:
    from .int8.bundle import load_bundle
    from .model.recipe import load_recipe, project_root
    from .train.pipeline import train

    recipe = load_recipe(recipe_name)
    out = out or project_root() / "build" / "demo" / recipe.name / "bundle"
    progress.log(f"[bold]1/3 training[/] {recipe.name} -> {out}")
    # The demo trains the student with cross-entropy alone, in seconds: no teacher step (its
    # first run fine-tunes MiniLM for minutes) and no adversarial term (a minute more).
    # `mcutext train sst2` trains the full objective (docs/objective.md).
    import dataclasses
    recipe = dataclasses.replace(recipe, objective=dataclasses.replace(
        recipe.objective, kd_weight=0.0, map_weight=0.0, adv_weight=0.0))
    path = train(recipe, out=out, teacher=False)
    b = load_bundle(path)
    t = b.manifest["metrics"]["test"]
    print(f"test accuracy ({t['tflm']['n']} sentences): float {t['keras']['accuracy']:.4f}, "
          f"int8 in TFLite Micro {t['tflm']['accuracy']:.4f}, agreement "
          f"{t['int8_float_agreement']:.4f}; int8 weights "
          f"{b.manifest['sizes']['int8_weights_bytes']} bytes")
    progress.log("[bold]2/3 explaining[/] (attention weights of the int8 model, TFLite Micro)")
    for text in SENTENCES[:2]:
        label = b.predict([text], "tflm")[0]
        words = " ".join(f"{w}:{a:.2f}" for w, a in b.word_attributions(text, "tflm"))
        print(f"  {label:>8}  {words}")
    progress.log(f"[bold]3/3 firmware[/] for {board}, booted in QEMU, classifying over serial")
    return device_demo(path, board)


def device_demo(bundle_path: Path, board: str) -> int:
    import numpy as np

    from .int8.bundle import load_bundle
    from .device.client import Device
    from .firmware.build import build
    from .device.qemu import boot

    b = load_bundle(bundle_path)
    res = build(bundle_path, board)
    print(f"firmware: {res['elf']} (flash {res['flash_bytes']} / {res['flash_budget']} bytes, "
          f"RAM {res['ram_bytes']} / {res['ram_budget']} bytes)")
    ref = b.run_int8(b.tokenize(SENTENCES), "tflm")["logits"]
    with boot(res["elf"], board) as url, Device(url) as dev:
        print(f"QEMU ({board}) is serving the board's UART at {url}")
        info = dev.info()
        print(f"device: {info.get('model', '?')} on {info.get('board')} ({info.get('cpu')}, "
              f"{info.get('kernels')} kernels), labels {info.get('labels', '?')}")
        same = 0
        for text, want in zip(SENTENCES, ref):
            r = dev.classify(text)
            ok = np.array_equal(np.array(r["scores"], dtype=np.int8), want)
            same += ok
            cost = r.get(r.get("unit", "instructions"), {})
            print(f"  {r['label']:>8}  scores {' '.join(f'{v:4d}' for v in r['scores'])}  "
                  f"({cost.get('tokenizer')} + {cost.get('model')} {r.get('unit')})  "
                  f"{'= TFLite Micro' if ok else '!= TFLite Micro'}  {text}")
        stack = dev.stats()["stack"]
        print(f"  stack high-water mark {stack['used']} of {stack['budget']} bytes")
    print(f"{same}/{len(SENTENCES)} device outputs byte-identical to TFLite Micro "
          "(instructions counted by QEMU -icount, not cycles)")
    print(f"try it: mcutext run --board {board} {res['elf']}")
    return 0 if same == len(SENTENCES) else 1


if __name__ == "__main__":
    sys.exit(main())
