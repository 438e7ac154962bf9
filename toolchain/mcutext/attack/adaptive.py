"""The adaptive attack, which knows the tokenizer: each word's one-edit variants grouped by
the encoding they give, searched exhaustively or by beam; and `char`, the stronger of it and
deepwordbug per sentence.
"""

from __future__ import annotations

import itertools

import numpy as np

from .catalog import ADAPTIVE_BEAM, ADAPTIVE_EXHAUSTIVE, ADAPTIVE_EXPAND, ADAPTIVE_PER_WORD
from .search import Context, Found, attack_deepwordbug


def _encoding_moves(ctx: Context) -> dict[int, list[str]]:
    """Per editable visible word, one variant for each encoding (feature tuple) its one-edit
    family reaches other than its own; a seeded sample of ADAPTIVE_PER_WORD when more."""
    from .moves import word_moves
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
    from .moves import count_combinations
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
