"""Explanations: the student's per-word attributions and how faithful they are (DESIGN.md,
"What we measure"; docs/explanations.md).

**The attribution** of a word is the student's attention pooling weight at the word's slot
(docs/model.md), read from the model's own inference, nothing recomputed:

- float: output 1 ("attention", the Softmax layer `attention`) of the bundle's Keras model,
  float32[L];
- int8: the int8 model's output tensor `attention` (its position is the manifest's
  `int8.output_order["attention"]`), i.e. the int8 output of the graph's SOFTMAX op,
  int8[L] with the manifest's `int8.outputs.attention` quantization (scale 1/256, zero point
  -128: weight = (q + 128) / 256). On the device it is the same tensor,
  `mt_model_attention()`, that the protocol's `explain` command prints as `word <i> <q>
  <weight> <word>`; device and TFLite Micro agree byte for byte (tests/test_explain_qemu.py).

The softmax runs over all L word slots, padding included (the graph has no mask), so the
weights of the words present sum to less than 1; `share` renormalizes them over the words.
Only the words the model saw (the tokenizer's first `max_words`) are ever ranked.

**Removing words** means deleting their K hashed features from the id row and closing the gap
(the words that follow move up, padding fills the end): exactly the ids of the text with those
words deleted, among the words the model sees. All variants of all sentences are built first,
de-duplicated, and classified in one batched call per runtime.

**Faithfulness** (DeYoung et al. 2020, ERASER; Samek et al. 2017, AOPC), for the class the
model predicts on the full text, y, with p = its probability:

- comprehensiveness(f) = p(y | x) - p(y | x without its top ceil(f n) words): high = the words
  ranked first matter; reported per fraction f in FRACTIONS and as their mean;
- sufficiency(f) = p(y | x) - p(y | only the top ceil(f n) words, in their order): low = the
  words ranked first suffice; per fraction and mean;
- deletion AOPC = 1/(S+1) sum_{j=0..S} [p(y | x) - p(y | x without its top ceil(j n / S)
  words)], S = AOPC_STEPS (the deletion curve at 0, 10, ..., 100 % of the words).

Each is measured for the model's ranking and for a random ranking of the same words (same
fractions, a fixed seed per sentence) -- the baseline a useful explanation must beat.
Ties in a ranking (frequent in int8: 1/256 steps) are broken at random with the same seeded
generator, so that no position is favoured. Sentences without words are left out.

**Agreement with the teacher** (its pooling weights summed onto the student's words,
mcutext.train.teacher.trained.Teacher.word_attributions): Spearman's rho over the words present (average
ranks for ties; sentences with fewer than 2 words or a constant attribution are left out and
counted), and the top-k overlap |top_k(student) & top_k(teacher)| / k with k = min(K, n)
(ties broken as above), next to its chance level, the mean of k / n.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from ..int8.bundle import Bundle, softmax
from ..common.errors import McutextError

FRACTIONS = (0.1, 0.2, 0.5)   # ERASER: share of the words removed / kept
AOPC_STEPS = 10               # deletion curve at 0, 10, ..., 100 % of the words
TOP_K = 3                     # teacher-student top-k overlap
SEED = 0
RUNTIMES = ("keras", "litert", "tflm")
CHUNK = 1024                  # rows per Keras call


# --- the model's outputs on id rows ---------------------------------------------------------
@dataclasses.dataclass
class Outputs:
    """One runtime's outputs for a batch of id rows."""

    proba: np.ndarray                 # float64[N, C]: softmax of the (dequantized) logits
    attention: np.ndarray             # float64[N, L]: attention weights (dequantized for int8)
    attention_int8: np.ndarray | None  # int8[N, L]: the raw int8 tensor (int8 runtimes)
    logits_int8: np.ndarray | None     # int8[N, C]


def _keras_fn(bundle: Bundle):
    """The float model as one traced graph for any batch size (predict() costs ~10 ms per call
    in overhead; the deletion variants come in many small batches from the CLI and tests)."""
    fn = getattr(bundle, "_explain_fn", None)
    if fn is None:
        import tensorflow as tf
        model = bundle.keras_model()
        spec = tf.TensorSpec([None, bundle.tokenizer.spec.seq_len], tf.int32)
        fn = tf.function(lambda ids: model(ids, training=False)[:2], input_signature=[spec])
        bundle._explain_fn = fn
    return fn


def run_ids(bundle: Bundle, ids: np.ndarray, runtime: str = "tflm") -> Outputs:
    """Probabilities and attention of `bundle` on id rows, on one runtime."""
    if runtime not in RUNTIMES:
        raise McutextError(f"unknown runtime '{runtime}' (use one of: {', '.join(RUNTIMES)})")
    if bundle.manifest["int8"].get("input") or bundle.manifest.get("recipe", {}).get(
            "model", {}).get("arch", "cnn") != "cnn":
        raise McutextError(f"{bundle.path}: explanations need the mcutext student (attention "
                           f"pooling); this bundle is a baseline")
    ids = np.asarray(ids, np.int32)
    L, C = int(bundle.manifest["max_words"]), len(bundle.labels)
    if len(ids) == 0:
        return Outputs(np.zeros((0, C)), np.zeros((0, L)), None, None)
    if runtime == "keras":
        fn = _keras_fn(bundle)
        z, a = [], []
        for s in range(0, len(ids), CHUNK):
            zz, aa = fn(ids[s:s + CHUNK])
            z.append(np.asarray(zz))
            a.append(np.asarray(aa))
        return Outputs(softmax(np.concatenate(z).astype(np.float64)),
                       np.concatenate(a).astype(np.float64), None, None)
    raw = bundle.run_int8(ids, runtime)
    zq = bundle.manifest["int8"]["outputs"]["logits"]
    aq = bundle.manifest["int8"]["outputs"]["attention"]
    z = (raw["logits"].astype(np.float64) - zq["zero_point"]) * zq["scale"]
    a = (raw["attention"].astype(np.float64) - aq["zero_point"]) * aq["scale"]
    return Outputs(softmax(z), a, raw["attention"], raw["logits"])


def num_words(ids: np.ndarray, k: int) -> np.ndarray:
    """Words present in each id row (real words have non-zero ids; padding is 0 at the end)."""
    ids = np.asarray(ids)
    first = ids.reshape(len(ids), -1, k)[:, :, 0]
    return (first != 0).sum(axis=1)


# --- one text, explained ---------------------------------------------------------------------
@dataclasses.dataclass
class Explanation:
    text: str
    runtime: str
    words: list[str]                  # as the model saw them (lower-cased, truncated)
    labels: list[str]
    probabilities: np.ndarray         # [C]
    attention: np.ndarray             # [n]: the weight of each word
    attention_int8: np.ndarray | None = None  # [n]: int8 runtimes and the device

    @property
    def label_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        return self.labels[self.label_index]

    @property
    def share(self) -> np.ndarray:
        """The weights renormalized over the words present (sum 1; all 0 without words)."""
        s = float(self.attention.sum())
        return self.attention / s if s > 0 else np.zeros_like(self.attention)

    def to_dict(self) -> dict:
        words = []
        for i, (w, a, s) in enumerate(zip(self.words, self.attention, self.share)):
            d = {"index": i, "word": w, "attention": round(float(a), 6),
                 "share": round(float(s), 6)}
            if self.attention_int8 is not None:
                d["attention_int8"] = int(self.attention_int8[i])
            words.append(d)
        return {"text": self.text, "runtime": self.runtime, "label": self.label,
                "label_index": self.label_index,
                "probabilities": {lab: round(float(p), 6)
                                  for lab, p in zip(self.labels, self.probabilities)},
                "words": words}


def explain(bundle: Bundle, texts: Sequence[str], runtime: str = "tflm") -> list[Explanation]:
    """The label, class probabilities and per-word attribution of each text on `runtime`."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = run_ids(bundle, bundle.tokenize(texts), runtime)
    res = []
    for i, t in enumerate(texts):
        words = bundle.tokenizer.display_words(t)
        n = len(words)
        res.append(Explanation(
            t, runtime, words, list(bundle.labels), out.proba[i], out.attention[i, :n],
            None if out.attention_int8 is None else out.attention_int8[i, :n]))
    return res


def explain_on_device(dev, text: str) -> Explanation:
    """The device's own explanation (protocol `explain`): its int8 attention per word, the
    label from its scores (or its personalized head when it has learnt)."""
    info = getattr(dev, "_info", None) or dev.info()
    r = dev.explain(text)
    att = r["attribution"]
    labels = list(info["labels"])
    if r.get("head"):
        # personalized firmware after its first update: the label is the argmax of the float
        # head's scores, one per row ("-": a row that is not scored)
        z = np.array([-np.inf if v is None else v for v in r["head"]], np.float64)
        probs = np.zeros(len(z))
        fin = np.isfinite(z)
        probs[fin] = softmax(z[fin])
        labels = labels + [f"row {k}" for k in range(len(labels), len(z))]
    else:
        probs = softmax(np.array(r["logits"], np.float64))
    if r["label_index"] < len(labels):
        labels[r["label_index"]] = r["label"]
    return Explanation(text, "device", [a["word"] for a in att], labels, probs,
                       np.array([a["weight"] for a in att], np.float64),
                       np.array([a["attention"] for a in att], np.int8))


# --- rankings --------------------------------------------------------------------------------
def ranking(attr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Word positions, highest attribution first; ties in a random (seeded) order."""
    attr = np.asarray(attr, np.float64)
    tiebreak = rng.permutation(len(attr))
    return np.lexsort((tiebreak, -attr))


def _rng(seed: int, i: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, i, stream])


def _rows_without(words: np.ndarray, n: int, drop: np.ndarray | None = None,
                  keep: np.ndarray | None = None) -> np.ndarray:
    """The id row of a sentence's words [L, K] after deleting positions `drop` (or keeping
    only `keep`, in sentence order)."""
    L, K = words.shape
    mask = np.zeros(L, bool)
    if keep is not None:
        mask[np.sort(keep)] = True
    else:
        mask[:n] = True
        if drop is not None:
            mask[drop] = False
    row = np.zeros((L, K), words.dtype)
    kept = words[mask]
    row[:len(kept)] = kept
    return row.reshape(-1)


def _count(f: float, n: int) -> int:
    # ceil, with a guard against float error (0.1 * 30 = 3.0000000000000004)
    return min(n, int(math.ceil(f * n - 1e-9)))


# --- faithfulness ----------------------------------------------------------------------------
def faithfulness(proba_fn: Callable[[np.ndarray], np.ndarray], ids: np.ndarray,
                 attributions: np.ndarray, k: int, fractions: Sequence[float] = FRACTIONS,
                 aopc_steps: int = AOPC_STEPS, seed: int = SEED,
                 per_example: bool = False) -> dict:
    """ERASER comprehensiveness and sufficiency, and deletion AOPC, of `attributions`
    ([N, L], only the words present are read) for the classifier `proba_fn` (id rows
    [M, L*K] -> probabilities [M, C]), each next to a random ranking's.

    All deletion variants of all sentences are classified in one call of `proba_fn` (each
    distinct row once)."""
    ids = np.asarray(ids, np.int32)
    attributions = np.asarray(attributions, np.float64)
    N = len(ids)
    if attributions.shape[0] != N:
        raise McutextError(f"{attributions.shape[0]} attribution rows for {N} id rows")
    L = ids.shape[1] // k
    fractions = tuple(float(f) for f in fractions)
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise McutextError(f"fractions must be in (0, 1], got {list(fractions)}")
    steps = [j / aopc_steps for j in range(1, aopc_steps + 1)]
    n_words = num_words(ids, k)
    rows: list[np.ndarray] = []
    # per sentence, per order: indices into rows of (full, comp..., suff..., deletion...)
    plan: list[tuple[int, dict[str, tuple[list[int], list[int], list[int]]]]] = []
    for i in range(N):
        n = int(n_words[i])
        if n == 0:
            continue
        words = ids[i].reshape(L, k)
        full = len(rows)
        rows.append(ids[i])
        orders = {"model": ranking(attributions[i, :n], _rng(seed, i, 0)),
                  "random": _rng(seed, i, 1).permutation(n)}
        entry = {}
        for name, order in orders.items():
            comp, suff, dele = [], [], []
            for f in fractions:
                c = _count(f, n)
                comp.append(len(rows))
                rows.append(_rows_without(words, n, drop=order[:c]))
                suff.append(len(rows))
                rows.append(_rows_without(words, n, keep=order[:c]))
            for f in steps:
                dele.append(len(rows))
                rows.append(_rows_without(words, n, drop=order[:_count(f, n)]))
            entry[name] = (comp, suff, dele)
        plan.append((full, entry))
    if not plan:
        raise McutextError("no sentence with words to explain")
    allrows = np.stack(rows)
    uniq, inverse = np.unique(allrows, axis=0, return_inverse=True)
    p_uniq = np.asarray(proba_fn(uniq), np.float64)
    p = p_uniq[inverse.reshape(-1)]
    res_per: dict[str, dict[str, list]] = {o: {"comprehensiveness": [], "sufficiency": [],
                                              "aopc": []} for o in ("model", "random")}
    for full, entry in plan:
        y = int(np.argmax(p[full]))
        p0 = p[full, y]
        for name, (comp, suff, dele) in entry.items():
            r = res_per[name]
            r["comprehensiveness"].append([p0 - p[j, y] for j in comp])
            r["sufficiency"].append([p0 - p[j, y] for j in suff])
            # j = 0 (nothing deleted) contributes 0 to the sum
            r["aopc"].append(sum(p0 - p[j, y] for j in dele) / (aopc_steps + 1))
    out: dict = {"n": len(plan), "skipped_without_words": N - len(plan),
                 "fractions": list(fractions), "aopc_steps": aopc_steps, "seed": seed,
                 "rows": len(allrows), "distinct_rows": len(uniq)}
    for metric in ("comprehensiveness", "sufficiency"):
        d: dict = {}
        for name in ("model", "random"):
            arr = np.array(res_per[name][metric])  # [n, F]
            d[name] = float(arr.mean())
            d[f"{name}_by_fraction"] = {f"{f:g}": float(v) for f, v in
                                        zip(fractions, arr.mean(axis=0))}
        out[metric] = d
    out["aopc"] = {name: float(np.mean(res_per[name]["aopc"])) for name in ("model", "random")}
    if per_example:
        out["per_example"] = {name: {m: np.asarray(v).tolist() for m, v in r.items()}
                              for name, r in res_per.items()}
    return out


def bundle_faithfulness(bundle: Bundle, texts: Sequence[str], runtime: str = "tflm",
                        seed: int = SEED, **kw) -> dict:
    """faithfulness() of the bundle's own attention on `runtime` (float: keras; int8: tflm or
    litert): the attention of each text and the deleted variants come from the same runtime."""
    ids = bundle.tokenize(list(texts))
    att = run_ids(bundle, ids, runtime).attention
    k = bundle.tokenizer.spec.features_per_word
    res = faithfulness(lambda x: run_ids(bundle, x, runtime).proba, ids, att, k, seed=seed, **kw)
    res["runtime"] = runtime
    return res


# --- agreement with the teacher ----------------------------------------------------------------
def _avg_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    # average the ranks of tied values
    uniq, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.zeros(len(uniq))
    np.add.at(sums, inv, ranks)
    return (sums / counts)[inv]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties; nan when either side is constant."""
    ra, rb = _avg_ranks(np.asarray(a, np.float64)), _avg_ranks(np.asarray(b, np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def agreement(student: np.ndarray, teacher: np.ndarray, n_words: Sequence[int],
              top_k: int = TOP_K, seed: int = SEED) -> dict:
    """Teacher-student agreement over the words present: mean Spearman rho and mean top-k
    overlap (and the overlap a random ranking gets on average, k / n)."""
    rhos, overlaps, chance = [], [], []
    undefined = 0
    for i, n in enumerate(n_words):
        n = int(n)
        if n == 0:
            continue
        s, t = np.asarray(student[i][:n], np.float64), np.asarray(teacher[i][:n], np.float64)
        if n >= 2:
            rho = spearman(s, t)
            if math.isnan(rho):
                undefined += 1
            else:
                rhos.append(rho)
        kk = min(top_k, n)
        top_s = set(ranking(s, _rng(seed, i, 2))[:kk].tolist())
        top_t = set(ranking(t, _rng(seed, i, 3))[:kk].tolist())
        overlaps.append(len(top_s & top_t) / kk)
        chance.append(kk / n)
    return {"spearman": float(np.mean(rhos)) if rhos else float("nan"),
            "spearman_n": len(rhos), "spearman_undefined": undefined,
            "top_k": top_k, "top_k_overlap": float(np.mean(overlaps)) if overlaps else float("nan"),
            "top_k_overlap_random": float(np.mean(chance)) if chance else float("nan"),
            "n": len(overlaps)}


def teacher_agreement(bundle: Bundle, teacher, texts: Sequence[str], runtime: str = "tflm",
                      top_k: int = TOP_K, seed: int = SEED) -> dict:
    """agreement() of the bundle's attention on `runtime` with the teacher's word
    attributions on the same texts."""
    texts = list(texts)
    spec = bundle.tokenizer.spec
    ids = bundle.tokenize(texts)
    att = run_ids(bundle, ids, runtime).attention
    t_attr = teacher.word_attributions(texts, spec.max_words, spec.max_word_bytes)
    res = agreement(att, t_attr, num_words(ids, spec.features_per_word), top_k, seed)
    res["runtime"] = runtime
    return res


def evaluate_explanations(bundle: Bundle, texts: Sequence[str],
                          runtimes: Sequence[str] = ("tflm", "keras"), teacher=None,
                          seed: int = SEED) -> dict:
    """Faithfulness (and agreement with `teacher`, when given) per runtime."""
    out = {}
    for rt in runtimes:
        out[rt] = {"faithfulness": bundle_faithfulness(bundle, texts, rt, seed=seed)}
        if teacher is not None:
            out[rt]["agreement"] = teacher_agreement(bundle, teacher, texts, rt, seed=seed)
    return out
