"""Encoder benchmark: what the robust word encoding (tokenizer spec version 2) costs on the
device, next to the hashed encoding, per board.

A robust table is built from a dataset's training vocabulary with a stand-in for the real
table builder: one code per word for the `words` most frequent words, every word of 3 bytes or
more taking its one-deletion typos (the most keys a table of that many words holds, so the
largest flash). A small model is trained on it (2,000 sentences, 1 epoch: the model is not
what is measured), built for each board and booted in QEMU: instructions of the tokenizer
(-icount: instructions, not cycles) for a 32-word test sentence, for the same sentence with
every fourth word given a one-character typo (words that miss the table look up each of their
deletions), and the mean over test sentences; flash of the table and of the encoder's code.
The hashed encoding is measured the same way on the recipe's own tokenizer.

    python -m bench.encoder [--words 8000 --words 1200] [--board microbit ...]
                                    [--out build/bench/encoder]

Results: OUT/encoder.json and encoder.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from mcutext.common import progress
from mcutext.common.errors import McutextError

BOARDS = ("mps2-an386", "netduinoplus2", "microbit")
TRAIN_SENTENCES = 2000
TEST_SENTENCES = 50


def frequency_table(texts: list[str], words: int, max_word_bytes: int, seed: int):
    """A RobustTable of the `words` most frequent words of `texts` (code 2 the most frequent,
    ties by bytes), the words of 3 bytes or more taking their typos."""
    from mcutext.text.tokenizer import RobustTable, split_words
    counts = collections.Counter(w for t in texts
                                 for w in split_words(t.encode("utf-8"), max_word_bytes))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:words]
    return RobustTable.build(len(ranked) + 2, {w: 2 + i for i, w in enumerate(ranked)},
                             [w for w in ranked if len(w) >= 3], seed)


def robust_recipe(recipe, table, name: str):
    """The recipe with a robust tokenizer on `table` (registered, so the recipe finds it)."""
    from mcutext.text.tokenizer import ROBUST_SPEC_VERSION, register_table
    spec = dataclasses.replace(recipe.tokenizer, encoding="robust",
                               version=ROBUST_SPEC_VERSION, typo_features=False,
                               buckets=table.codes, table=register_table(table))
    return dataclasses.replace(recipe, name=name, tokenizer=spec)


def typo_sentence(text: str, every: int = 4) -> str:
    """Every `every`-th word (from the first) with one character substituted."""
    from mcutext.text.perturb import Sentence, substitute_char
    s = Sentence.parse(text)
    edits = {i: substitute_char(s.tokens[i], len(s.tokens[i]) // 2, "q")
             for k, i in enumerate(s.word_indices()) if k % every == 0}
    return s.render(edits)


def _encoder_code_bytes(obj_dir: Path) -> int:
    """.text of the tokenizer's object file (both encodings' code)."""
    from mcutext.firmware.build import _toolchain
    import subprocess
    size = Path(_toolchain()).with_name("arm-none-eabi-size")
    objs = sorted(obj_dir.glob("*_tokenizer.o"))
    if not objs:
        return 0
    out = subprocess.run([str(size), str(objs[0])], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[1].split()[0])


def measure(bundle_path: Path, board: str, out: Path, sentence: str, texts: list[str]) -> dict:
    from mcutext.int8.bundle import load_bundle
    from mcutext.device.client import Device
    from mcutext.firmware.build import build
    from mcutext.device.qemu import boot
    b = load_bundle(bundle_path)
    row = {"bundle": b.name, "board": board, "encoding": b.tokenizer.spec.encoding,
           "keys": len(b.encoding_table.keys) if b.encoding_table is not None else 0}
    try:
        rep = build(bundle_path, board, out)
    except McutextError as e:
        if "does not fit" not in str(e):
            raise
        row["status"] = str(e).split(": ", 1)[-1]
        return row
    row.update(status="ok", flash=rep["flash_bytes"], flash_budget=rep["flash_budget"],
               weights=rep["weights_bytes"], encoding_bytes=rep["encoding_bytes"],
               encoder_code=_encoder_code_bytes(Path(rep["elf"]).parent / "obj"),
               stack_worst_case=rep["stack_worst_case"])
    typos = typo_sentence(sentence)
    with boot(rep["elf"], board) as url, Device(url, timeout=60) as dev:
        def tok(text: str) -> int:  # the median of 3 (-icount: +-1 and a rare timer tick)
            return sorted(dev.classify(text)["instructions"]["tokenizer"] for _ in range(3))[1]
        row["words"] = dev.classify(sentence)["words"]
        row["sentence_instr"] = tok(sentence)
        row["typo_sentence_instr"] = tok(typos)
        row["mean_instr"] = round(float(np.mean(
            [dev.classify(t)["instructions"]["tokenizer"] for t in texts])))
    return row


COLUMNS = [("bundle", "bundle"), ("board", "board"), ("encoding", "encoding"),
           ("keys", "keys"), ("encoding_bytes", "table flash (B)"),
           ("encoder_code", "tokenizer code (B)"), ("flash", "flash (B)"),
           ("flash_budget", "of"), ("sentence_instr", "32 words (instr.)"),
           ("typo_sentence_instr", "8 of them typos"), ("mean_instr", "test mean"),
           ("status", "status")]


def markdown(rows: list[dict], sentence: str) -> str:
    def cell(v):
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else \
            "" if v is None else str(v)
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join("---" if k in ("bundle", "board", "encoding", "status") else "---:"
                            for k, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    lines += ["", f"Tokenizer instructions per classification (QEMU -icount, not cycles) of "
              f"the 32-word sst2 test sentence \"{sentence}\", of the same sentence with every "
              f"fourth word misspelt, and the mean over {TEST_SENTENCES} test sentences."]
    return "\n".join(lines) + "\n"


def bench_encoder(out_dir: Path, words: list[int], boards: list[str], dataset: str = "sst2"
                  ) -> dict:
    from mcutext.text.datasets import long_sentence
    from mcutext.text.datasets import load_split
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    t0 = time.monotonic()
    recipe = load_recipe(dataset)
    recipe = dataclasses.replace(recipe, objective=dataclasses.replace(
        recipe.objective, kd_weight=0.0, map_weight=0.0, adv_weight=0.0))
    train_texts = load_split(dataset, "train").texts
    test = load_split(dataset, "test").texts
    bundles = {"hash": train(recipe, out=out_dir / "bundles" / "hash",
                             limit=TRAIN_SENTENCES, epochs=1, test_limit=100)}
    for n in words:
        table = frequency_table(train_texts, n, recipe.tokenizer.max_word_bytes,
                                recipe.tokenizer.seed)
        r = robust_recipe(recipe, table, f"{dataset}_robust{n}")
        bundles[f"robust{n}"] = train(r, out=out_dir / "bundles" / f"robust{n}",
                                      limit=TRAIN_SENTENCES, epochs=1, test_limit=100)
    from mcutext.int8.bundle import load_bundle
    sentence = long_sentence(test, load_bundle(bundles["hash"]).tokenizer)
    rows = []
    configs = [(k, p, b) for k, p in bundles.items() for b in boards]
    for key, path, board in progress.track(configs, len(configs), "encoder bench"):
        rows.append(measure(path, board, out_dir / "firmware" / key / board, sentence,
                            test[:TEST_SENTENCES]))
    result = {"rows": rows, "sentence": sentence, "counter": "instructions (QEMU -icount)",
              "seconds": round(time.monotonic() - t0, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "encoder.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "encoder.md").write_text("# Encoder benchmark\n\n" + markdown(rows, sentence))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.encoder")
    ap.add_argument("--out", type=Path, default=Path("build/bench/encoder"))
    ap.add_argument("--words", type=int, action="append", default=None,
                    help="words of a robust table (repeatable; default 8000 and 1200)")
    ap.add_argument("--board", action="append", default=None)
    args = ap.parse_args(argv)
    try:
        bench_encoder(args.out, args.words or [8000, 1200], args.board or list(BOARDS))
    except McutextError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print((args.out / "encoder.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
