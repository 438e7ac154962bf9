"""The edits a certificate (and the adaptive attack) ranges over: per word, its one-edit
variants grouped by the hashed features they give, and the combinations of at most k edited
words as rows of token ids.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from ..common.errors import McutextError
from ..text import perturb
from ..text.perturb import Sentence
from ..text.tokenizer import CODE_FALLBACK, Tokenizer

CHUNK = 4096            # rows per batch of the int8 model

# Which of the family's moves a certificate allows. "family": all of them. The others are
# diagnostics. Two are for the robust encoding, where a word the model discounts has the fallback
# code: "no-injection", a word with the fallback code is never moved (an edit can only
# change or drop an informative word); "deletion", in addition an informative word can only
# be moved to the fallback (an edit can only drop it). Each is a subset of the family, so a
# witness under it is a real attack, and its certified accuracy bounds the family's from above.
# "real-words" (any encoding): an edit can only turn a word into another real word of the
# task's text (`lexicon`), the moves no table can undo without merging words; its certified
# accuracy bounds from above what any table that places every other typo perfectly could
# certify for the same model.
# "typos" (any encoding): an edit is one of Pruthi et al.'s internal typos
# (perturb.typo_family: first and last characters kept, keyboard-neighbour substitutions), the
# narrower family robust encodings were first certified against.
THREATS = ("family", "no-injection", "deletion", "real-words", "typos")
ROBUST_THREATS = ("no-injection", "deletion")
# the real words: the words of the bundle's training split seen at least this many times (a
# general word list would add abbreviations and letters, "nad", "j", that a table may as well
# read as typos)
LEXICON_MIN_COUNT = 3


# --- what each word can reach -------------------------------------------------------------
@dataclasses.dataclass
class Moves:
    """The feature tuples one position can be moved to by one edit, other than its own, and
    for each a variant of the word that reaches it (the first in `edit_family` order)."""

    index: int
    tuples: np.ndarray          # int32[m, features_per_word]
    variants: list[str]

    def __len__(self) -> int:
        return len(self.variants)


def word_moves(tokenizer: Tokenizer, token: str, index: int = 0,
               lexicon: frozenset[str] | None = None, typos: bool = False) -> Moves:
    """Group the edit family of `token` (a word of a Sentence, in its own case) by the feature
    tuple the tokenizer gives each variant; the word's own tuple is left out. A variant
    must stay one word of the tokenizer (the family only makes word characters). With a
    `lexicon` (lower-case words), only the variants in it count; with `typos`, only the
    internal typos (perturb.typo_family)."""
    tuples, variants = _grouped_family(tokenizer, token, lexicon, typos)
    return Moves(index, tuples, list(variants))


@functools.lru_cache(maxsize=1 << 14)
def _grouped_family(tokenizer: Tokenizer, token: str, lexicon: frozenset[str] | None = None,
                    typos: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """(int32[m, F] tuples other than the token's own, a variant for each); cached, since
    the same words come back in sentence after sentence (callers do not modify them)."""
    own = _one_word(tokenizer, token)
    seen: dict[tuple[int, ...], str] = {own: token}
    for v in (perturb.typo_family if typos else perturb.edit_family)(token):
        if lexicon is not None and v.lower() not in lexicon:
            continue
        t = _one_word(tokenizer, v)
        if t not in seen:
            seen[t] = v
    del seen[own]
    F = tokenizer.spec.features_per_word
    arr = np.array(list(seen), dtype=np.int32).reshape(len(seen), F)
    arr.flags.writeable = False
    return arr, tuple(seen.values())


def _one_word(tokenizer: Tokenizer, token: str) -> tuple[int, ...]:
    words = tokenizer.words(token)
    if len(words) != 1:
        raise McutextError(f"the tokenizer splits {token!r} into {len(words)} words; the "
                           "certification needs edits that keep one word one word")
    return tuple(int(x) for x in tokenizer.word_features(words[0]))


def check_threat(threat: str, tokenizer: Tokenizer, where: str = "this tokenizer") -> None:
    """Refuses an unknown threat, and one of ROBUST_THREATS without the robust encoding (its
    fallback code is what tells a discounted word)."""
    if threat not in THREATS:
        raise McutextError(f"unknown threat {threat!r}: one of {', '.join(THREATS)}")
    if threat in ROBUST_THREATS and not tokenizer.spec.robust:
        raise McutextError(f"the threat {threat!r} needs the robust encoding: {where} uses "
                           "the hashing tokenizer")


def lexicon(train_texts, tokenizer: Tokenizer, min_count: int = LEXICON_MIN_COUNT
            ) -> frozenset[str]:
    """The real words of the "real-words" threat: the words of `train_texts` (as the tokenizer
    splits them, lower-case) seen at least `min_count` times."""
    import collections
    counts: collections.Counter = collections.Counter()
    for text in train_texts:
        counts.update(w.decode("utf-8", "replace") for w in tokenizer.words(text))
    return frozenset(w for w, c in counts.items() if c >= min_count)


def restrict(m: Moves, own: tuple[int, ...], threat: str) -> Moves:
    """The moves of one position that `threat` allows; `own` is its tuple. Only
    ROBUST_THREATS narrow moves here ("real-words" and "typos" narrow the variants the moves
    are made of, `word_moves`)."""
    if threat not in ROBUST_THREATS:
        return m
    fallback = (CODE_FALLBACK,)
    if own == fallback:
        return Moves(m.index, m.tuples[:0], [])
    if threat == "no-injection":
        return m
    keep = [j for j, t in enumerate(m.tuples) if tuple(int(x) for x in t) == fallback]
    return Moves(m.index, m.tuples[keep], [m.variants[j] for j in keep])


def sentence_moves(tokenizer: Tokenizer, text: str, threat: str = "family",
                   lexicon: frozenset[str] | None = None) -> tuple[np.ndarray, list[Moves]]:
    """The text's id row and the moves of each editable word the model sees (those `threat`
    allows; "real-words" needs the `lexicon`). The row built from the words' tuples must be the
    tokenizer's own encoding of the text (that is what lets rows of edited texts be built
    without re-tokenizing)."""
    check_threat(threat, tokenizer)
    if (threat == "real-words") != (lexicon is not None):
        raise McutextError("internal error: the real-words threat, and only it, needs a "
                           "lexicon")
    s = Sentence.parse(text)
    words = tokenizer.words(text)
    F = tokenizer.spec.features_per_word
    row = tokenizer.encode(text)
    built = np.zeros_like(row)
    for i, w in enumerate(words):
        built[i * F:(i + 1) * F] = tokenizer.word_features(w)
    if not np.array_equal(row, built):
        raise McutextError("the tokenizer's encoding is not its words' features side by side; "
                           "the certification cannot build edited rows")
    moves = []
    for i in s.word_indices(len(words)):
        own = tuple(int(x) for x in row[i * F:(i + 1) * F])
        if _one_word(tokenizer, s.tokens[i]) != own:
            raise McutextError(f"word {i} of {text!r} does not encode alone as in the sentence")
        m = restrict(word_moves(tokenizer, s.tokens[i], i, lexicon, threat == "typos"), own,
                     threat)
        if len(m):
            moves.append(m)
    return row, moves


def count_combinations(sizes: list[int], k: int) -> int:
    """Rows with 1..k positions moved, each to one of its sizes[i] tuples: the elementary
    symmetric sums e_1 + ... + e_k of the sizes (exact integers)."""
    e = [1] + [0] * k
    for m in sizes:
        for j in range(k, 0, -1):
            e[j] += e[j - 1] * m
    return sum(e[1:])


def combination_rows(row: np.ndarray, moves: list[Moves], k: int, features_per_word: int,
                     chunk: int = CHUNK):
    """Every row with 1..k positions moved, fewer positions first, in batches of about
    `chunk` rows (small groups of positions packed together): (int32[b, seq_len], segments),
    a segment (first row, positions in `moves`, tuple index arrays) per group of rows;
    `row_choice` reads one row's choice back."""
    F = features_per_word
    parts, segments, n = [], [], 0
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(len(moves)), size):
            dims = [len(moves[p]) for p in subset]
            total = int(np.prod(dims))
            for a in range(0, total, chunk):
                flat = np.arange(a, min(a + chunk, total))
                pick = np.unravel_index(flat, dims)
                rows = np.repeat(row[None], len(flat), axis=0)
                for p, sel in zip(subset, pick):
                    w = moves[p].index
                    rows[:, w * F:(w + 1) * F] = moves[p].tuples[sel]
                parts.append(rows)
                segments.append((n, subset, pick))
                n += len(flat)
                if n >= chunk:
                    yield np.concatenate(parts), segments
                    parts, segments, n = [], [], 0
    if parts:
        yield np.concatenate(parts), segments


def row_choice(segments, r: int) -> list[tuple[int, int]]:
    """[(position in `moves`, tuple index), ...] of row r of a combination_rows batch."""
    for start, subset, pick in reversed(segments):
        if r >= start:
            return [(p, int(sel[r - start])) for p, sel in zip(subset, pick)]
    raise IndexError(r)
