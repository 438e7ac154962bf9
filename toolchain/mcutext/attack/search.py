"""The black-box word searches: leave-one-out importance, greedy replacement, and the
deepwordbug, typo and pwws attacks built on them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..int8.bundle import Bundle
from ..text import perturb
from ..text.perturb import Sentence
from .catalog import CHAR_EDITS_PER_KIND, PWWS_MAX_SYNONYMS, TYPO_MAX_CANDIDATES
from .classifiers import Oracle


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
    white_box: object | None = None   # a whitebox.WhiteBox, for hotflip


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
