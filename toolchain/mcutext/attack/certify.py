"""Certified accuracy under character edits, decided exactly by enumeration.

A sentence is *certified at K edits* when it is classified correctly and no text the attacks'
char-edit family can make of it with at most K edited words is misclassified by the int8
model. The family (`perturb.edit_family`): per word, one adjacent swap, substitution (any
letter), deletion (words of 2+ characters) or insertion (any letter, any position); only
editable words (`Sentence.editable`) the model sees (its first `max_words` tokens).

The model sees a word only through its feature tuple (`Tokenizer.word_features` of the
tokenizer's word), and a sentence's id row is the words' tuples side by side. So for each
editable position the family's variants are grouped by the tuple they reach; every text
within the budget has one of the rows obtained by choosing at most K positions and one
reachable tuple at each. Those rows are built directly and run through the int8 model;
the first misclassified row ends the sentence with a *witness*: a text that realizes it,
re-encoded and re-classified by the TFLite Micro interpreter on its own. When a sentence has
more rows than `max_evals` it is reported "too many" and never counted as certified (the
rows with fewer edited words that fit under the cap are still searched for a witness).

The int8 model is the generated C (codegen) compiled for the host, the very code that runs
on the device, bit-exact with TFLite Micro (tests/test_codegen.py); the command cross-checks
it against the TFLite Micro interpreter on every clean row and on 8 rows spread over every
batch, and refuses to go on at the first difference. A bundle the code generator does not
handle (or a host without gcc) is evaluated in the TFLite Micro interpreter itself.

On `--runtime device` the certificate is computed on the host, then the board classifies
every clean text and every witness over serial; its int8 scores must equal TFLite Micro's
byte for byte (docs/robustness.md, "Certification").
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ..common.errors import McutextError
from ..common.outputs import write_file
from ..int8.bundle import Bundle, load_bundle
from ..text.perturb import Sentence
from ..text.tokenizer import Tokenizer
from .moves import (check_threat, combination_rows, count_combinations, row_choice,
                    sentence_moves)


MAX_EVALS = 200_000     # rows (combinations) per sentence before it is "too many"
CHECK_ROWS = 8          # rows of every batch cross-checked against TFLite Micro
STATUSES = ("certified", "attacked", "too_many", "wrong_clean")
FAMILY = ("per edited word one adjacent swap, substitution (any letter), deletion (words of "
          "2+ characters) or insertion (any letter, any position); editable words among the "
          "model's first max_words tokens")


# --- the exact int8 model -----------------------------------------------------------------
class Int8Model:
    """int8 logits of id rows with TFLite Micro semantics: the generated C compiled for the
    host (cross-checked against the TFLite Micro interpreter as it goes), or the interpreter
    itself (`engine="tflm"`, or when the bundle cannot be compiled here)."""

    def __init__(self, bundle: Bundle, engine: str = "auto"):
        if engine not in ("auto", "c", "tflm"):
            raise McutextError(f"unknown engine {engine!r} (use auto, c or tflm)")
        self.bundle = bundle
        self.rows = 0
        self.checked = 0
        self.host = None
        self.engine = "tflm"
        self.note = ""
        if engine != "tflm":
            try:
                self.host = self._build()
                self.engine = "c"
            except McutextError as e:
                if engine == "c":
                    raise
                self.note = f"generated C not used ({str(e).splitlines()[0]})"

    def _build(self):
        from ..firmware.hostbuild import build_model
        if self.bundle.manifest["int8"].get("input"):
            raise McutextError("the int8 model takes computed features, not token ids")
        with tempfile.TemporaryDirectory(prefix="mcutext-certify-") as d:
            return build_model(self.bundle.path, d)   # the loaded library outlives the folder

    def reference(self, ids: np.ndarray) -> np.ndarray:
        return self.bundle.run_int8(ids, "tflm")["logits"]

    def logits(self, ids: np.ndarray, check: int = CHECK_ROWS) -> np.ndarray:
        """int8[n, classes]; with the generated C, `check` rows spread over the batch (the
        first and the last included) are also run in the TFLite Micro interpreter and must
        agree byte for byte."""
        self.rows += len(ids)
        if self.host is None:
            return self.reference(ids)
        out = self.host.run(ids)["logits"]
        if check and len(ids):
            sel = np.unique(np.linspace(0, len(ids) - 1, min(check, len(ids))).astype(int))
            ref = self.reference(ids[sel])
            self.checked += len(ref)
            if not np.array_equal(out[sel], ref):
                raise McutextError(
                    "the generated C and the TFLite Micro interpreter disagree on the int8 "
                    "logits of a row; refusing to certify with it",
                    hint="rerun with --engine tflm, and report the bundle")
        return out


# --- one sentence -------------------------------------------------------------------------
def certify_sentence(model: Int8Model, tokenizer: Tokenizer, text: str, y: int, k: int,
                     max_evals: int = MAX_EVALS, clean: np.ndarray | None = None,
                     threat: str = "family", lexicon: frozenset[str] | None = None) -> dict:
    """The verdict for one sentence: status (STATUSES), combinations, evaluations and, when
    attacked, the witness {text, changes, logits}. When all combinations are more than
    `max_evals`, those with fewer edited words that fit are still searched for a witness
    (attacked), else the sentence is too_many. `threat` (moves.THREATS) narrows the moves
    ("real-words" with its `lexicon`)."""
    row, moves = sentence_moves(tokenizer, text, threat, lexicon)
    if clean is None:
        clean = model.logits(row[None], check=1)[0]
    sizes = [len(m) for m in moves]
    rec = {"positions": len(moves), "reachable": sizes}
    n_comb = count_combinations(sizes, k)
    rec.update(combinations=n_comb, evaluations=0)
    if int(np.argmax(clean)) != y:
        return {**rec, "status": "wrong_clean"}
    searched = k
    while searched and count_combinations(sizes, searched) > max_evals:
        searched -= 1
    F = tokenizer.spec.features_per_word
    for rows, segments in combination_rows(row, moves, searched, F):
        out = model.logits(rows)
        rec["evaluations"] += len(rows)
        bad = np.flatnonzero(out.argmax(axis=1) != y)
        if len(bad):
            r = int(bad[0])
            edits = {moves[p].index: moves[p].variants[t] for p, t in row_choice(segments, r)}
            rec["status"] = "attacked"
            rec["witness"] = _witness(model, tokenizer, text, edits, rows[r], out[r], y)
            return rec
    if searched < k:
        return {**rec, "status": "too_many", "searched_edits": searched,
                "reason": f"not certified (too many combinations: {n_comb})"}
    return {**rec, "status": "certified"}


def _witness(model: Int8Model, tokenizer: Tokenizer, text: str, edits: dict[int, str],
             row: np.ndarray, logits: np.ndarray, y: int) -> dict:
    """The text that realizes a misclassified row, checked on its own: its encoding is the
    row, and the TFLite Micro interpreter misclassifies it with the same int8 scores."""
    s = Sentence.parse(text)
    wtext = s.render(edits)
    if not np.array_equal(tokenizer.encode(wtext), row):
        raise McutextError(f"internal error: the witness {wtext!r} does not encode to the row "
                           "that was evaluated")
    ref = model.reference(tokenizer.encode(wtext)[None])[0]
    if not np.array_equal(ref, logits) or int(np.argmax(ref)) == y:
        raise McutextError(f"internal error: the witness {wtext!r} is not misclassified by "
                           "TFLite Micro with the scores the search saw")
    return {"text": wtext, "changes": [{"index": i, "from": s.tokens[i], "to": w}
                                       for i, w in sorted(edits.items())],
            "logits": [int(v) for v in ref]}


# --- a test split -------------------------------------------------------------------------
def certify(bundle, edits: int = 1, n: int | None = 500, split: str = "test",
            max_evals: int = MAX_EVALS, runtime: str = "tflm", port: str | None = None,
            engine: str = "auto", data=None, out: str | Path | None = None,
            force: bool = False, threat: str = "family") -> dict:
    """Certify `n` examples of `split` (the attacks' fixed sample, `attack.attack_examples`)
    at `edits` words. Returns the summary with "sentences" (one verdict each); `out` writes
    both as one JSON file (refused if it exists, unless `force`). `threat` other than
    "family" certifies against a subset of the family's moves (moves.THREATS), a diagnostic
    of what limits the certificate."""
    from .catalog import check_runtime
    from .run import attack_examples
    if isinstance(edits, bool) or not isinstance(edits, (int, np.integer)) or edits < 1:
        raise McutextError(f"bad number of edits {edits!r}: must be a whole number >= 1")
    if isinstance(max_evals, bool) or not isinstance(max_evals, (int, np.integer)) \
            or max_evals < 1:
        raise McutextError(f"bad --max-evals {max_evals!r}: must be a whole number >= 1")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise McutextError(f"bad number of examples {n!r}: must be a whole number >= 1")
    check_runtime(runtime)
    if runtime not in ("tflm", "device"):
        raise McutextError(f"certify runs on tflm or device, not {runtime!r}",
                           hint="the certificate is for the int8 model as TFLite Micro and "
                                "the firmware run it")
    if runtime == "device" and not port:
        raise McutextError("the device runtime needs --port URL (or MCUTEXT_PORT)",
                           hint="e.g. --port socket://127.0.0.1:4444 for a QEMU board "
                                "(`mcutext run --board BOARD BUNDLE` prints it)")
    if out is not None:
        out = Path(out)
        if out.exists() and not force:
            raise McutextError(f"{out} exists", hint="pass --force to replace it, or choose "
                                                     "another --out")
        if not out.parent.is_dir():
            raise McutextError(f"{out.parent}: no such folder")
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    check_threat(threat, bundle.tokenizer, str(bundle.path))
    idx, texts, ys, _ = attack_examples(bundle, n, split, data)
    words = None
    if threat == "real-words":   # the lexicon: the training split's words
        from ..text.datasets import load_split
        from .moves import lexicon
        words = lexicon(load_split(bundle.manifest["dataset"], "train").texts,
                        bundle.tokenizer)

    board = None
    if runtime == "device":   # opened (and checked to run this bundle) before the work
        from .classifiers import DeviceClassifier
        board = DeviceClassifier(bundle, port)
    try:
        return _certify(bundle, board, idx, texts, ys, edits, split, max_evals, runtime,
                        engine, out, threat, words)
    finally:
        if board is not None:
            board.close()


def _certify(bundle: Bundle, board, idx: list[int], texts: list[str], ys: np.ndarray,
             edits: int, split: str, max_evals: int, runtime: str, engine: str,
             out: Path | None, threat: str = "family",
             words: frozenset[str] | None = None) -> dict:
    from ..common import progress
    tok = bundle.tokenizer
    t0 = time.perf_counter()
    model = Int8Model(bundle, engine)
    clean_rows = tok.encode_batch(texts)
    clean = model.logits(clean_rows, check=len(clean_rows))   # every clean row cross-checked
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    records = []
    counts = dict.fromkeys(STATUSES, 0)
    with progress.task(f"certify at {edits} edit{'s' if edits > 1 else ''}",
                       total=len(texts)) as update:
        for k, (text, y) in enumerate(zip(texts, ys)):
            v = certify_sentence(model, tok, text, int(y), edits, max_evals, clean[k], threat,
                                 words)
            rec = {"index": idx[k], "text": text, "true": bundle.labels[y],
                   "pred_clean": bundle.labels[int(np.argmax(clean[k]))],
                   "logits_clean": [int(x) for x in clean[k]], **v}
            counts[rec["status"]] += 1
            records.append(rec)
            update(advance=1, status=f"certified {counts['certified']}/{k + 1}")
    seconds = time.perf_counter() - t0
    n_ex = len(records)
    correct = n_ex - counts["wrong_clean"]
    summary = {
        "bundle": str(bundle.path), "recipe": bundle.name, "split": split, "edits": edits,
        "family": FAMILY, "runtime": runtime, "n": n_ex,
        **({"threat": threat} if threat != "family" else {}),
        **({"lexicon_words": len(words)} if words is not None else {}),
        "clean_accuracy": correct / n_ex if n_ex else 0.0,
        "certified_accuracy": counts["certified"] / n_ex if n_ex else 0.0,
        "certified_of_correct": counts["certified"] / correct if correct else 0.0,
        **counts, "max_evals": max_evals,
        "evaluations": sum(r["evaluations"] for r in records),
        "engine": model.engine, "cross_checked_rows": model.checked,
        "seconds": round(seconds, 2), "load_seconds": round(load_seconds, 2),
    }
    if model.note:
        summary["engine_note"] = model.note
    if board is not None:
        summary["device"] = _check_device(board, records)
    if out is not None:
        write_file(out, json.dumps({**summary, "sentences": records}, indent=1,
                                   ensure_ascii=False) + "\n")
        summary["out"] = str(out)
    result = {**summary, "sentences": records}
    dev = summary.get("device")
    if dev and dev["identical"] != dev["texts"]:
        differ = dev["texts"] - dev["identical"]
        raise McutextError(
            f"the device's int8 scores differ from TFLite Micro's on {differ} "
            f"of {dev['texts']} texts: the certificate (computed for TFLite Micro) does not hold "
            "for this board" + (f"; verdicts written to {out}" if out else ""),
            hint="build and flash firmware from this very bundle")
    return result


def _check_device(board, records: list[dict]) -> dict:
    """The board classifies every clean text and every witness; its int8 scores must be the
    ones the certificate was computed with."""
    same = texts = 0
    for r in records:
        pairs = [(r["text"], r["logits_clean"])]
        if "witness" in r:
            pairs.append((r["witness"]["text"], r["witness"]["logits"]))
        for text, want in pairs:
            board.proba([text])
            got = [int(v) for v in board.last_int8[0]]
            ok = got == want
            same += ok
            texts += 1
            if not ok:
                r.setdefault("device_mismatch", []).append({"text": text, "device": got})
    return {"port": board.port, "texts": texts, "identical": same}


def certify_cli(bundle, as_json: bool = False, **kw) -> dict:
    """What `mcutext certify` runs: the certification, then the summary printed."""
    import click
    res = certify(bundle, **kw)
    s = {k: v for k, v in res.items() if k != "sentences"}
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return s
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    k = s["edits"]
    click.echo(f"certified at {k} edited word{'s' if k > 1 else ''} ({s['recipe']}, "
               f"{s['split']}, {s['n']} examples; int8 {s['engine']} engine)"
               + (f"; threat {s['threat']} only" if "threat" in s else ""))
    click.echo(f"  clean accuracy      {pct(s['clean_accuracy'])}")
    click.echo(f"  certified accuracy  {pct(s['certified_accuracy'])} "
               f"({s['certified']} of {s['n']}; {pct(s['certified_of_correct'])} of the "
               "correct ones)")
    click.echo(f"  attacked            {s['attacked']} (a misclassified edit found, witness "
               "kept)")
    click.echo(f"  too many            {s['too_many']} (over {s['max_evals']} combinations: "
               "not certified)")
    click.echo(f"  wrong when clean    {s['wrong_clean']}")
    click.echo(f"  evaluations         {s['evaluations']} rows "
               f"({s['cross_checked_rows']} cross-checked in TFLite Micro)")
    if "device" in s:
        d = s["device"]
        click.echo(f"  device              {d['identical']} of {d['texts']} texts with "
                   "TFLite Micro's int8 scores")
    click.echo(f"  time                {s['seconds']:.1f} s (+ {s['load_seconds']:.1f} s to "
               "load)")
    if "engine_note" in s:
        click.echo(f"  note: {s['engine_note']}")
    if "out" in s:
        click.echo(f"  verdicts: {s['out']}")
    return s
