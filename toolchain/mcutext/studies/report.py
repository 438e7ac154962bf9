"""`mcutext report`: one self-contained HTML page per bundle (docs/report.md).

The page is built from what the bundle and earlier runs already know (the manifest's
provenance; firmware folders whose build stamp matches are reused, as `mcutext run` does) and
computes the rest with the same library functions as the commands whose figures it shows:

    accuracy        evaluate.evaluate (= `mcutext evaluate --json`, runtime tflm), plus the
                    confusion matrix and the most-confused pairs from the same predictions
    explanations    explain.explain (int8, TFLite Micro) on a seeded sample, wrong ones first
    boards          firmware.build (= `mcutext build --json`): flash and RAM against the
                    budget; the classification-only build for the RAM personalization needs;
                    under QEMU the instructions per classification (and per operator, from
                    the `--profile` build) and the stack's measured peak
    robustness      attack.run_attack (= `mcutext attack --json`) per budget, and
                    certify.certify (= `mcutext certify --json`) for the char-edit attacks

Everything the page shows is also in its data block (`<script type="application/json"
id="mcutext-report-data">`), the same numbers, so that a script (or a test) can read them.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import time
from pathlib import Path

import numpy as np

from ..common.version import __version__
from ..common.errors import McutextError

REPORT_FORMAT = 1
GENERATOR = "mcutext report"
# The attacks whose threat model is the certificate's: one character edit per word.
CHAR_FAMILY = ("char", "deepwordbug", "adaptive", "typo")
MOST_CONFUSED = 20     # pairs listed beside the confusion matrix
ATTACK_EXAMPLES = 8    # adversarial examples shown
DEVICE_RUNS = 3        # classifications of the measured sentence (the median is shown)
# Build report keys the page keeps (the call graph and the generated file list stay out).
BUILD_KEYS = ("board", "cpu", "kernels", "ops", "elf", "flash_bytes", "flash_budget",
              "ram_bytes", "ram_budget", "stack_reserve", "stack_worst_case", "arena_bytes",
              "weights_bytes", "encoding_bytes", "macs", "runtime_flash_bytes",
              "personalization_flash_bytes", "personalize", "flash_breakdown",
              "qemu_machine", "icount_shift")


@dataclasses.dataclass
class Options:
    boards: tuple[str, ...] = ()
    attack: str | None = None
    split: str = "test"
    limit: int | None = None          # evaluation: the first N examples of the split
    examples: int = 12                # explained test sentences
    attack_limit: int = 100           # attacked examples (the attacks' fixed sample)
    budgets: tuple = (1, 2, 3)
    certify: int = 1                  # certified accuracy at 1..K edits (0: none)
    seed: int = 0


def default_out(bundle_path: str | Path) -> Path:
    """Beside the bundle, as the firmware folders: build/sst2/bundle -> build/sst2/report.html;
    another folder name -> <parent>/<name>-report.html."""
    p = Path(bundle_path).absolute()
    return p.parent / ("report.html" if p.name == "bundle" else f"{p.name}-report.html")


def check_options(opts: Options) -> Options:
    """Refuses bad options (an unknown board or attack, a bad budget) before any work."""
    from ..attack.catalog import check_budget, resolve_attack
    from ..firmware.boards import get_board
    boards = tuple(dict.fromkeys(get_board(b).name for b in opts.boards))
    attack = resolve_attack(opts.attack) if opts.attack else None
    budgets = tuple(sorted(set(check_budget(b) for b in opts.budgets)))
    if attack and not budgets:
        raise McutextError("no attack budget given", hint="e.g. --budgets 1,2,3")
    if opts.examples < 0 or opts.attack_limit < 1 or opts.certify < 0:
        raise McutextError("--examples, --attack-limit and --certify must be >= 0 (>= 1 for "
                           "--attack-limit)")
    return dataclasses.replace(opts, boards=boards, attack=attack, budgets=budgets)


# --- accuracy ---------------------------------------------------------------------------------
def confusion(labels: list[str], gold: list[str], pred: list[int]) -> np.ndarray:
    """Counts[true class, predicted class] in the bundle's label order."""
    idx = {lab: k for k, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, pred):
        m[idx[g], p] += 1
    return m


def most_confused(labels: list[str], matrix: np.ndarray, k: int = MOST_CONFUSED) -> list[dict]:
    """The k largest off-diagonal cells: true label, predicted label, count, and the share of
    the true label's examples that went there (ties: label order)."""
    m = np.array(matrix, dtype=np.int64)
    support = m.sum(axis=1)
    off = m.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    out = []
    for f in flat:
        i, j = divmod(int(f), m.shape[1])
        if off[i, j] == 0:
            break
        out.append({"true": labels[i], "pred": labels[j], "count": int(off[i, j]),
                    "share": float(off[i, j] / support[i]) if support[i] else 0.0})
    return out


def collect_accuracy(bundle, opts: Options) -> tuple[dict, dict]:
    """(the section's data, the per-example predictions for the sample)."""
    from ..int8.evaluate import evaluate
    rep = evaluate(bundle, opts.split, "tflm", limit=opts.limit, details=True)
    ex = rep.pop("examples")
    m = confusion(bundle.labels, ex["gold"], ex["pred"])
    rep["confusion"] = {"labels": list(bundle.labels), "matrix": m.tolist()}
    rep["most_confused"] = most_confused(bundle.labels, m)
    return rep, ex


# --- explanations -----------------------------------------------------------------------------
def sample_indices(correct: list[bool], k: int, seed: int = 0) -> list[int]:
    """k examples, wrong ones first: up to half wrong (more when too few are right), each part
    a seeded random draw in the split's order."""
    wrong = [i for i, c in enumerate(correct) if not c]
    right = [i for i, c in enumerate(correct) if c]
    n_wrong = min(len(wrong), (k + 1) // 2)
    n_right = min(len(right), k - n_wrong)
    n_wrong = min(len(wrong), k - n_right)
    rng = np.random.default_rng(seed)

    def pick(pool: list[int], n: int) -> list[int]:
        return sorted(rng.choice(pool, size=n, replace=False).tolist()) if n else []
    return pick(wrong, n_wrong) + pick(right, n_right)


def collect_explanations(bundle, ex: dict, opts: Options) -> dict:
    from ..explain.attribution import explain
    idx = {lab: k for k, lab in enumerate(bundle.labels)}
    correct = [idx[g] == p for g, p in zip(ex["gold"], ex["pred"])]
    sel = sample_indices(correct, opts.examples, opts.seed)
    if not sel:
        return {"runtime": "tflm", "sentences": []}
    try:
        exps = explain(bundle, [ex["texts"][i] for i in sel], "tflm")
    except McutextError as e:   # a baseline bundle: no attention to show
        return {"runtime": "tflm", "sentences": [], "note": str(e)}
    rows = []
    for i, e in zip(sel, exps):
        share = e.share
        rows.append({
            "index": i, "text": e.text, "true": ex["gold"][i], "pred": e.label,
            "correct": e.label == ex["gold"][i],
            "probability": round(float(e.probabilities[e.label_index]), 6),
            "words": [{"word": w, "share": round(float(s), 6),
                       "attention_int8": None if e.attention_int8 is None
                       else int(e.attention_int8[k])}
                      for k, (w, s) in enumerate(zip(e.words, share))]})
    return {"runtime": "tflm", "sentences": rows,
            "wrong": sum(1 for r in rows if not r["correct"])}


# --- boards -----------------------------------------------------------------------------------
def _ram_diff(full_map: str, lean_map: str, n: int = 4) -> list[dict]:
    """The variables the personalizable build has (or has larger) than the lean one."""
    from ..firmware.build import ram_variables
    full, lean = ram_variables(Path(full_map)), ram_variables(Path(lean_map))
    diff = {var: size - lean.get((g, var), 0) for (g, var), size in full.items()
            if size > lean.get((g, var), 0) and g != "model"}
    top = sorted(diff.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{"variable": v, "bytes": b} for v, b in top]


def memory_split(rep: dict, lean: dict | None) -> dict:
    """Flash and RAM of one build by part; each list adds up to the build's flash / RAM."""
    weights = int(rep.get("weights_bytes") or 0)
    enc = int(rep.get("encoding_bytes") or 0)
    runtime = int(rep["runtime_flash_bytes"])
    pers_flash = int(rep.get("personalization_flash_bytes") or 0)
    text = rep["flash_bytes"] - weights - enc - runtime - pers_flash
    flash = [("weights", weights), ("encoding table", enc), ("runtime", runtime),
             ("protocol text", text), ("personalization", pers_flash)]
    arena = int(rep.get("arena_bytes") or 0)
    pers_ram = rep["ram_bytes"] - lean["ram_bytes"] if lean else 0
    reserve = int(rep["stack_reserve"])
    bound = rep.get("stack_worst_case")
    other = rep["ram_bytes"] - reserve - arena - pers_ram
    ram = [("activation arena", arena), ("personalization (head)", pers_ram),
           ("other static", other)]
    if bound is not None:
        ram += [("stack bound", int(bound)), ("stack reserve beyond the bound",
                                                reserve - int(bound))]
    else:
        ram += [("stack reserve", reserve)]
    keep = lambda parts: [{"part": k, "bytes": int(v)} for k, v in parts if v]  # noqa: E731
    return {"flash": keep(flash), "ram": keep(ram)}


def measure_on_qemu(rep: dict, prof: dict | None, board, sentence: str) -> dict:
    """Instructions per classification of `sentence` (median of DEVICE_RUNS), the stack's
    peak after them, and the per-operator counts of the profiling build."""
    from ..device.client import Device
    from ..device.qemu import boot
    with boot(rep["elf"], board) as url, Device(url, timeout=60) as dev:
        runs = [dev.classify(sentence) for _ in range(DEVICE_RUNS)]
        stats = dev.stats()
    unit = runs[0].get("unit", "instructions")
    med = {k: sorted(r[unit][k] for r in runs)[len(runs) // 2] for k in ("tokenizer", "model")}
    out = {"sentence": sentence, "words": runs[0].get("words"), "unit": unit,
           "runs": len(runs),
           "tokenizer": med["tokenizer"], "model": med["model"],
           "total": med["tokenizer"] + med["model"], "label": runs[0]["label"],
           "stack_peak": stats.get("stack", {}).get("used")}
    if prof is not None:
        with boot(prof["elf"], board) as url, Device(url, timeout=60) as dev:
            ops = dev.classify(sentence).get("ops", [])
        out["ops"] = [{"op": name, unit: n} for name, n in zip(prof["ops"] or [], ops)]
    return out


def collect_board(bundle_path: Path, bundle, board_name: str, sentence: str) -> dict:
    """One board: the firmware `mcutext build` makes (reused when up to date), the
    classification-only build beside it (what personalization costs in RAM; the page shows
    that one when only it fits), and under QEMU the instructions of a classification."""
    from ..firmware.boards import get_board
    from ..firmware.build import DoesNotFit, build, default_out_dir
    from ..device.qemu import available
    board = get_board(board_name)
    row: dict = {"board": board.name, "cpu": board.cpu, "qemu_machine": board.qemu_machine}
    out = default_out_dir(bundle_path, board.name)
    lean_out = out.with_name(out.name + "-no-personalize")
    personalize, lean = True, None
    try:
        rep = build(bundle_path, board, reuse=True)
    except DoesNotFit as e:
        try:
            rep = build(bundle_path, board, lean_out, personalize=False, reuse=True)
        except DoesNotFit:
            return {**row, "error": str(e), "hint": e.hint}
        personalize = False
        row["personalized_does_not_fit"] = str(e)
    row["build"] = {k: rep.get(k) for k in BUILD_KEYS}
    if rep.get("personalize"):
        lean = build(bundle_path, board, lean_out, personalize=False, reuse=True)
        row["classification_only"] = {"flash_bytes": lean["flash_bytes"],
                                      "ram_bytes": lean["ram_bytes"],
                                      "runtime_flash_bytes": lean["runtime_flash_bytes"]}
        row["personalization_ram"] = _ram_diff(rep["map"], lean["map"])
    row["memory"] = memory_split(rep, lean)
    if not board.qemu_machine:
        row["device_note"] = (f"{board.name} runs on hardware only: instructions are not "
                              "measured here (`mcutext classify --port` on the board prints "
                              "its cycles)")
    elif not available():
        row["device_note"] = "qemu-system-arm is not installed (`make setup`)"
    else:
        prof_out = default_out_dir(bundle_path, board.name, profile=True)
        if not personalize:
            prof_out = prof_out.with_name(prof_out.name + "-no-personalize")
        prof = build(bundle_path, board, prof_out, profile=True, personalize=personalize,
                     reuse=True)
        row["device"] = measure_on_qemu(rep, prof, board, sentence)
    return row


# --- robustness -------------------------------------------------------------------------------
def char_segments(old: str, new: str) -> list[list[str]]:
    """`new` as [kind, text] pieces against `old`: "same", "ins" (characters added or
    substituted) and "del" (characters removed), for marking the edited characters."""
    out: list[list[str]] = []
    for tag, a, b, c, d in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            out.append(["same", new[c:d]])
        else:
            if b > a:
                out.append(["del", old[a:b]])
            if d > c:
                out.append(["ins", new[c:d]])
    return out


def adversarial_examples(records: list[dict], k: int = ATTACK_EXAMPLES) -> list[dict]:
    """Up to k successful attacks (in sample order), then failed ones, with each edited word's
    characters marked."""
    from ..text.perturb import Sentence
    wins = [r for r in records if r["status"] == "success"]
    failed = [r for r in records if r["status"] == "failed"]
    out = []
    for r in (wins + failed)[:k]:
        s = Sentence.parse(r["original"])
        changes = {c["index"]: c for c in r.get("changes", [])}
        tokens = []
        for i, t in enumerate(s.tokens):
            c = changes.get(i)
            tokens.append({"gap": s.gaps[i], "token": t} if c is None else
                          {"gap": s.gaps[i], "token": t, "to": c["to"],
                           "segments": char_segments(c["from"], c["to"])})
        out.append({"index": r["index"], "status": r["status"], "true": r["true"],
                    "pred_clean": r["pred_clean"], "pred": r["pred"],
                    "original": r["original"], "perturbed": r["perturbed"],
                    "words_changed": r["words_changed"], "queries": r["queries"],
                    "found_by": r.get("found_by"), "tokens": tokens,
                    "tail": s.gaps[-1]})
    return out


def collect_robustness(bundle, opts: Options) -> dict:
    from ..attack.catalog import ATTACK_INFO
    from ..attack.run import run_attack
    runs, records = [], []
    for b in opts.budgets:
        s = run_attack(bundle, opts.attack, "tflm", n=opts.attack_limit, budget=b,
                       seed=opts.seed, split=opts.split, transfer=False)
        records = s.pop("examples")
        runs.append(s)
    out = {"attack": opts.attack, "definition": ATTACK_INFO[opts.attack], "runtime": "tflm",
           "n": opts.attack_limit, "seed": opts.seed, "split": opts.split, "budgets": runs,
           "examples_budget": opts.budgets[-1],
           "examples": adversarial_examples(records)}
    if opts.attack in CHAR_FAMILY and opts.certify:
        from ..attack.certify import certify
        out["certified"] = []
        for k in range(1, opts.certify + 1):
            c = certify(bundle, edits=k, n=opts.attack_limit, split=opts.split)
            out["certified"].append({key: v for key, v in c.items() if key != "sentences"})
    elif opts.certify:
        out["certified_note"] = (f"certified accuracy is for one-character word edits (the "
                                 f"char attacks' family), not for {opts.attack}")
    return out


# --- provenance -------------------------------------------------------------------------------
def collect_provenance(bundle) -> dict:
    m = bundle.manifest
    recipe = m.get("recipe", {})
    return {"name": m["name"], "version": m.get("version"), "format": m.get("format"),
            "dataset": m.get("dataset"), "recipe_path": recipe.get("path"),
            "recipe": recipe, "tokenizer": m.get("tokenizer"),
            "fingerprint": m.get("fingerprint"), "tools": m.get("tools"),
            "training": m.get("training"), "sizes": m.get("sizes"),
            "int8_sha256": m.get("int8", {}).get("sha256"),
            "int8_ops": m.get("int8", {}).get("ops"), "metrics": m.get("metrics")}


# --- the whole page ---------------------------------------------------------------------------
def collect(bundle_path: str | Path, opts: Options) -> dict:
    """Everything the page shows, as plain JSON-able data."""
    from ..common import progress
    from ..text.datasets import long_sentence
    from ..int8.bundle import load_bundle
    opts = check_options(opts)
    bundle_path = Path(bundle_path)
    bundle = load_bundle(bundle_path)
    t0 = time.monotonic()
    data: dict = {
        "format": REPORT_FORMAT, "generator": GENERATOR, "mcutext": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"path": str(bundle_path), "name": bundle.name,
                   "dataset": bundle.manifest.get("dataset"), "labels": list(bundle.labels)},
        "options": {"boards": list(opts.boards), "attack": opts.attack, "split": opts.split,
                    "limit": opts.limit, "examples": opts.examples,
                    "attack_limit": opts.attack_limit, "budgets": list(opts.budgets),
                    "certify": opts.certify, "seed": opts.seed}}
    steps = ["accuracy", "explanations"] + [f"board {b}" for b in opts.boards] + (
        ["robustness"] if opts.attack else [])
    with progress.task("report", total=len(steps)) as update:
        update(status="evaluating")
        data["accuracy"], ex = collect_accuracy(bundle, opts)
        update(advance=1, status="explaining")
        data["explanations"] = collect_explanations(bundle, ex, opts)
        update(advance=1)
        data["boards"] = []
        sentence = long_sentence(ex["texts"], bundle.tokenizer) if opts.boards else ""
        for b in opts.boards:
            update(status=f"building for {b}")
            data["boards"].append(collect_board(bundle_path, bundle, b, sentence))
            update(advance=1)
        if opts.attack:
            update(status=f"attacking ({opts.attack})")
            data["robustness"] = collect_robustness(bundle, opts)
            update(advance=1)
    data["provenance"] = collect_provenance(bundle)
    data["seconds"] = round(time.monotonic() - t0, 1)
    return data


def write_report(bundle_path: str | Path, out: str | Path | None = None, force: bool = False,
                 opts: Options | None = None) -> tuple[Path, dict]:
    """Collects, renders and publishes the page (one atomic write). `out` may be absent or an
    earlier report; another file only with force. Returns (path, data)."""
    from ..common.outputs import check_out, write_file
    from .report_html import render
    opts = check_options(opts or Options())
    out = Path(out) if out is not None else default_out(bundle_path)
    check_out(out, "report", force)   # before any work
    data = collect(bundle_path, opts)
    html = render(data)
    write_file(out, html, kind="report", force=force)
    return out, data
