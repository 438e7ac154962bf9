"""`mcutext ablate RECIPE`: what each part of the three-part objective buys (issue 6).

Four students are trained from the recipe, differing only in the objective's weights
(mcutext.model.recipe.ObjectiveConfig: a = kd_weight, b = map_weight, c = adv_weight):

    ce           CE only                          a = 0, b = 0, c = 0
    kd           + knowledge distillation         a,     b = 0, c = 0
    kd_map       + explainable feature mapping    a,     b,     c = 0
    kd_map_adv   + adversarial robustness         a,     b,     c

a, b and c are the recipe's own weights, or DEFAULT_WEIGHTS where the recipe sets 0 (e.g. a
recipe without an adversarial term gets c = 1.0 in the last arm). Everything else -- seeds,
data, epochs, the transfer set of the teacher arms, conversion -- is the recipe's, the same
for every arm; `epochs` and `limit` override the budget of all four alike. The teacher arms
use the recipe's cached teacher (build/teachers/<recipe>, trained first only if missing);
the CE arm trains on the training texts alone (the transfer set's variants carry only teacher
labels).

For each trained bundle, on the int8 model in TFLite Micro:
- clean accuracy on the whole test split (the bundle's manifest);
- robust accuracy under the suite's char-level (`char`: per sentence the stronger of
  deepwordbug and the adaptive attack) and word-level (pwws) attacks,
  budget 2 words, on `n_eval` test sentences (the attack suite's fixed sample), attack seed 0,
  and the share of the CE arm's errors under each attack (sentences it gets wrong, attacked
  or already clean) that the arm gets right;
- certified accuracy at 1 and 2 edited words (mcutext.attack.certify) on the same sentences;
- explanation faithfulness of the int8 attention (mcutext.explain: ERASER comprehensiveness
  and sufficiency, deletion AOPC, each against a random ranking) and its agreement with the
  teacher's word attributions (Spearman, top-3 overlap), on the same sentences;
- model size (int8 weights, parameters) and the student's training time.

The table goes to `<out>/ablation.md` and `<out>/ablation.json` (default
build/ablation/<recipe>/); the four bundles to `<out>/<arm>/`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from ..common import progress
from ..common.errors import McutextError
from ..common.outputs import is_bundle, is_staging, register_kind

ARMS = (
    ("ce", "CE only", ()),
    ("kd", "+ KD", ("kd_weight",)),
    ("kd_map", "+ KD + mapping", ("kd_weight", "map_weight")),
    ("kd_map_adv", "+ KD + mapping + adversarial", ("kd_weight", "map_weight", "adv_weight")),
)
# used where the recipe's own weight is 0 (the shipped sst2 / ag_news values for a and b)
DEFAULT_WEIGHTS = {"kd_weight": 0.5, "map_weight": 0.1, "adv_weight": 1.0}
ATTACKS = (("char", "char"), ("word", "pwws"))
BUDGET = 2
CERTIFY_EDITS = (1, 2)
SEED = 0
N_EVAL = 500


def _is_ablation(p: Path) -> bool:
    """An earlier `mcutext ablate --out`: the arms' bundle folders and the tables."""
    arms = {name for name, _, _ in ARMS}
    for e in p.iterdir():
        if is_staging(e) or e.name in ("ablation.json", "ablation.md"):
            continue
        if not (e.name in arms and e.is_dir() and (is_bundle(e) or not any(e.iterdir()))):
            return False
    return True


register_kind("ablation", True, "an ablation folder", _is_ablation)


def default_out(recipe) -> Path:
    from ..model.recipe import project_root
    return project_root() / "build" / "ablation" / recipe.name


def arm_recipes(recipe, weights: dict | None = None) -> list[tuple[str, str, object]]:
    """(name, title, recipe) of the four arms: the recipe with the objective's weights of the
    parts an arm leaves out set to 0, and those it keeps at the recipe's value (or `weights`,
    or DEFAULT_WEIGHTS where the recipe has 0)."""
    obj = recipe.objective
    w = {}
    for key, default in DEFAULT_WEIGHTS.items():
        w[key] = (weights or {}).get(key) or getattr(obj, key) or default
    out = []
    for name, title, keep in ARMS:
        o = dataclasses.replace(obj, **{k: (w[k] if k in keep else 0.0) for k in w})
        out.append((name, title, dataclasses.replace(recipe, objective=o)))
    return out


def eval_texts(bundle, n: int | None) -> list[str]:
    """The test sentences the attack suite attacks with `n` (its fixed seeded sample, the
    labels left out of accuracy excluded), so explanations and attacks see the same ones."""
    from ..attack.run import _sample
    from ..text.datasets import load_split
    data = load_split(bundle.manifest["dataset"], "test")
    ev = bundle.manifest.get("eval", {})
    skip = set(ev.get("exclude_labels", ())) | set(ev.get("dropped_labels", ()))
    pool = [k for k in range(len(data)) if data.labels[k] not in skip]
    return [data.texts[pool[k]] for k in _sample(len(pool), n)]


def measure(bundle_path: Path, teacher, n_eval: int | None = N_EVAL, seed: int = SEED) -> dict:
    """The ablation's figures for one trained bundle (see the module's docstring)."""
    from ..attack.run import run_attack
    from ..int8.bundle import load_bundle
    from ..explain.attribution import bundle_faithfulness, teacher_agreement
    b = load_bundle(bundle_path)
    m = b.manifest
    test = m["metrics"]["test"]
    row: dict = {
        "clean_accuracy": test["tflm"]["accuracy"], "test_n": test["tflm"]["n"],
        "float_accuracy": test["keras"]["accuracy"],
        "int8_weights_bytes": m["sizes"]["int8_weights_bytes"], "params": m["sizes"]["params"],
        "train_seconds": m["training"]["seconds"],
        "teacher_seconds": m["training"].get("teacher_seconds", 0.0),
        "transfer_examples": m["training"].get("transfer_examples"),
        "epochs": m["training"]["epochs"],
    }
    attacks = {}
    for short, name in ATTACKS:
        res = run_attack(b, name, runtime="tflm", n=n_eval, budget=BUDGET, seed=seed,
                         transfer=False)
        row[f"{short}_accuracy"] = res["accuracy_under_attack"]
        attacks[short] = {k: v for k, v in res.items() if k != "examples"}
        # the sentences wrong under the attack (flipped, or wrong already), by split index
        attacks[short]["errors"] = [r["index"] for r in res["examples"]
                                    if r["status"] != "failed"]
    row["eval_n"] = attacks["char"]["n"]
    from ..attack.certify import certify
    certified = {}
    for k in CERTIFY_EDITS:
        c = certify(b, edits=k, n=n_eval)
        row[f"certified_{k}"] = c["certified_accuracy"]
        certified[k] = {key: v for key, v in c.items() if key != "sentences"}
    texts = eval_texts(b, n_eval)
    expl = {}
    for rt in ("tflm", "keras"):
        f = bundle_faithfulness(b, texts, rt, seed=seed)
        a = teacher_agreement(b, teacher, texts, rt, seed=seed) if teacher is not None else None
        expl[rt] = {"faithfulness": f, "agreement": a}
    f, a = expl["tflm"]["faithfulness"], expl["tflm"]["agreement"]
    for metric in ("comprehensiveness", "sufficiency", "aopc"):
        row[metric] = f[metric]["model"]
        row[f"{metric}_random"] = f[metric]["random"]
    if a is not None:
        row["spearman"] = a["spearman"]
        row["top_k_overlap"] = a["top_k_overlap"]
        row["top_k_overlap_random"] = a["top_k_overlap_random"]
    return {"row": row, "attacks": attacks, "explanations": expl, "certified": certified}


def errors_removed(ce_errors: list[int], errors: list[int]) -> float | None:
    """The share of the CE arm's errors under an attack that an arm does not make."""
    ce = set(ce_errors)
    return len(ce - set(errors)) / len(ce) if ce else None


def ablate(recipe, out: Path | None = None, limit: int | None = None,
           epochs: int | None = None, n_eval: int | None = N_EVAL, seed: int = SEED,
           weights: dict | None = None, test_limit: int | None = None,
           force: bool = False) -> dict:
    """Train the four arms of `recipe` (a Recipe or a name under models/), measure them, write
    the table; returns {"rows": [...], "arms": {name: details}, ...}. `out` may be absent,
    empty or an earlier ablation folder; anything else only with `force`."""
    from ..common.outputs import check_out
    from ..model.recipe import Recipe, load_recipe
    from ..common.determinism import configure_tensorflow
    from ..train.pipeline import get_teacher, train
    from ..train.splits import split_train_dev
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if recipe.model.arch != "cnn":
        raise McutextError(f"{recipe.name}: the ablation needs the mcutext student "
                           f"(model.arch = \"cnn\"), not {recipe.model.arch}")
    out = Path(out) if out else default_out(recipe)
    check_out(out, "ablation", force)
    configure_tensorflow()
    out.mkdir(parents=True, exist_ok=True)
    arms = arm_recipes(recipe, weights)
    train_ds, _ = split_train_dev(recipe, limit)
    labels = sorted(set(train_ds.labels))
    # the teacher: needed by three arms for training and by all four for agreement; loaded
    # (trained first only if missing or stale) once, up front
    teacher = get_teacher(arms[-1][2], labels)
    rows, details = [], {}
    t_all = time.time()
    for name, title, r in arms:
        t0 = time.time()
        progress.log(f"ablation {recipe.name}: {title} (a={r.objective.kd_weight:g}, "
                     f"b={r.objective.map_weight:g}, c={r.objective.adv_weight:g})")
        path = train(r, out=out / name, epochs=epochs, limit=limit, test_limit=test_limit,
                     teacher=r.objective.uses_teacher, force=force)
        res = measure(path, teacher, n_eval=n_eval, seed=seed)
        row = {"arm": name, "objective": title, "kd_weight": r.objective.kd_weight,
               "map_weight": r.objective.map_weight, "adv_weight": r.objective.adv_weight,
               **res["row"], "seconds": round(time.time() - t0, 1)}
        ce = res if not details else details[arms[0][0]]   # the CE arm is the first
        for short, _ in ATTACKS:
            row[f"{short}_errors_removed"] = errors_removed(ce["attacks"][short]["errors"],
                                                           res["attacks"][short]["errors"])
        rows.append(row)
        details[name] = {"bundle": str(path), "attacks": res["attacks"],
                         "explanations": res["explanations"], "certified": res["certified"]}
        progress.log(f"  int8 {row['clean_accuracy']:.4f}, char {row['char_accuracy']:.4f}, "
                     f"word {row['word_accuracy']:.4f}, comprehensiveness "
                     f"{row['comprehensiveness']:.4f} "
                     f"(random {row['comprehensiveness_random']:.4f})")
    summary = {"recipe": recipe.name, "dataset": recipe.dataset, "limit": limit,
               "weights": weights or {},
               "epochs": epochs, "n_eval": n_eval, "seed": seed, "budget": BUDGET,
               "teacher": str(teacher.path),
               "teacher_test_accuracy": teacher.meta["metrics"]["test"]["accuracy"],
               "seconds": round(time.time() - t_all, 1), "rows": rows, "arms": details}
    write(out, summary)
    return summary


COLUMNS = [
    ("objective", "objective"), ("weights", "a / b / c"),
    ("clean_accuracy", "int8 acc."), ("char_accuracy", "char attack"),
    ("word_accuracy", "word attack"), ("char_errors_removed", "CE's char errors removed"),
    ("word_errors_removed", "CE's word errors removed"), ("certified_1", "certified, 1 edit"),
    ("certified_2", "certified, 2 edits"), ("comp", "comprehensiveness (random)"),
    ("suff", "sufficiency (random)"), ("aopc_pair", "deletion AOPC (random)"),
    ("spearman", "Spearman vs teacher"), ("overlap", "top-3 overlap (random)"),
    ("int8_weights_bytes", "int8 weights (B)"), ("train_seconds", "training (s)"),
]


def _cells(row: dict) -> dict:
    def pair(key):
        return f"{row[key]:.3f} ({row[key + '_random']:.3f})"
    c = dict(row)
    c["weights"] = f"{row['kd_weight']:g} / {row['map_weight']:g} / {row['adv_weight']:g}"
    c["comp"], c["suff"], c["aopc_pair"] = (pair("comprehensiveness"), pair("sufficiency"),
                                            pair("aopc"))
    if "spearman" in row:
        rho = row["spearman"]
        c["spearman"] = "-" if rho is None or rho != rho else f"{rho:.3f}"
        c["overlap"] = f"{row['top_k_overlap']:.3f} ({row['top_k_overlap_random']:.3f})"
    for key in ("clean_accuracy", "char_accuracy", "word_accuracy", "certified_1",
                "certified_2", "char_errors_removed", "word_errors_removed"):
        if row.get(key) is not None:
            c[key] = f"{row[key]:.3f}"
    c["int8_weights_bytes"] = f"{row['int8_weights_bytes']:,}"
    c["train_seconds"] = f"{row['train_seconds']:.0f}"
    return c


def markdown(summary: dict) -> str:
    rows = summary["rows"]
    r0 = rows[0]
    lines = [f"# Ablation of the objective: {summary['recipe']}", "",
             f"int8 model in TFLite Micro. Clean accuracy on the test split (n={r0['test_n']}); "
             f"attacks (budget {summary['budget']} words, seed {summary['seed']}) and "
             f"explanations on {r0['eval_n']} test sentences (the attack suite's fixed sample). "
             f"char = per sentence the stronger of DeepWordBug and the adaptive attack. CE's "
             f"errors removed: of the sentences the CE arm gets wrong under the attack, the "
             f"share this arm gets right. Certified: no combination of 1 (2) one-character "
             f"word edits misclassifies the sentence (`mcutext certify`, same sentences). "
             f"a / b / c: weights of distillation, attention mapping, adversarial term. "
             f"Comprehensiveness, sufficiency (ERASER, mean over 10/20/50 % of the words) and "
             f"deletion AOPC of the int8 attention, the random ranking's in parentheses "
             f"(higher comprehensiveness and AOPC, lower sufficiency = more faithful). "
             f"Agreement with the teacher (test acc. {summary['teacher_test_accuracy']:.3f}, "
             f"`{summary['teacher']}`): Spearman over the words, top-3 overlap (chance in "
             f"parentheses). Training: the student alone, 2 CPU threads"
             + (f"; training limited to {summary['limit']} examples" if summary["limit"] else "")
             + (f"; epochs: {summary['epochs']}" if summary["epochs"] else "") + ".", ""]
    lines.append("| " + " | ".join(h for _, h in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for r in rows:
        c = _cells(r)
        lines.append("| " + " | ".join(str(c.get(k, "-")) for k, _ in COLUMNS) + " |")
    lines += ["", f"Produced by `{command(summary)}` in {summary['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def command(summary: dict) -> str:
    return (f"mcutext ablate {summary['recipe']}"
            + (f" --limit {summary['limit']}" if summary["limit"] else "")
            + (f" --epochs {summary['epochs']}" if summary["epochs"] else "")
            + (f" --n-eval {summary['n_eval']}" if summary["n_eval"] != N_EVAL else "")
            + "".join(f" --{k.replace('_', '-')} {v:g}"
                      for k, v in summary.get("weights", {}).items() if v))


def _finite(obj):
    """NaN (e.g. Spearman without any defined sentence) -> null, so the JSON stays JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write(out: Path, summary: dict) -> None:
    from ..common.outputs import write_file
    write_file(out / "ablation.json", json.dumps(_finite(summary), indent=2, default=float) + "\n")
    write_file(out / "ablation.md", markdown(summary))
