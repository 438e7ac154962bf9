"""Seeded character- and word-level perturbations of text.

Shared by the attack suite (mcutext.attack) and by the training-time adversary
(mcutext.train.objective), which calls the same functions with its own seeds. Every function is
pure: the only randomness comes from the `numpy.random.Generator` passed in, so the same
seed and the same text always give the same result.

Words are the tokenizer's words (mcutext.text.tokenizer): maximal runs of ASCII letters, digits,
the apostrophe and non-ASCII characters. Every other non-space ASCII character is a
one-character punctuation token. Edits replace a word in place and keep every other
character of the sentence (spacing, punctuation, case of the other words) as it was. Edits
only ever produce word characters, so an edited sentence has the same tokens, in the same
positions, as the original.

Primitives
    char edits on a word     swap adjacent characters, substitute, delete, insert,
                             QWERTY-neighbour substitution (`char_edit`, `char_candidates`);
                             every one-edit variant of a word (`edit_family`)
    typos (Pruthi et al.)    one edit of an *internal* character: swap two adjacent internal
                             characters, drop one, add one, or replace one by a keyboard
                             neighbour; first and last characters stay (`typo`,
                             `typo_candidates`)
    synonyms                 WordNet lemmas of the synsets in which the word form itself is a
                             lemma, single words only, case matched (`synonyms`); Debian's
                             `wordnet-base` read with nltk
    augmentation             `random_perturbation(text, rng, kind, max_words)`
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..common.errors import McutextError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
CHAR_EDITS = ("swap", "substitute", "delete", "insert")
TYPO_EDITS = ("swap", "drop", "add", "keyboard")

# --- keyboard -------------------------------------------------------------------------------
_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_map() -> dict[str, str]:
    """Neighbours on a staggered QWERTY layout: left and right on the same row; on the row
    above, the keys at the same and the next column; on the row below, the keys at the
    previous and the same column (each row sits half a key to the right of the one above)."""
    pos = {c: (r, i) for r, row in enumerate(_QWERTY_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        cells = [(r, i - 1), (r, i + 1), (r - 1, i), (r - 1, i + 1), (r + 1, i - 1), (r + 1, i)]
        out[c] = "".join(_QWERTY_ROWS[rr][ii] for rr, ii in cells
                         if 0 <= rr < 3 and 0 <= ii < len(_QWERTY_ROWS[rr]))
    return out


KEYBOARD = _keyboard_map()


def keyboard_neighbours(c: str) -> str:
    """QWERTY neighbours of a letter, in the letter's case; '' for anything else."""
    n = KEYBOARD.get(c.lower(), "")
    return n.upper() if c.isupper() else n


def _like(c: str, model: str) -> str:
    """`c` in the case of `model` (so edits of 'Movie' stay capitalized)."""
    return c.upper() if model.isupper() else c


# --- the five character edits ---------------------------------------------------------------
def swap_chars(word: str, i: int) -> str:
    """Swap characters i and i+1."""
    if not 0 <= i < len(word) - 1:
        raise ValueError(f"swap position {i} out of range for {word!r}")
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def substitute_char(word: str, i: int, c: str) -> str:
    if not 0 <= i < len(word):
        raise ValueError(f"substitute position {i} out of range for {word!r}")
    return word[:i] + _like(c, word[i]) + word[i + 1:]


def delete_char(word: str, i: int) -> str:
    if not 0 <= i < len(word) or len(word) < 2:
        raise ValueError(f"cannot delete position {i} of {word!r}")
    return word[:i] + word[i + 1:]


def insert_char(word: str, i: int, c: str) -> str:
    """Insert c before position i (i == len(word) appends)."""
    if not 0 <= i <= len(word):
        raise ValueError(f"insert position {i} out of range for {word!r}")
    return word[:i] + _like(c, word[max(i - 1, 0)] if word else c) + word[i:]


def _other_letter(rng: np.random.Generator, avoid: str) -> str:
    c = LETTERS[int(rng.integers(26))]
    return c if c != avoid.lower() else LETTERS[(LETTERS.index(c) + 1) % 26]


def char_edit(word: str, rng: np.random.Generator, kind: str | None = None) -> str:
    """One random character edit of `kind` (swap, substitute, delete, insert, keyboard; a
    random one of the first four if None) anywhere in the word. Returns the word unchanged
    when the edit is impossible (a 1-character word cannot be swapped or shortened)."""
    if kind is None:
        kind = CHAR_EDITS[int(rng.integers(len(CHAR_EDITS)))]
    n = len(word)
    if n == 0:
        return word
    if kind == "swap":
        # swapping two equal letters would change nothing: pick among distinct pairs
        pos = [i for i in range(n - 1) if word[i] != word[i + 1]]
        return swap_chars(word, pos[int(rng.integers(len(pos)))]) if pos else word
    if kind == "substitute":
        i = int(rng.integers(n))
        return substitute_char(word, i, _other_letter(rng, word[i]))
    if kind == "delete":
        return delete_char(word, int(rng.integers(n))) if n >= 2 else word
    if kind == "insert":
        return insert_char(word, int(rng.integers(n + 1)), LETTERS[int(rng.integers(26))])
    if kind == "keyboard":
        pos = [i for i in range(n) if keyboard_neighbours(word[i])]
        if not pos:
            return word
        i = pos[int(rng.integers(len(pos)))]
        nb = keyboard_neighbours(word[i])
        return word[:i] + nb[int(rng.integers(len(nb)))] + word[i + 1:]
    raise ValueError(f"unknown char edit {kind!r} (use one of {CHAR_EDITS + ('keyboard',)})")


def char_candidates(word: str, rng: np.random.Generator, per_kind: int = 2,
                    kinds: Sequence[str] = CHAR_EDITS) -> list[str]:
    """Up to `per_kind` random edits of each kind, distinct and different from the word, in
    a deterministic order (the DeepWordBug candidate set for one word)."""
    seen = {word}
    out = []
    for kind in kinds:
        for _ in range(per_kind):
            w = char_edit(word, rng, kind)
            if w not in seen:
                seen.add(w)
                out.append(w)
    return out


def edit_family(word: str) -> list[str]:
    """Every word one `char_edit` can make of `word`, each once, in a fixed order: adjacent
    swaps of two different characters, substitutions of any character by any of the 26
    letters (in the replaced character's case; the QWERTY-neighbour edits are among them),
    deletions (words of 2+ characters) and insertions of any letter at any position (in the
    case of the character before it, the first character's at position 0). The word itself
    is not in the family. This is the family the certification (mcutext.attack.certify) enumerates
    and the adaptive attack searches."""
    n = len(word)

    def variants():
        for i in range(n - 1):
            if word[i] != word[i + 1]:
                yield swap_chars(word, i)
        for i in range(n):
            for c in LETTERS:
                yield substitute_char(word, i, c)
        if n >= 2:
            for i in range(n):
                yield delete_char(word, i)
        if n:
            for i in range(n + 1):
                for c in LETTERS:
                    yield insert_char(word, i, c)
    return _distinct(word, variants())


def _distinct(word: str, variants) -> list[str]:
    """`variants` in their order, each once, the word itself left out."""
    return [v for v in dict.fromkeys(variants) if v != word]


# --- Pruthi-style typos: one edit of an internal character ----------------------------------
def _internal_typos(word: str, inserted) -> list[str]:
    """The one-internal-edit typos of a word of 3+ characters, each once, in a fixed order:
    swaps of two adjacent internal characters, drops of one internal character,
    keyboard-neighbour substitutions of an internal letter, then at each internal gap i
    (1..len-1) the letters `inserted(i)` added there."""
    n = len(word)

    def variants():
        for i in range(1, n - 2):                  # swap internal i, i+1 (both internal)
            yield swap_chars(word, i)
        for i in range(1, n - 1):                  # drop internal i
            yield delete_char(word, i)
        for i in range(1, n - 1):                  # keyboard neighbour of internal i
            for c in keyboard_neighbours(word[i]):
                yield word[:i] + c + word[i + 1:]
        for i in range(1, n):                      # add letters in an internal gap
            for c in inserted(i):
                yield insert_char(word, i, c)
    return _distinct(word, variants())


def typo_candidates(word: str, rng: np.random.Generator | None = None,
                    max_candidates: int | None = None) -> list[str]:
    """Every one-internal-edit typo of the word: all swaps of two adjacent internal
    characters, all drops of one internal character, all keyboard-neighbour substitutions of
    an internal letter, and one added letter at each internal gap (the letter drawn from
    `rng`; with no rng, a keyboard neighbour of the character before the gap). The first
    and last characters never change, so words shorter than 3 characters have no typos.
    With `max_candidates`, a seeded sample of that many, in the enumeration order."""
    if len(word) < 3:
        return []

    def one_letter(i: int) -> str:
        if rng is not None:
            return LETTERS[int(rng.integers(26))]
        return (keyboard_neighbours(word[i - 1].lower()) or "e")[0]
    out = _internal_typos(word, one_letter)
    if max_candidates is not None and len(out) > max_candidates:
        if rng is None:
            return out[:max_candidates]
        keep = np.sort(rng.choice(len(out), size=max_candidates, replace=False))
        out = [out[int(i)] for i in keep]
    return out


def typo_family(word: str) -> list[str]:
    """Every one-internal-edit typo of the word, each once, in a fixed order: swaps of two
    adjacent internal characters, drops of an internal character, keyboard-neighbour
    substitutions of an internal letter, and insertions of any of the 26 letters in an
    internal gap (in the case of the character before it). First and last characters stay;
    words shorter than 3 characters have none. A subset of `edit_family` (the typos of
    Pruthi et al., the family robust encodings were first certified against)."""
    if len(word) < 3:
        return []
    return _internal_typos(word, lambda i: LETTERS)


def typo(word: str, rng: np.random.Generator, kind: str | None = None) -> str:
    """One random Pruthi-style typo (swap, drop, add, keyboard; random if None); the word
    itself when it has no internal character to edit."""
    n = len(word)
    if n < 3:
        return word
    if kind is None:
        kind = TYPO_EDITS[int(rng.integers(len(TYPO_EDITS)))]
    if kind == "swap":
        pos = [i for i in range(1, n - 2) if word[i] != word[i + 1]]
        return swap_chars(word, pos[int(rng.integers(len(pos)))]) if pos else word
    if kind == "drop":
        return delete_char(word, 1 + int(rng.integers(n - 2)))
    if kind == "add":
        return insert_char(word, 1 + int(rng.integers(n - 1)), LETTERS[int(rng.integers(26))])
    if kind == "keyboard":
        pos = [i for i in range(1, n - 1) if keyboard_neighbours(word[i])]
        if not pos:
            return word
        i = pos[int(rng.integers(len(pos)))]
        nb = keyboard_neighbours(word[i])
        return word[:i] + nb[int(rng.integers(len(nb)))] + word[i + 1:]
    raise ValueError(f"unknown typo kind {kind!r} (use one of {TYPO_EDITS})")


# --- sentences as tokens and the gaps between them ------------------------------------------
def _is_word_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "'") or not c.isascii()


def _is_space(c: str) -> bool:
    return c.isascii() and (ord(c) <= 0x20 or ord(c) == 0x7F)


@dataclasses.dataclass(frozen=True)
class Sentence:
    """A text as tokens and the gaps around them: text == gaps[0] + tokens[0] + gaps[1] +
    ... + tokens[-1] + gaps[-1]. Tokens are the tokenizer's words and punctuation tokens, in
    the same order, so token i here is word i of the model's input."""

    tokens: tuple[str, ...]
    gaps: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Sentence":
        tokens, gaps = [], []
        i, n, gap_start = 0, len(text), 0
        while i < n:
            c = text[i]
            if _is_space(c):
                i += 1
                continue
            gaps.append(text[gap_start:i])
            if _is_word_char(c):
                j = i
                while j < n and _is_word_char(text[j]):
                    j += 1
            else:
                j = i + 1
            tokens.append(text[i:j])
            i = gap_start = j
        gaps.append(text[gap_start:])
        return cls(tuple(tokens), tuple(gaps))

    def __len__(self) -> int:
        return len(self.tokens)

    def is_word(self, i: int) -> bool:
        return _is_word_char(self.tokens[i][0])

    def editable(self, i: int) -> bool:
        """A word with at least one ASCII letter (numbers and punctuation are left alone)."""
        t = self.tokens[i]
        return self.is_word(i) and any(c.isascii() and c.isalpha() for c in t)

    def word_indices(self, limit: int | None = None, editable: bool = True) -> list[int]:
        """Indices of (editable) words among the first `limit` tokens."""
        end = len(self.tokens) if limit is None else min(limit, len(self.tokens))
        test = self.editable if editable else self.is_word
        return [i for i in range(end) if test(i)]

    def num_words(self) -> int:
        return sum(1 for i in range(len(self.tokens)) if self.is_word(i))

    def render(self, replace: dict[int, str] | None = None) -> str:
        """The text with tokens replaced ({index: new word}); '' deletes a token (its gaps
        stay, so the rest of the sentence is byte-for-byte unchanged)."""
        replace = replace or {}
        parts = [self.gaps[0]]
        for i, t in enumerate(self.tokens):
            parts.append(replace.get(i, t))
            parts.append(self.gaps[i + 1])
        return "".join(parts)


def replace_words(text: str, replace: dict[int, str]) -> str:
    """Replace tokens of `text` by index (see Sentence), keeping every other character."""
    return Sentence.parse(text).render(replace)


# --- WordNet --------------------------------------------------------------------------------
WORDNET_HINT = "apt-get install wordnet-base"
# The lexicographer file names of WordNet 3.0 (documented in lexnames(5WN)). Debian's
# wordnet-base omits the `lexnames` file that nltk's reader opens first, so it is supplied
# from here.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()
_LEX_POS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_WORDNET_FILES = ("index.noun", "index.verb", "index.adj", "index.adv",
                  "data.noun", "data.verb", "data.adj", "data.adv")

# Function words are never substituted: their "synonyms" in WordNet are unrelated senses
# ("was" -> "Washington", "it" -> "information_technology").
STOP_WORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't
doing don't down during each few for from further had hadn't has hasn't have haven't having he
he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if
in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
once only or other ought our ours ourselves out over own same shan't she she'd she'll she's
should shouldn't so some such than that that's the their theirs them themselves then there
there's these they they'd they'll they're they've this those through to too under until up
very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
which while who who's whom why why's will with won't would wouldn't you you'd you'll you're
you've your yours yourself yourselves 's n't 're 've 'll 'd 'm also just yet even still ever
""".split())


# Debian's wordnet-base puts the files directly in /usr/share/wordnet; WordNet's own install
# (and some distributions) use a dict/ subfolder.
WORDNET_DIRS = (Path("/usr/share/wordnet"), Path("/usr/share/wordnet/dict"))


def wordnet_dir() -> Path:
    """The folder holding WordNet's index.* and data.* files: $MCUTEXT_WORDNET_DIR, else
    the first of WORDNET_DIRS that has them."""
    env = os.environ.get("MCUTEXT_WORDNET_DIR")
    candidates = [Path(env)] if env else list(WORDNET_DIRS)
    for c in candidates:
        if all((c / f).is_file() for f in _WORDNET_FILES):
            return c
    where = ", ".join(str(c) for c in candidates)
    raise McutextError(f"WordNet not found (looked for index.noun, data.noun, ... in {where})",
                       hint=WORDNET_HINT)


@functools.lru_cache(maxsize=1)
def wordnet():
    """nltk's WordNet reader over the Debian files; loaded once (about 1 s)."""
    root = wordnet_dir()
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise McutextError("the word-level attacks need nltk",
                           hint="pip install nltk (the project's 'attack' extra)") from None
    lexnames = "".join(f"{i:02d}\t{name}\t{_LEX_POS[name.split('.')[0]]}\n"
                       for i, name in enumerate(_LEXNAMES))

    class _Reader(WordNetCorpusReader):
        def open(self, fileid):
            if fileid == "lexnames":
                return io.StringIO(lexnames)
            return super().open(fileid)

        def map_wn(self, version="wordnet"):
            # only the English WordNet is used: no mapping to other WordNet versions
            return None

    # nltk reads corpora only from folders on its data path
    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _Reader(str(root), None)
    except (OSError, LookupError, ValueError) as e:
        raise McutextError(f"{root}: cannot read WordNet ({e})", hint=WORDNET_HINT) from None


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


@functools.lru_cache(maxsize=1 << 16)
def _synonyms_lower(word: str) -> tuple[str, ...]:
    if word in STOP_WORDS or not word.isalpha() or len(word) < 2:
        return ()
    out: list[str] = []
    for synset in wordnet().synsets(word):
        names = [n.lower() for n in synset.lemma_names()]
        # only senses in which this very form is a lemma: "films" is not reached through
        # "film", so a substitute keeps the word's inflection ("stunning" gives
        # "sensational", never the verb sense's "daze")
        if word not in names:
            continue
        for w in names:
            # single plain words only: a lemma with '_' or '-' would become several tokens
            if w != word and w.isascii() and w.isalpha() and w not in out:
                out.append(w)
    return tuple(out)


def synonyms(word: str, max_n: int | None = None) -> list[str]:
    """WordNet synonyms of a word: the other lemmas of every synset (any part of speech) that
    has this exact word form as a lemma, most frequent sense first, in the word's case.
    Function words, numbers and multi-word lemmas are left out; an inflected form that is
    not itself a lemma ("films") and an unknown word have none."""
    syn = _synonyms_lower(word.lower())
    if max_n is not None:
        syn = syn[:max_n]
    return [_match_case(s, word) for s in syn]


# --- training-time augmentation -------------------------------------------------------------
def random_perturbation(text: str, rng: np.random.Generator, kind: str = "char",
                        max_words: int = 2) -> str:
    """Edit up to `max_words` distinct words of `text` at random, in place.

    kind='char': each chosen word (any word with a letter) gets one random character edit:
    swap, substitute, delete, insert or keyboard-neighbour substitution.
    kind='word': each chosen word (a content word with WordNet synonyms) is replaced by a
    random synonym.
    As many words as possible up to `max_words` are edited; a text with no eligible word
    comes back unchanged. Everything but the edited words stays byte-for-byte the same.
    """
    if max_words < 1:
        return text
    s = Sentence.parse(text)
    if kind == "char":
        pool = s.word_indices()
    elif kind == "word":
        pool = [i for i in s.word_indices() if _synonyms_lower(s.tokens[i].lower())]
    else:
        raise ValueError(f"unknown perturbation kind {kind!r} (use 'char' or 'word')")
    if not pool:
        return text
    k = min(max_words, len(pool))
    chosen = rng.choice(len(pool), size=k, replace=False) if k < len(pool) else range(k)
    edits = {}
    for j in chosen:
        i = pool[int(j)]
        w = s.tokens[i]
        if kind == "char":
            edit = ("swap", "substitute", "delete", "insert", "keyboard")[int(rng.integers(5))]
            new = char_edit(w, rng, edit)
            if new == w:  # the drawn edit was impossible for this word
                new = char_edit(w, rng, "substitute")
        else:
            syn = synonyms(w)
            new = syn[int(rng.integers(len(syn)))]
        edits[i] = new
    return s.render(edits)


def changed_words(original: str, perturbed: str) -> list[tuple[int, str, str]]:
    """(token index, old, new) for every token that differs; both texts must have the same
    tokens count (true for everything this module produces)."""
    a, b = Sentence.parse(original), Sentence.parse(perturbed)
    if len(a) != len(b):
        raise ValueError("the texts do not have the same number of tokens")
    return [(i, x, y) for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y]
