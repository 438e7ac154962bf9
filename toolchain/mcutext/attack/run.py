"""Adversarial text attacks on a bundle, on any runtime (docs/robustness.md).

Six attacks, each with a stated perturbation budget (`word` is another name for pwws).
The budget `B` counts *edited words*: an integer B >= 1 allows at most B words of a
sentence to change; a number 0 < B < 1 allows at most floor(B x words) (and at least
one). Only the words the model sees (the tokenizer's first `max_words` tokens) that contain
a letter are edited.

deepwordbug  black box. Words ranked by leave-one-out importance (the drop of the true
             class's probability when the word is deleted). In that order, each word gets the
             best of up to 32 random character edits (8 each of: swap two adjacent
             characters, substitute, delete, insert a letter; any position); an edit is
             kept only if it lowers the true class's probability. Each edited word differs
             from the original by one character edit. Stops at the first label change.
adaptive     black box, knows the tokenizer: each word's one-edit family
             (perturb.edit_family: swap, substitute, delete, insert) grouped by the feature
             tuple each variant encodes to (certify.word_moves); the search is over distinct
             encodings, one variant standing for each (at most 32 per word, a seeded sample
             when more). When all combinations within the budget are at most 4,096 they are
             all tried, fewest words first (what `mcutext certify` enumerates); otherwise
             every single move is tried, then from the 4 best edit sets each other word's 8
             best moves are added, step by step up to the budget. Stops at a label change.
char         the char-level figure: deepwordbug, then adaptive on the sentences it does not
             flip, so per sentence the stronger of the two (records say `found_by`).
typo         black box, Pruthi et al.: the same greedy search, but each word's candidates are
             its one-internal-edit typos (swap of two adjacent internal characters, drop of
             an internal character, an added internal letter, an internal letter replaced by
             a QWERTY neighbour; first and last characters fixed; words of 3+ characters);
             at most 32 per word, a seeded sample when there are more.
pwws         black box, Ren et al.: WordNet synonyms. For each content word, the saliency
             (drop of the true-class probability when it is deleted) and the best synonym
             (largest drop when substituted, up to 30 synonyms); words are substituted in
             order of softmax(saliency) x best drop, until the label changes or the budget
             is spent.
hotflip      white box on the float Keras model, Ebrahimi et al. adapted to hashed features:
             the gradient of the loss with respect to the input embeddings (every hashed
             feature of every word) gives, for each word and candidate replacement (its
             character edits and WordNet synonyms), the first-order loss increase
             g . (E[candidate features] - E[current features]); the 8 best are evaluated
             exactly and the best kept; repeated up to the budget, stopping when the float
             label changes. The texts found are then replayed (transferred) on the target
             runtime, which is what success is judged on.

Runtimes are `Classifier`s (class probabilities for a batch of texts): keras, litert, tflm,
and device (a board over serial, one text per exchange). Every attack step builds all its
candidate texts first and classifies them in one call. An attack reports success only when
the final text, re-classified on its own, gets a label other than the true one; an example
the model already gets wrong is not attacked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..common.errors import McutextError
from ..int8.bundle import Bundle, load_bundle
from ..text import perturb
from ..text.perturb import Sentence
from .adaptive import attack_adaptive, attack_char
from .catalog import (ATTACK_INFO, HOST_RUNTIMES, budget_words, check_budget, check_runtime,
                      describe_budget, resolve_attack)
from .classifiers import Classifier, Oracle, make_classifier
from .search import Context, attack_deepwordbug, attack_pwws, attack_typo
from .whitebox import WhiteBox, attack_hotflip


ATTACK_FUNCS = {"char": attack_char, "deepwordbug": attack_deepwordbug,
                "adaptive": attack_adaptive, "typo": attack_typo, "pwws": attack_pwws,
                "hotflip": attack_hotflip}


# --- running an attack over a dataset -------------------------------------------------------
def _scores(labels: list[str], p: np.ndarray, y: int, top: int = 5) -> dict[str, float]:
    """Probabilities of the top classes and the true class (all classes when few)."""
    keep = range(len(labels)) if len(labels) <= 10 else sorted(
        set(np.argsort(-p)[:top].tolist()) | {y}, key=lambda k: -p[k])
    return {labels[k]: round(float(p[k]), 6) for k in keep}


# The examples attacked with `n` are a random sample drawn with this seed, whatever the
# attack's seed: every attack, runtime and seed then sees the same sentences, so their
# figures compare (some splits are sorted by label, so the first n would be one-sided).
SAMPLE_SEED = 0


def _sample(n_total: int, n: int | None, seed: int = SAMPLE_SEED) -> list[int]:
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())


def _transfer(bundle: Bundle, records: list[dict], source: str, port: str | None) -> dict:
    """The successful adversarial texts of `source`, replayed on the other runtimes."""
    wins = [r for r in records if r["status"] == "success"]
    targets = [t for t in HOST_RUNTIMES if t != source]
    if port and source != "device":
        targets.append("device")
    out = {}
    yidx = {lab: k for k, lab in enumerate(bundle.labels)}
    for t in targets:
        clf = make_classifier(bundle, t, port)
        try:
            y = np.array([yidx[r["true"]] for r in wins], dtype=int)
            clean = clf.proba([r["original"] for r in wins]).argmax(axis=1) if wins else y
            adv = clf.proba([r["perturbed"] for r in wins]).argmax(axis=1) if wins else y
        finally:
            clf.close()
        eligible = clean == y
        fooled = eligible & (adv != y)
        out[t] = {"examples": len(wins), "eligible": int(eligible.sum()),
                  "fooled": int(fooled.sum()),
                  "rate": float(fooled.sum() / eligible.sum()) if eligible.any() else None}
    return out


def _mean(xs) -> float | None:
    xs = list(xs)
    return float(np.mean(xs)) if xs else None


def attack_examples(bundle: Bundle, n: int | None, split: str = "test", data=None
                    ) -> tuple[list[int], list[str], np.ndarray, set[str]]:
    """The examples an attack (or the certification) works on: (indices into the split,
    texts, true class indices, labels left out). `n` of them, the fixed SAMPLE_SEED sample;
    labels the bundle was deliberately trained without are left out (as in evaluate)."""
    from ..text.datasets import load_split
    from ..int8.evaluate import check_labels
    if data is None:
        data = load_split(bundle.manifest["dataset"], split)
    ev = bundle.manifest.get("eval", {})
    dropped = set(ev.get("dropped_labels", ()))
    exclude = set(ev.get("exclude_labels", ()))
    pool = [k for k in range(len(data)) if data.labels[k] not in exclude | dropped]
    check_labels(data.subset(pool), bundle.labels)
    if not pool:
        raise McutextError(f"{data.source}: no examples to attack")
    idx = [pool[k] for k in _sample(len(pool), n)]
    texts = [data.texts[k] for k in idx]
    yidx = {lab: k for k, lab in enumerate(bundle.labels)}
    ys = np.array([yidx[data.labels[k]] for k in idx], dtype=int)
    return idx, texts, ys, exclude


def run_attack(bundle, attack: str, runtime: str = "tflm", n: int | None = None,
               budget: float = 2, seed: int = 0, port: str | None = None,
               out: str | Path | None = None, split: str = "test", data=None,
               transfer: bool = True, classifier: Classifier | None = None,
               journal: str | Path | None = None, resume: bool = False,
               log: str | Path | None = None) -> dict:
    """Attack `n` examples of `split` (a fixed random sample, SAMPLE_SEED; all when None)
    on `runtime`; `seed` drives the attack's own random choices.

    Returns the summary (DESIGN.md "What we measure"): clean accuracy, accuracy under
    attack, success rate, mean share of words changed, mean queries, transfer of the
    adversarial texts to the other runtimes. With `out`, writes every example to
    `<out>/<attack>-<runtime>.jsonl` and the summary to `<out>/<attack>-<runtime>.json`.
    `data` (a Dataset) replaces the split; `classifier` replaces the runtime's (tests).

    `journal` (a path): every finished example (and the clean pass, in chunks) is appended
    to it as it is done; when the run fails (a vanished port, a device that stops
    answering) the journal stays, and `resume=True` continues from it with the same
    arguments: the examples, records and figures are those of an uninterrupted run (only
    the timings differ). `log`: the serial session log of the device runtime (default with
    `out`: <out>/<attack>-device-serial.log)."""
    from ..common import progress

    attack = resolve_attack(attack)
    check_runtime(runtime)
    budget = check_budget(budget)
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise McutextError(f"bad number of examples {n!r}: must be a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise McutextError(f"bad seed {seed!r}: must be a whole number >= 0")
    if runtime == "device" and not port and classifier is None:
        raise McutextError("the device runtime needs --port URL (or MCUTEXT_PORT)",
                           hint="e.g. --port socket://127.0.0.1:4444 for a QEMU board "
                                "(`mcutext run --board BOARD BUNDLE` prints it)")
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    idx, texts, ys, exclude = attack_examples(bundle, n, split, data)
    if attack in ("pwws", "hotflip"):
        perturb.wordnet()  # load before timing (about 1 s)

    from ..common.journal import Journal, digest
    jr = Journal(journal) if journal is not None else None
    done: dict[int, dict] = {}
    clean_done: list[list[float]] = []
    if jr is not None:
        inputs = {"kind": "attack", "bundle": digest(bundle.manifest), "attack": attack,
                  "runtime": runtime, "budget": budget, "seed": seed, "split": split,
                  "examples": digest([idx, texts, ys.tolist()])}
        if resume:
            if not jr.exists():
                raise McutextError(f"nothing to resume: no journal at {jr.path}",
                                   hint="run without --resume to start the attack")
            jr.load()
            jr.check(inputs, hint="resume with the same bundle, attack, budget, seed and "
                                  "examples, or pass --restart to start over")
            for e in jr.entries:
                if "clean" in e:
                    clean_done += e["clean"]
                elif "record" in e:
                    done[e["k"]] = e
        elif jr.exists():
            raise McutextError(f"{jr.path}: an interrupted attack is kept there",
                               hint="pass --resume to continue it, or --restart to start over")
        else:
            jr.start(inputs)

    t_load = time.perf_counter()
    if log is None and out is not None and runtime == "device":
        Path(out).mkdir(parents=True, exist_ok=True)
        log = Path(out) / f"{attack}-device-serial.log"
        if not resume:
            log.unlink(missing_ok=True)
    try:
        clf = classifier or make_classifier(bundle, runtime, port, log=log)
    except McutextError as e:
        raise _kept(e, jr, len(done), len(texts)) from None
    records: list[dict] = []
    try:
        white_box = WhiteBox(bundle) if attack == "hotflip" else None
        clf.proba(texts[:1])  # load the runtime before timing
        load_seconds = time.perf_counter() - t_load
        calls0, rows0 = clf.calls, clf.rows
        t0 = time.perf_counter()
        if jr is None:
            p_clean = clf.proba(texts)
        else:  # in journaled chunks
            for a in range(len(clean_done), len(texts), JOURNAL_CHUNK):
                chunk = clf.proba(texts[a:a + JOURNAL_CHUNK]).tolist()
                jr.append({"clean": chunk})
                clean_done += chunk
            p_clean = np.array(clean_done, dtype=np.float64)
            # the clean pass counts whole, as in an uninterrupted run
            calls0 = clf.calls + (len(texts) // -JOURNAL_CHUNK)
            rows0 = clf.rows - len(texts)
        fn = ATTACK_FUNCS[attack]
        visible = bundle.tokenizer.spec.max_words
        n_success = 0
        with progress.task(f"{attack} on {runtime}", total=len(texts)) as update:
            for k, (text, y) in enumerate(zip(texts, ys)):
                if k in done:   # journaled by the interrupted run
                    records.append(done[k]["record"])
                    n_success += done[k]["record"]["status"] == "success"
                    calls0 -= done[k]["calls"]
                    rows0 -= done[k]["rows"]
                    update(advance=1)
                    continue
                c_k, r_k = clf.calls, clf.rows
                pred0 = int(p_clean[k].argmax())
                rec = {"index": idx[k], "true": bundle.labels[y],
                       "pred_clean": bundle.labels[pred0], "original": text,
                       "scores_clean": _scores(bundle.labels, p_clean[k], y)}
                if pred0 != y:
                    rec.update(status="skipped", perturbed=text, pred=rec["pred_clean"],
                               queries=1, words_changed=0)
                    records.append(rec)
                    if jr is not None:
                        jr.append({"k": k, "record": rec, "calls": 0, "rows": 0})
                    update(advance=1)
                    continue
                s = Sentence.parse(text)
                n_words = s.num_words()
                oracle = Oracle(clf)
                ctx = Context(s, int(y), p_clean[k], oracle,
                              np.random.default_rng([seed, idx[k]]),
                              budget_words(budget, n_words), visible, bundle, white_box)
                found = fn(ctx)
                perturbed = s.render(found.edits)
                # the verdict: the final text classified on its own, never from a cache
                p_adv = clf.proba([perturbed])[0]
                adv_int8 = getattr(clf, "last_int8", None)
                pred = int(p_adv.argmax())
                ok = pred != y
                n_success += ok
                changes = [{"index": i, "from": s.tokens[i], "to": w}
                           for i, w in sorted(found.edits.items())]
                queries = 1 + oracle.queries + found.extra.get("white_box_queries", 0)
                rec.update(
                    status="success" if ok else "failed", perturbed=perturbed,
                    pred=bundle.labels[pred], scores=_scores(bundle.labels, p_adv, y),
                    queries=queries, words=n_words, words_changed=len(changes),
                    share_changed=len(changes) / max(n_words, 1), changes=changes)
                if adv_int8 is not None:
                    rec["scores_int8"] = [int(v) for v in adv_int8[0]]
                if found.extra.get("found_by"):
                    rec["found_by"] = found.extra["found_by"]
                if attack == "hotflip":
                    rec["float_flipped"] = found.search_success
                elif found.search_success and not ok:
                    rec["unverified"] = True  # the search saw a flip the re-check did not
                records.append(rec)
                if jr is not None:
                    jr.append({"k": k, "record": rec, "calls": clf.calls - c_k,
                               "rows": clf.rows - r_k})
                update(advance=1, status=f"fooled {n_success}/{k + 1}")
        seconds = time.perf_counter() - t0
        calls, rows = clf.calls - calls0, clf.rows - rows0
    except McutextError as e:
        raise _kept(e, jr, len(records), len(texts)) from None
    finally:
        if classifier is None:
            clf.close()
        if jr is not None:
            jr.close()

    attacked = [r for r in records if r["status"] != "skipped"]
    wins = [r for r in attacked if r["status"] == "success"]
    n_ex = len(records)
    summary = {
        "bundle": str(bundle.path), "recipe": bundle.name, "attack": attack,
        "attack_definition": ATTACK_INFO[attack], "runtime": runtime, "split": split,
        "seed": seed, "budget": budget, "budget_rule": describe_budget(budget),
        "n": n_ex, "clean_correct": len(attacked),
        "clean_accuracy": len(attacked) / n_ex if n_ex else 0.0,
        "attacked": len(attacked), "successes": len(wins),
        "success_rate": len(wins) / len(attacked) if attacked else 0.0,
        "accuracy_under_attack": (len(attacked) - len(wins)) / n_ex if n_ex else 0.0,
        "mean_words_changed": _mean(r["words_changed"] for r in wins),
        "mean_share_words_changed": _mean(r["share_changed"] for r in wins),
        "mean_queries": _mean(r["queries"] for r in attacked),
        "mean_queries_success": _mean(r["queries"] for r in wins),
        "unverified": sum(1 for r in attacked if r.get("unverified")),
        "runtime_calls": calls, "runtime_rows": rows,
        "seconds": round(seconds, 2), "load_seconds": round(load_seconds, 2),
        "seconds_per_example": round(seconds / n_ex, 4) if n_ex else 0.0,
    }
    if excluded := sorted(exclude):
        summary["excluded_labels"] = excluded
    if attack == "hotflip":
        flips = [r for r in attacked if r.get("float_flipped")]
        summary["float_success_rate"] = len(flips) / len(attacked) if attacked else 0.0
        summary["float_flips_transferred"] = (
            sum(1 for r in flips if r["status"] == "success") / len(flips) if flips else None)
    if transfer:
        summary["transfer"] = _transfer(bundle, records, runtime, port)
    if out is not None:
        from ..common.outputs import write_file  # each file complete or absent
        out = Path(out)
        stem = f"{attack}-{runtime}"
        rec_path = out / f"{stem}.jsonl"
        write_file(rec_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        summary["records"] = str(rec_path)
        write_file(out / f"{stem}.json", json.dumps(summary, indent=2) + "\n")
    summary["examples"] = records
    if jr is not None:
        jr.finish()
    return summary


# Texts per journaled chunk of the clean pass (a journaled run classifies them in chunks).
JOURNAL_CHUNK = 32


def _kept(e: McutextError, jr, done: int, total: int) -> McutextError:
    """The error, plus where the work done so far is kept (when there is a journal)."""
    if jr is None or not jr.exists():
        return e
    if not jr.entries:    # nothing done yet: no journal to resume from
        jr.finish()
        return e
    return McutextError(f"{e}; the work done is kept in {jr.path} ({done} of {total} "
                        "examples)", hint=(e.hint + "; then " if e.hint else "")
                        + "run the same command with --resume to continue")


def attack_cli(bundle, attack: str, runtime: str = "tflm", port: str | None = None,
               budget: float = 2, n: int | None = None, seed: int = 0, as_json: bool = False,
               out: str | Path | None = None, split: str = "test", **journal) -> dict:
    """What `mcutext attack` runs: the attack, then the summary printed (or as JSON).
    `journal`: run_attack's journal, resume and log."""
    import click
    res = run_attack(bundle, attack, runtime=runtime, n=n, budget=budget, seed=seed,
                     port=port, out=out, split=split, **journal)
    attack = res["attack"]
    summary = {k: v for k, v in res.items() if k != "examples"}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return summary
    s = summary
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    click.echo(f"{attack} on {runtime} ({s['recipe']}, {split}, {s['n']} examples, seed "
               f"{seed}; {s['budget_rule']})")
    click.echo(f"  clean accuracy         {pct(s['clean_accuracy'])}")
    click.echo(f"  accuracy under attack  {pct(s['accuracy_under_attack'])}")
    click.echo(f"  attack success rate    {pct(s['success_rate'])} "
               f"({s['successes']} of {s['attacked']} attacked)")
    click.echo(f"  words changed          {num(s['mean_words_changed'])} on average "
               f"({pct(s['mean_share_words_changed'])} of the words), successful attacks")
    click.echo(f"  queries                {num(s['mean_queries'])} per attacked example")
    if attack == "hotflip":
        click.echo(f"  float model fooled     {pct(s['float_success_rate'])} (white-box search)")
    for t, tr in s.get("transfer", {}).items():
        click.echo(f"  transfer to {t:<10} {pct(tr['rate'])} of {tr['eligible']} "
                   f"adversarial texts that {t} classified correctly before")
    click.echo(f"  time                   {s['seconds']:.1f} s "
               f"({s['runtime_rows']} texts classified in {s['runtime_calls']} calls; "
               f"runtime loaded in {s['load_seconds']:.1f} s)")
    if s.get("unverified"):
        click.echo(f"  warning: {s['unverified']} search successes did not hold on re-check")
    if "records" in s:
        click.echo(f"  examples: {s['records']}")
    return summary
