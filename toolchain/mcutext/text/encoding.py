"""How the robust encoding's table is chosen from the training text (docs/tokenizer.md).

The table (mcutext.text.tokenizer.RobustTable) gives every known word a code and lets a typo of a
word reach that word's code. Which words get a code of their own is a trade-off between
*fidelity* (codes that keep apart what the task must tell apart) and *stability* (a word and
its one-edit typos reach few codes). Here:

1. the vocabulary is the training text's words (at least `min_count` times, at most
   `max_vocab` of the most frequent);
2. each word's label distribution, smoothed towards the overall one (`smoothing` pseudo
   examples), gives its informativeness: the KL divergence from the overall distribution
   times the share of the word's evidence that is its own (count / (count + smoothing));
3. the least informative words (`neutral_share` of the vocabulary) share the fallback code
   with every word the table cannot place: moving among them, or to an unknown string, changes
   nothing the model can see;
4. every other word gets a code, and its one-byte deletions go in the table, so that every
   typo of it that is not nearer another code reaches its code;
5. codes: with `clusters` = k, the informative words are grouped into k clusters of similar
   label distributions (k-means on the square roots of the smoothed distributions, weighted
   by count, seeded): a typo that moves a word into a word of its own cluster changes
   nothing, and the model still sees what the words say about the labels. With `clusters`
   = 0 every informative word has a code of its own, and `merge` > 0 lets a word share the
   code of a more informative word one edit away whose distribution is within that
   Jensen-Shannon divergence;
6. a neutral word gets an entry of its own only where the lookup would otherwise give it
   another word's code (keeps the table small).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

import numpy as np

from ..common.errors import McutextError
from .tokenizer import (
    CODE_FALLBACK, MAX_CODES, RobustTable, RobustTokenizer, TokenizerSpec, deletions, robust_codes,
    split_words)


@dataclasses.dataclass(frozen=True)
class EncodingConfig:
    """The recipe's [encoding] section: how the robust table is built (not part of the spec:
    the spec names the table by its sha256)."""

    min_count: int = 1
    max_vocab: int = 20000
    smoothing: float = 3.0
    neutral_share: float = 0.5
    merge: float = 0.0
    clusters: int = 0
    # a word seen fewer times than this is never informative: its label distribution is noise,
    # and a typo of a common word must not reach it
    informative_min_count: int = 1
    # exposure of a word: how often the vocabulary's other words one edit away occur, per
    # occurrence of the word itself (an attacker turns those into it with one edit: "is" ->
    # "us", "would" -> "world"). Informativeness is divided by 1 + exposure / exposure_scale
    # before the most informative words are chosen; 0 = exposure not counted
    exposure_scale: float = 0.0
    # neutral words take their typos too (with the fallback code): a typo between a neutral
    # and an informative word is then ambiguous instead of informative, so an edit cannot
    # turn a neutral word into an informative one through a typo (only into a real word)
    guard_neutral: bool = False
    max_codes: int = 8192
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.neutral_share < 1.0:
            raise McutextError(f"encoding.neutral_share must be in [0, 1), got "
                               f"{self.neutral_share}")
        if not 3 <= self.max_codes <= MAX_CODES:
            raise McutextError(f"encoding.max_codes must be in [3, {MAX_CODES}], got "
                               f"{self.max_codes}")


@dataclasses.dataclass
class Vocabulary:
    words: list[bytes]          # by descending count, then bytes
    counts: np.ndarray          # [V]
    label_counts: np.ndarray    # [V, C]: sentences of each label the word occurs in
    prior: np.ndarray           # [C]


def vocabulary(texts: Sequence[str], y: np.ndarray, n_labels: int, spec: TokenizerSpec,
               cfg: EncodingConfig) -> Vocabulary:
    cnt: collections.Counter = collections.Counter()
    per_label: dict[bytes, np.ndarray] = {}
    prior = np.zeros(n_labels)
    for text, label in zip(texts, y):
        prior[label] += 1
        ws = split_words(text.encode("utf-8"), spec.max_word_bytes, spec.max_words)
        cnt.update(ws)
        for w in set(ws):
            row = per_label.get(w)
            if row is None:
                row = per_label[w] = np.zeros(n_labels)
            row[label] += 1
    words = sorted((w for w, c in cnt.items() if c >= cfg.min_count),
                   key=lambda w: (-cnt[w], w))[:cfg.max_vocab]
    return Vocabulary(words, np.array([cnt[w] for w in words], np.float64),
                      np.array([per_label[w] for w in words]).reshape(len(words), n_labels),
                      prior / max(prior.sum(), 1.0))


def _smoothed(v: Vocabulary, a: float) -> np.ndarray:
    lc = v.label_counts
    return (lc + a * v.prior) / (lc.sum(1, keepdims=True) + a)


def informativeness(v: Vocabulary, smoothing: float) -> np.ndarray:
    p = _smoothed(v, smoothing)
    q = np.maximum(v.prior, 1e-12)
    kl = np.sum(p * np.log(np.maximum(p, 1e-12) / q), axis=1)
    n = v.label_counts.sum(1)
    return kl * n / (n + smoothing)


def exposure(v: Vocabulary) -> np.ndarray:
    """Per word, the summed counts of the vocabulary's words one edit away (one deletion each,
    the table's relation) over the word's own count."""
    index = {w: i for i, w in enumerate(v.words)}
    nb = one_edit_neighbours(v.words)
    return np.array([sum(v.counts[index[u]] for u in nb.get(w, ())) / v.counts[i]
                     for i, w in enumerate(v.words)])


def _js(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2

    def kl(a, b):
        return float(np.sum(a * np.log(np.maximum(a, 1e-12) / np.maximum(b, 1e-12))))
    return (kl(p, m) + kl(q, m)) / 2


def kmeans(x: np.ndarray, w: np.ndarray, k: int, seed: int, iters: int = 30) -> np.ndarray:
    """Weighted k-means (k-means++ start from a seeded generator); cluster ids renumbered by
    first appearance, empty clusters dropped."""
    if len(x) == 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    centers = [x[int(rng.choice(len(x), p=w / w.sum()))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = w * d2
        if p.sum() <= 0:
            break
        centers.append(x[int(rng.choice(len(x), p=p / p.sum()))])
        d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
    c = np.array(centers)
    xx = (x ** 2).sum(1, keepdims=True)
    for _ in range(iters):
        lab = np.argmin(xx - 2 * x @ c.T + (c ** 2).sum(1), axis=1)
        new = c.copy()
        for j in range(len(c)):
            m = lab == j
            if m.any():
                new[j] = np.average(x[m], axis=0, weights=w[m])
        if np.allclose(new, c):
            break
        c = new
    lab = np.argmin(xx - 2 * x @ c.T + (c ** 2).sum(1), axis=1)
    _, first = np.unique(lab, return_index=True)
    renum = {int(lab[i]): n for n, i in enumerate(sorted(first))}
    return np.array([renum[int(v)] for v in lab], np.int64)


def one_edit_neighbours(words: Sequence[bytes]) -> dict[bytes, set[bytes]]:
    """Pairs of words one deletion each apart (the relation the table's lookup uses)."""
    by_key: dict[bytes, set[bytes]] = collections.defaultdict(set)
    for w in words:
        by_key[w].add(w)
        for d in deletions(w):
            by_key[d].add(w)
    out: dict[bytes, set[bytes]] = collections.defaultdict(set)
    for group in by_key.values():
        if len(group) > 1:
            for w in group:
                out[w] |= group - {w}
    return out


def build_table(texts: Sequence[str], y: np.ndarray, n_labels: int, spec: TokenizerSpec,
                cfg: EncodingConfig) -> tuple[RobustTable, dict]:
    """The table for a robust spec (whose buckets, table fields are ignored) from labelled
    training text; returns it and a summary for the manifest."""
    v = vocabulary(texts, y, n_labels, spec, cfg)
    if not v.words:
        raise McutextError("the training text has no words to build the robust encoding from")
    info = informativeness(v, cfg.smoothing)
    info[v.counts < cfg.informative_min_count] = -1.0
    if cfg.exposure_scale > 0:
        info = np.where(info > 0, info / (1.0 + exposure(v) / cfg.exposure_scale), info)
    order = np.argsort(-info, kind="stable")
    n_keep = int(round(len(v.words) * (1.0 - cfg.neutral_share)))
    n_keep = min(n_keep, cfg.max_codes - 2, int(np.sum(info > 0)))
    keep = [int(i) for i in order[:n_keep]]
    code_of: dict[bytes, int] = {}
    dist = _smoothed(v, cfg.smoothing)
    index = {w: i for i, w in enumerate(v.words)}
    if cfg.clusters > 0:
        labels_of = kmeans(np.sqrt(dist[keep]), v.counts[keep], min(cfg.clusters, len(keep)),
                           cfg.seed)
        for i, c in zip(keep, labels_of):
            code_of[v.words[i]] = 2 + int(c)
        codes = 2 + int(labels_of.max()) + 1 if len(keep) else 2
    elif cfg.merge > 0:
        # most informative first: a weaker neighbour with a similar distribution joins it
        kept = {v.words[i] for i in keep}
        nb = one_edit_neighbours(sorted(kept))
        next_code = 2
        for i in keep:
            w = v.words[i]
            if w in code_of:
                continue
            code_of[w] = next_code
            for u in sorted(nb.get(w, ())):
                if u not in code_of and _js(dist[i], dist[index[u]]) <= cfg.merge:
                    code_of[u] = next_code
            next_code += 1
        codes = next_code
    else:
        for k, i in enumerate(keep):
            code_of[v.words[i]] = 2 + k
        codes = 2 + len(keep)
    informative = sorted(code_of)
    table = RobustTable.build(codes, code_of, informative, spec.seed)
    probe_spec = dataclasses.replace(spec, buckets=codes, table="", typo_features=False)
    neutral = [w for w in v.words if w not in code_of]
    guarded: list[bytes] = []
    if cfg.guard_neutral and neutral:
        # a neutral word one of whose typos reaches an informative code takes its typos too
        # (as the fallback): such a typo is then ambiguous, and falls back
        probe = RobustTokenizer(probe_spec, table)
        reach = reachable_codes(probe, neutral)
        own = dict(zip(neutral, robust_codes(probe, neutral).tolist()))
        # (a neutral word the lookup sends elsewhere is pinned below: what its typos reach
        # as "its own" code is a pull too)
        guarded = [w for w in neutral
                   if own[w] != CODE_FALLBACK or any(c != CODE_FALLBACK for c in reach[w])]
    # neutral words that the lookup would send to another word's code get their own entry
    probe, guard_set = RobustTokenizer(probe_spec, table), set(guarded)
    pinned = {w: CODE_FALLBACK for w in neutral
              if w in guard_set or probe.code(w) != CODE_FALLBACK}
    table = RobustTable.build(codes, {**code_of, **pinned}, informative + guarded, spec.seed)
    if guarded:
        # what the guard cannot reach (a typo with no deletion in common with the word, as a
        # one-letter word's substitutions): that very string is pinned to the fallback
        tok = RobustTokenizer(probe_spec, table)
        known, m = set(v.words), spec.max_word_bytes
        typos = sorted({t[:m] for w in guarded for t in _variants(w)} - known)
        left = [t for t, c in zip(typos, robust_codes(tok, typos)) if c != CODE_FALLBACK]
        if left:
            pinned.update((t, CODE_FALLBACK) for t in left)
            table = RobustTable.build(codes, {**code_of, **pinned}, informative + guarded,
                                      spec.seed)
    summary = {"vocabulary": len(v.words), "codes": codes, "informative_words": len(code_of),
               "pinned_neutral_words": len(pinned), "guarded_neutral_words": len(guarded),
               "keys": int(len(table.keys)), "table_bytes": len(table.to_bytes())}
    return table, summary


# --- what a word's one-edit variants reach -------------------------------------------------
def _variants(w: bytes) -> list[bytes]:
    """The one-edit variants of a lower-cased word under the attacks' family
    (mcutext.text.perturb.edit_family, applied to the word's characters), as bytes."""
    from .perturb import edit_family
    s = w.decode("utf-8", "surrogateescape")
    return sorted({v.encode("utf-8", "surrogateescape") for v in edit_family(s)} - {w})


def reachable_codes(tok, words, chunk: int = 200_000) -> dict[bytes, tuple[int, ...]]:
    """For each lower-cased word, the codes other than its own that one edit reaches (the
    robust tokenizer; words are truncated as the tokenizer truncates them)."""
    from .tokenizer import robust_codes
    m = tok.spec.max_word_bytes
    words = sorted(set(words))
    own = robust_codes(tok, [w[:m] for w in words])
    flat, owner = [], []
    for k, w in enumerate(words):
        if any(97 <= b <= 122 for b in w):   # the attacks edit words with a letter only
            vs = _variants(w)
            flat.extend(v[:m] for v in vs)
            owner.extend([k] * len(vs))
    owner_a = np.array(owner, np.int64)
    codes = np.concatenate([robust_codes(tok, flat[i:i + chunk])
                            for i in range(0, len(flat), chunk)]) if flat else np.zeros(0, int)
    out: dict[bytes, set] = {w: set() for w in words}
    for k, c in zip(owner_a, codes):
        if c != own[k]:
            out[words[k]].add(int(c))
    return {w: tuple(sorted(s)) for w, s in out.items()}
