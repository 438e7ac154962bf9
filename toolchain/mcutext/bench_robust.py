"""`python -m mcutext.bench_robust`: the robust encoding on the device (docs/robustness.md).

For a robust bundle and an emulated board: build the firmware, boot it in QEMU and classify
every test sentence over serial; the device's words and int8 scores must equal TFLite
Micro's on the ids the Python encoder gives (the specification), sentence by sentence. A
disagreement is a failure, not a statistic. Writes build/bench/robust_device_<recipe>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import progress


def device_agreement(bundle_path: Path, board: str, limit: int | None = None) -> dict:
    from .bundle import load_bundle
    from .data import load_split
    from .device import Device
    from .firmware import build
    from .qemu import boot
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
    res = device_agreement(a.bundle, a.board, a.limit)
    a.out.mkdir(parents=True, exist_ok=True)
    from .outputs import write_file
    write_file(a.out / f"robust_device_{res['recipe']}_{a.board}.json",
               json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0 if res["identical_scores"] == res["sentences"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
