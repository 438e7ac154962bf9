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

import dataclasses
import itertools
import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import perturb
from .bundle import Bundle, load_bundle, softmax
from .errors import McutextError
from .perturb import Sentence

ATTACKS = ("char", "deepwordbug", "adaptive", "typo", "pwws", "hotflip")
# Short name of the word-level attack of DESIGN.md (the char-level one is `char` itself).
ATTACK_ALIASES = {"word": "pwws"}
RUNTIMES = ("keras", "litert", "tflm", "device")
HOST_RUNTIMES = ("keras", "litert", "tflm")

# Search parameters (fixed, so that budgets and figures are comparable across runs).
# deepwordbug / hotflip: random edits of each kind per word. Each edit gives the word a new
# hashed word feature, so more candidates find a worse one: on the sst2 student (300 test
# sentences, tflm, budget 2) accuracy under attack is 0.26 / 0.22 / 0.17 / 0.14 with 2 / 4 /
# 8 / 16 per kind, at 31 / 41 / 55 / 80 queries. 8 keeps queries near DeepWordBug's own
# (32.7 on MR) while the device path (one serial exchange per query) stays practical.
CHAR_EDITS_PER_KIND = 8
TYPO_MAX_CANDIDATES = 32     # typo: candidates per word
PWWS_MAX_SYNONYMS = 30       # pwws: synonyms scored per word
HOTFLIP_SYNONYMS = 20        # hotflip: synonyms per word among its candidates
HOTFLIP_BEAM = 8             # hotflip: first-order best candidates evaluated exactly per step
# adaptive: the tokenizer's encodings of a word's one-edit family (certify.word_moves).
ADAPTIVE_PER_WORD = 32       # distinct encodings tried per word (a seeded sample when more)
ADAPTIVE_BEAM = 4            # edit sets kept from one step to the next
ADAPTIVE_EXPAND = 8          # a word's best single moves tried from each kept edit set
ADAPTIVE_EXHAUSTIVE = 4096   # every combination within the budget when there are this few

ATTACK_INFO = {
    "char": "char-level, black box: deepwordbug, and the adaptive attack where it fails (per "
            "sentence the stronger of the two)",
    "adaptive": "char-level, black box, knows the tokenizer: each word's one-edit variants "
                "grouped by the encoding they give, up to "
                f"{ADAPTIVE_PER_WORD} encodings per word; every combination when at most "
                f"{ADAPTIVE_EXHAUSTIVE}, else every single move then a beam of "
                f"{ADAPTIVE_BEAM} over the {ADAPTIVE_EXPAND} best moves per word",
    "deepwordbug": "char-level, black box: leave-one-out word ranking, best of "
                   f"{CHAR_EDITS_PER_KIND} random swap/substitute/delete/insert edits per kind "
                   "per word, one character edit per word",
    "typo": "char-level, black box (Pruthi et al.): one internal swap/drop/add/keyboard-"
            f"neighbour edit per word, up to {TYPO_MAX_CANDIDATES} candidates per word",
    "pwws": "word-level, black box (PWWS): WordNet synonym substitution ordered by "
            f"softmax(saliency) x best probability drop, up to {PWWS_MAX_SYNONYMS} synonyms "
            "per word",
    "hotflip": "white box on the float Keras model: embedding-gradient choice of word and "
               f"replacement (char edits + {HOTFLIP_SYNONYMS} WordNet synonyms), "
               f"{HOTFLIP_BEAM} best evaluated exactly per step; texts replayed on the runtime",
}


# --- runtimes -------------------------------------------------------------------------------
class Classifier:
    """What an attack sees of a model: class probabilities for a batch of texts."""

    runtime = ""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.labels = bundle.labels
        self.calls = 0   # proba() calls
        self.rows = 0    # texts classified
        self.last_int8: np.ndarray | None = None  # int8 scores of the last call (int8 runtimes)

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        self.calls += 1
        self.rows += len(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._proba(texts)

    def _proba(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _compiled_logits(bundle: Bundle):
    """The float model's logits as one traced graph for any batch size: most attack batches
    are small, where predict() and eager calls cost ~10 ms each in overhead alone. Traced
    once per bundle object and kept on it (every classifier of the bundle shares it)."""
    fn = getattr(bundle, "_attack_logits", None)
    if fn is None:
        import tensorflow as tf
        model = bundle.keras_model()
        spec = tf.TensorSpec([None, bundle.tokenizer.spec.seq_len], tf.int32)
        fn = tf.function(lambda ids: model(ids, training=False)[0], input_signature=[spec])
        bundle._attack_logits = fn
    return fn


class KerasClassifier(Classifier):
    """The float model."""

    runtime = "keras"
    CHUNK = 1024

    def __init__(self, bundle: Bundle):
        super().__init__(bundle)
        self._logits = _compiled_logits(bundle)

    def logits_ids(self, ids: np.ndarray) -> np.ndarray:
        out = [np.asarray(self._logits(ids[i:i + self.CHUNK]))
               for i in range(0, len(ids), self.CHUNK)]
        return np.concatenate(out).astype(np.float64)

    def _proba(self, texts):
        return softmax(self.logits_ids(self.bundle.tokenize(texts)))


def int8_logits_to_proba(bundle: Bundle, q: np.ndarray) -> np.ndarray:
    """Dequantize int8 class scores with the bundle's output scale and zero point; softmax."""
    quant = bundle.manifest["int8"]["outputs"]["logits"]
    z = (np.asarray(q, np.float64) - quant["zero_point"]) * quant["scale"]
    return softmax(z)


class Int8Classifier(Classifier):
    """The int8 model in TFLite Micro (`tflm`, the device's reference) or LiteRT."""

    def __init__(self, bundle: Bundle, runtime: str):
        super().__init__(bundle)
        if runtime not in ("tflm", "litert"):
            raise McutextError(f"unknown int8 runtime '{runtime}'")
        self.runtime = runtime

    def _proba(self, texts):
        raw = self.bundle.run_int8(self.bundle.tokenize(texts), self.runtime)["logits"]
        self.last_int8 = raw
        return int8_logits_to_proba(self.bundle, raw)


class DeviceClassifier(Classifier):
    """A board running this bundle's firmware, over serial: `Device(url).classify(text)`
    returns at least {"label": str, "scores": [int8 per class, in the bundle's label order]}.
    One exchange per text, never pipelined: a real UART without flow control would drop the
    bytes of a second line sent while the board is busy. The scores are dequantized like the
    host's int8 outputs, so the attack sees exactly what it sees on `tflm`."""

    runtime = "device"

    def __init__(self, bundle: Bundle, port: str | None, check: bool = True,
                 log: str | Path | None = None):
        super().__init__(bundle)
        if not port:
            raise McutextError("the device runtime needs --port URL (or MCUTEXT_PORT)",
                               hint="e.g. --port socket://127.0.0.1:4444 for a QEMU board")
        try:
            from .device import Device
        except ImportError as e:
            raise McutextError(f"the device runtime is not available ({e})") from None
        self.port = port
        self.device = Device(port, log=log) if log else Device(port)
        if check:
            try:
                self._check_model()
            except BaseException:
                self.close()
                raise

    def _check_model(self) -> None:
        """The board must run this bundle: same model name, labels and tokenizer. (Two
        trainings of one recipe pass this check; the bench and the tests build the firmware
        from the very bundle they attack.)"""
        info_fn = getattr(self.device, "info", None)
        if not callable(info_fn):
            return
        info = info_fn()
        spec = self.bundle.tokenizer.spec
        want = {"buckets": spec.buckets, "max_words": spec.max_words, "seed": spec.seed,
                "max_word_bytes": spec.max_word_bytes,
                "features_per_word": spec.features_per_word}
        got = info.get("tokenizer", {})
        diff = [f"{k} {got.get(k)} (bundle {v})" for k, v in want.items()
                if k in got and got[k] != v]
        if "model" in info and info["model"] != self.bundle.name:
            diff.append(f"model {info['model']} (bundle {self.bundle.name})")
        if "labels" in info and list(info["labels"]) != list(self.labels):
            diff.append(f"labels {info['labels']} (bundle {self.labels})")
        if diff:
            raise McutextError(
                f"device at {self.port} does not run this bundle: " + "; ".join(diff),
                hint=f"build and flash firmware from {self.bundle.path}")

    def _proba(self, texts):
        rows = []
        for t in texts:
            r = self.device.classify(t)
            scores = r.get("scores") if isinstance(r, dict) else None
            if scores is None or len(scores) != len(self.labels):
                raise McutextError(
                    f"device at {self.port}: expected {len(self.labels)} class scores, got "
                    f"{None if scores is None else len(scores)}",
                    hint="is the board running firmware built from this bundle?")
            scores = np.asarray(scores, np.int64)
            label = r.get("label")
            top = np.flatnonzero(scores == scores.max())
            if label is not None and label not in [self.labels[i] for i in top]:
                raise McutextError(
                    f"device at {self.port}: label '{label}' is not the top score's label",
                    hint="is the board running firmware built from this bundle?")
            rows.append(scores)
        self.last_int8 = np.stack(rows).astype(np.int8)
        return int8_logits_to_proba(self.bundle, self.last_int8)

    def close(self):
        close = getattr(self.device, "close", None)
        if callable(close):
            close()


def make_classifier(bundle: Bundle, runtime: str, port: str | None = None,
                    log: str | Path | None = None) -> Classifier:
    """The runtime's classifier; `log` records every serial exchange of the device runtime."""
    check_runtime(runtime)
    if runtime == "keras":
        return KerasClassifier(bundle)
    if runtime in ("tflm", "litert"):
        return Int8Classifier(bundle, runtime)
    return DeviceClassifier(bundle, port, log=log)


class Oracle:
    """One example's view of a classifier: remembers every answer (a text is never asked
    twice) and counts the texts it had to ask about (the attack's queries)."""

    def __init__(self, clf: Classifier):
        self.clf = clf
        self.queries = 0
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if new:
            for t, p in zip(new, self.clf.proba(new)):
                self.cache[t] = p
            self.queries += len(new)
        if not texts:
            return np.zeros((0, len(self.clf.labels)))
        return np.stack([self.cache[t] for t in texts])


# --- budgets --------------------------------------------------------------------------------
BUDGET_RULE = "a whole number of words (>= 1) or a share of a sentence's words in (0, 1)"


def check_budget(budget) -> int | float:
    """A budget as given by a user or a caller (number or string): a whole number of words
    >= 1 (as int), or a share of the words in (0, 1) (as float); McutextError otherwise."""
    raw = budget
    if isinstance(budget, bool):
        budget = None
    elif isinstance(budget, str):
        try:
            budget = float(budget.strip())
        except ValueError:
            budget = None
    elif not isinstance(budget, (int, float, np.integer, np.floating)):
        budget = None
    if budget is None or not math.isfinite(budget) or not budget > 0 or (
            budget >= 1 and budget != int(budget)):
        raise McutextError(f"bad budget {raw!r}: must be {BUDGET_RULE}",
                           hint="e.g. --budget 2 (two words) or --budget 0.1 (10 % of the words)")
    return int(budget) if budget >= 1 else float(budget)


def resolve_attack(name: str) -> str:
    """The attack's canonical name (alias: word -> pwws)."""
    key = ATTACK_ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in ATTACKS:
        names = ", ".join(list(ATTACK_ALIASES) + list(ATTACKS))
        raise McutextError(f"unknown attack {name!r} (use one of: {names})")
    return key


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise McutextError(f"unknown runtime {runtime!r} (use one of: {', '.join(RUNTIMES)})")
    return runtime


def budget_words(budget: float, n_words: int) -> int:
    """Words that may change in a sentence of `n_words` words."""
    if budget >= 1:
        return int(budget)
    return max(1, math.floor(budget * n_words))


def describe_budget(budget: float) -> str:
    if budget >= 1:
        b = int(budget)
        return f"at most {b} word{'s' if b > 1 else ''} edited per sentence"
    return f"at most {budget:.0%} of a sentence's words edited (at least 1)"


# --- the attacks ----------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
    """What an attack gets for one example."""

    sentence: Sentence
    y: int
    p_clean: np.ndarray
    oracle: Oracle
    rng: np.random.Generator
    budget: int              # words that may change
    visible: int             # the model's max_words
    bundle: Bundle
    white_box: "WhiteBox | None" = None


@dataclasses.dataclass
class Found:
    edits: dict[int, str]
    search_success: bool
    extra: dict = dataclasses.field(default_factory=dict)


def _leave_one_out(ctx: Context, words: list[int]) -> np.ndarray:
    """Drop of the true class's probability when each word is deleted (one batch)."""
    s, y = ctx.sentence, ctx.y
    p = ctx.oracle([s.render({i: ""}) for i in words])
    return ctx.p_clean[y] - p[:, y] if len(words) else np.zeros(0)


def _greedy(ctx: Context, order: list[int], candidates: Callable[[str], list[str]]) -> Found:
    """Visit words in `order`; for each, classify all its candidates in one call and keep
    the one with the lowest true-class probability if it lowers it; stop at a label change
    or when `budget` words have changed."""
    s, y = ctx.sentence, ctx.y
    edits: dict[int, str] = {}
    current = float(ctx.p_clean[y])
    for i in order:
        if len(edits) >= ctx.budget:
            break
        cands = candidates(s.tokens[i])
        if not cands:
            continue
        p = ctx.oracle([s.render({**edits, i: c}) for c in cands])
        py = p[:, y]
        flipped = p.argmax(axis=1) != y
        if flipped.any():
            j = int(np.flatnonzero(flipped)[np.argmin(py[flipped])])
            edits[i] = cands[j]
            return Found(edits, True)
        j = int(np.argmin(py))
        if py[j] < current:
            edits[i] = cands[j]
            current = float(py[j])
    return Found(edits, False)


def _importance_order(ctx: Context, words: list[int]) -> list[int]:
    imp = _leave_one_out(ctx, words)
    # stable sort: equal importance keeps sentence order
    return [words[k] for k in np.argsort(-imp, kind="stable")]


def attack_deepwordbug(ctx: Context) -> Found:
    words = ctx.sentence.word_indices(ctx.visible)
    order = _importance_order(ctx, words)
    return _greedy(ctx, order, lambda w: perturb.char_candidates(w, ctx.rng, CHAR_EDITS_PER_KIND))


def attack_typo(ctx: Context) -> Found:
    words = [i for i in ctx.sentence.word_indices(ctx.visible)
             if len(ctx.sentence.tokens[i]) >= 3]
    order = _importance_order(ctx, words)
    return _greedy(ctx, order,
                   lambda w: perturb.typo_candidates(w, ctx.rng, TYPO_MAX_CANDIDATES))


def attack_pwws(ctx: Context) -> Found:
    s, y = ctx.sentence, ctx.y
    syn = {i: perturb.synonyms(s.tokens[i], PWWS_MAX_SYNONYMS)
           for i in s.word_indices(ctx.visible)}
    words = [i for i, v in syn.items() if v]
    if not words:
        return Found({}, False)
    # saliency (deletions) and every single substitution, in one call
    texts = [s.render({i: ""}) for i in words]
    pairs = [(i, c) for i in words for c in syn[i]]
    texts += [s.render({i: c}) for i, c in pairs]
    p = ctx.oracle(texts)
    p0 = ctx.p_clean[y]
    saliency = p0 - p[:len(words), y]
    drop = p0 - p[len(words):, y]
    best, best_drop = {}, {}
    for k, (i, c) in enumerate(pairs):
        if i not in best_drop or drop[k] > best_drop[i]:
            best[i], best_drop[i] = c, float(drop[k])
    sal = np.exp(saliency - saliency.max())
    sal /= sal.sum()
    score = {i: float(sal[k]) * best_drop[i] for k, i in enumerate(words)}
    order = sorted((i for i in words if best_drop[i] > 0), key=lambda i: -score[i])
    edits: dict[int, str] = {}
    for i in order[:ctx.budget]:
        edits[i] = best[i]
        q = ctx.oracle([s.render(edits)])[0]
        if q.argmax() != y:
            return Found(edits, True)
    return Found(edits, False)


class WhiteBox:
    """Gradients of the float model's loss with respect to its hashed-feature embeddings."""

    def __init__(self, bundle: Bundle):
        import keras
        model = bundle.keras_model()
        emb = next((layer for layer in model.layers
                    if type(layer).__name__ == "HashEmbedding"), None)
        if emb is None:
            raise McutextError("hotflip needs a model with a hashed embedding layer")
        self.bundle = bundle
        self.model = model
        self.embedding = emb
        self.table = np.asarray(keras.ops.convert_to_numpy(emb.table), np.float64)
        body = keras.Model(emb.output, model.outputs[0])
        spec = bundle.tokenizer.spec
        self.K, self.L = spec.features_per_word, spec.max_words
        self.rows = 0
        import tensorflow as tf

        def grad(ids, y):
            with tf.GradientTape() as tape:
                e = emb(ids)
                tape.watch(e)
                logits = body(e, training=False)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            return loss, logits, tape.gradient(loss, e)

        self._grad = tf.function(grad, input_signature=[
            tf.TensorSpec([1, spec.seq_len], tf.int32), tf.TensorSpec([1], tf.int32)])
        self._logits = _compiled_logits(bundle)

    def gradient(self, ids: np.ndarray, y: int) -> tuple[float, np.ndarray, np.ndarray]:
        """(loss, logits, d loss / d embeddings [L, K, D]) for one id row."""
        self.rows += 1
        loss, logits, g = self._grad(ids[None, :].astype(np.int32), np.array([y], np.int32))
        g = np.asarray(g)[0].astype(np.float64)
        return float(loss[0]), np.asarray(logits)[0], g.reshape(self.L, self.K, -1)

    def logits(self, texts: list[str]) -> np.ndarray:
        self.rows += len(texts)
        return np.asarray(self._logits(self.bundle.tokenize(texts)), np.float64)

    def word_features(self, word: str) -> np.ndarray:
        return self.bundle.tokenizer.encode(word)[:self.K]


def _cross_entropy(logits: np.ndarray, y: int) -> np.ndarray:
    m = logits.max(axis=1, keepdims=True)
    return (np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]) - logits[:, y]


def attack_hotflip(ctx: Context) -> Found:
    wb, s, y = ctx.white_box, ctx.sentence, ctx.y
    words = s.word_indices(ctx.visible)
    cands: dict[int, list[str]] = {}
    for i in words:
        w = s.tokens[i]
        c = perturb.char_candidates(w, ctx.rng, CHAR_EDITS_PER_KIND)
        c += [x for x in perturb.synonyms(w, HOTFLIP_SYNONYMS) if x not in c]
        if c:
            cands[i] = c
    feats = {(i, c): wb.table[wb.word_features(c)] for i, cs in cands.items() for c in cs}
    edits: dict[int, str] = {}
    rows_before = wb.rows
    for _ in range(ctx.budget):
        ids = ctx.bundle.tokenize([s.render(edits)])[0]
        cur_loss, _, g = wb.gradient(ids, y)
        ids = ids.reshape(wb.L, wb.K)
        scored = []
        for (i, c), f in feats.items():
            if i in edits:
                continue
            gain = float(np.sum(g[i] * (f - wb.table[ids[i]])))
            scored.append((gain, i, c))
        if not scored:
            break
        scored.sort(key=lambda t: -t[0])
        beam = scored[:HOTFLIP_BEAM]
        trial = [s.render({**edits, i: c}) for _, i, c in beam]
        lg = wb.logits(trial)
        losses = _cross_entropy(lg, y)
        flipped = lg.argmax(axis=1) != y
        if flipped.any():
            j = int(np.flatnonzero(flipped)[np.argmax(losses[flipped])])
            edits[beam[j][1]] = beam[j][2]
            return Found(edits, True, {"white_box_queries": wb.rows - rows_before})
        j = int(np.argmax(losses))
        if losses[j] <= cur_loss:
            break
        edits[beam[j][1]] = beam[j][2]
    return Found(edits, False, {"white_box_queries": wb.rows - rows_before})


def _encoding_moves(ctx: Context) -> dict[int, list[str]]:
    """Per editable visible word, one variant for each encoding (feature tuple) its one-edit
    family reaches other than its own; a seeded sample of ADAPTIVE_PER_WORD when more."""
    from .certify import word_moves
    out = {}
    for i in ctx.sentence.word_indices(ctx.visible):
        v = word_moves(ctx.bundle.tokenizer, ctx.sentence.tokens[i]).variants
        if len(v) > ADAPTIVE_PER_WORD:
            keep = np.sort(ctx.rng.choice(len(v), size=ADAPTIVE_PER_WORD, replace=False))
            v = [v[int(k)] for k in keep]
        if v:
            out[i] = v
    return out


def _best_of(ctx: Context, sets: list[dict[int, str]], best: tuple[float, dict]
             ) -> tuple[Found | None, np.ndarray, tuple[float, dict]]:
    """Classify the texts of `sets` (one call); a Found at a label change (lowest true-class
    probability among the flips), the true-class probabilities, and the best set so far."""
    y = ctx.y
    p = ctx.oracle([ctx.sentence.render(e) for e in sets])
    py = p[:, y]
    flipped = p.argmax(axis=1) != y
    if flipped.any():
        j = int(np.flatnonzero(flipped)[np.argmin(py[flipped])])
        return Found(dict(sets[j]), True), py, best
    if len(sets) and py.min() < best[0]:
        j = int(np.argmin(py))
        best = (float(py[j]), dict(sets[j]))
    return None, py, best


def attack_adaptive(ctx: Context) -> Found:
    moves = _encoding_moves(ctx)
    best = (float(ctx.p_clean[ctx.y]), {})
    if not moves:
        return Found({}, False)
    from .certify import count_combinations
    words = list(moves)
    if count_combinations([len(moves[i]) for i in words], ctx.budget) <= ADAPTIVE_EXHAUSTIVE:
        # every combination, fewest words first: what the certification enumerates
        for size in range(1, ctx.budget + 1):
            sets = [dict(zip(sub, vs)) for sub in itertools.combinations(words, size)
                    for vs in itertools.product(*(moves[i] for i in sub))]
            found, _, best = _best_of(ctx, sets, best)
            if found:
                return found
        return Found(best[1], False)
    singles = [{i: v} for i in words for v in moves[i]]
    found, py, best = _best_of(ctx, singles, best)
    if found:
        return found
    # each word's best moves, words by their best move (importance)
    ranked: dict[int, list[tuple[float, str]]] = {i: [] for i in words}
    for e, q in zip(singles, py):
        (i, v), = e.items()
        ranked[i].append((float(q), v))
    top = {i: [v for _, v in sorted(r, key=lambda t: t[0])[:ADAPTIVE_EXPAND]]
           for i, r in ranked.items()}
    order = sorted(words, key=lambda i: min(q for q, _ in ranked[i]))
    beam = [singles[int(j)] for j in np.argsort(py, kind="stable")[:ADAPTIVE_BEAM]]
    for _ in range(1, ctx.budget):
        seen, sets = set(), []
        for e in beam:
            for i in order:
                if i in e:
                    continue
                for v in top[i]:
                    key = frozenset({**e, i: v}.items())
                    if key not in seen:
                        seen.add(key)
                        sets.append({**e, i: v})
        if not sets:
            break
        found, py, best = _best_of(ctx, sets, best)
        if found:
            return found
        beam = [sets[int(j)] for j in np.argsort(py, kind="stable")[:ADAPTIVE_BEAM]]
    return Found(best[1], False)


def attack_char(ctx: Context) -> Found:
    """deepwordbug, then the adaptive attack when it fails: the stronger of the two."""
    found = attack_deepwordbug(ctx)
    if not found.search_success:
        adaptive = attack_adaptive(ctx)
        if adaptive.search_success:
            adaptive.extra["found_by"] = "adaptive"
            return adaptive
    found.extra["found_by"] = "deepwordbug" if found.search_success else None
    return found


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
    from .data import load_split
    from .evaluate import check_labels
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
    from . import progress

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

    from .journal import Journal, digest
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
        from .outputs import write_file   # each file complete or absent
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
