"""WordPiece tokenizer for the teacher's BERT-style encoder, with character offsets.

It reproduces the tokenization the encoder was trained with (uncased BERT): drop NUL, U+FFFD
and control characters; treat Unicode spaces as separators; put CJK ideographs in words of their
own; strip accents (NFD, then drop combining marks) and lower-case; make every punctuation
character a word of its own; then split each word greedily into the longest vocabulary pieces
from the left, continuation pieces carrying a '##' prefix. A word longer than
`max_chars_per_word`, or one with a part no piece matches, becomes a single [UNK].

Unlike a plain tokenizer, every piece keeps the span [start, end) of *original* characters it
came from: the teacher needs them to map its per-piece attention onto the student's words
(mcutext.train.teacher). Normalization is therefore done one original character at a time, so each
normalized character knows where it came from. (The only known difference from normalizing
the whole string at once is the context-dependent lower case of a word-final Greek capital
sigma, which is irrelevant here: accent stripping and the vocabulary treat both sigmas alike.)
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

from ..common.errors import McutextError

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"

# Blocks of CJK ideographs (not all of CJK: Hangul, kana etc. are ordinary letters here).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

# character classes of the basic tokenizer
_DROP, _SPACE, _CJK, _PUNCT, _LETTER = range(5)


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    # every non-alphanumeric ASCII character counts, even those Unicode calls symbols ($, ^, `)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


@functools.lru_cache(maxsize=1 << 16)
def _classify(ch: str) -> tuple[int, str]:
    """(class, normalized form) of one original character."""
    cp = ord(ch)
    if ch in " \t\n\r":
        return _SPACE, ""
    if cp == 0 or cp == 0xFFFD:
        return _DROP, ""
    cat = unicodedata.category(ch)
    if cat in ("Zs", "Zl", "Zp"):  # Unicode spaces and the line / paragraph separators
        return _SPACE, ""
    if cat.startswith("C"):  # control, format, unassigned, private use, surrogates
        return _DROP, ""
    if _is_cjk(cp):
        return _CJK, ch
    norm = "".join(c for c in unicodedata.normalize("NFD", ch)
                   if unicodedata.category(c) != "Mn").lower()
    if not norm:
        return _DROP, ""  # a lone combining mark
    if len(norm) == 1 and _is_punct(norm):
        return _PUNCT, norm
    return _LETTER, norm


def basic_words(text: str) -> list[tuple[str, list[int]]]:
    """Normalized words, each with the original character index of each of its characters."""
    words: list[tuple[str, list[int]]] = []
    chars: list[str] = []
    origin: list[int] = []

    def flush():
        if chars:
            words.append(("".join(chars), origin.copy()))
            chars.clear()
            origin.clear()

    for i, ch in enumerate(text):
        kind, norm = _classify(ch)
        if kind == _DROP:
            continue
        if kind == _SPACE:
            flush()
        elif kind in (_CJK, _PUNCT):
            flush()
            words.append((norm, [i]))
        else:
            for c in norm:
                # a multi-character normal form may itself contain punctuation
                if _is_punct(c):
                    flush()
                    words.append((c, [i]))
                else:
                    chars.append(c)
                    origin.append(i)
    flush()
    return words


class WordPiece:
    """Text -> BERT piece ids with [CLS]/[SEP], padding, attention mask and character spans."""

    def __init__(self, vocab_path: str | Path, max_chars_per_word: int = 100):
        path = Path(vocab_path)
        try:
            tokens = path.read_text(encoding="utf-8").split("\n")
        except OSError as e:
            raise McutextError(f"{path}: cannot read the WordPiece vocabulary ({e})") from None
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        for special in (PAD, UNK, CLS, SEP):
            if special not in self.vocab:
                raise McutextError(f"{path}: vocabulary has no {special} token")
        self.inv_vocab = tokens
        self.pad_id, self.unk_id = self.vocab[PAD], self.vocab[UNK]
        self.cls_id, self.sep_id = self.vocab[CLS], self.vocab[SEP]
        self.max_chars_per_word = max_chars_per_word
        self._word_pieces = functools.lru_cache(maxsize=1 << 18)(self._split_word)

    def _split_word(self, word: str) -> tuple[tuple[int, int, int], ...]:
        """Pieces of one normalized word as (id, start, end) over the word's characters."""
        n = len(word)
        if n > self.max_chars_per_word:
            return ((self.unk_id, 0, n),)
        out = []
        start = 0
        while start < n:
            end = n
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                pid = self.vocab.get(piece)
                if pid is not None:
                    out.append((pid, start, end))
                    break
                end -= 1
            else:
                return ((self.unk_id, 0, n),)
            start = end
        return tuple(out)

    def tokenize(self, text: str) -> list[tuple[int, int, int]]:
        """Pieces of `text` (no specials) as (id, start_char, end_char) in the original text."""
        pieces = []
        for word, origin in basic_words(text):
            for pid, s, e in self._word_pieces(word):
                pieces.append((pid, origin[s], origin[e - 1] + 1))
        return pieces

    def pieces(self, text: str) -> list[str]:
        return [self.inv_vocab[p] for p, _, _ in self.tokenize(text)]

    def encode(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """ids int32[m] = [CLS] pieces [SEP] (pieces cut to max_len - 2) and spans int32[m, 2]
        (character spans; [-1, -1] for the specials)."""
        if max_len < 2:
            raise McutextError(f"max_len must be at least 2, got {max_len}")
        toks = self.tokenize(text)[:max_len - 2]
        ids = np.empty(len(toks) + 2, np.int32)
        spans = np.full((len(toks) + 2, 2), -1, np.int32)
        ids[0], ids[-1] = self.cls_id, self.sep_id
        if toks:
            arr = np.asarray(toks, np.int32)
            ids[1:-1] = arr[:, 0]
            spans[1:-1] = arr[:, 1:]
        return ids, spans

    def encode_batch(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids int32[n, L] and attention mask int32[n, L], L = longest row."""
        rows = [self.encode(t, max_len)[0] for t in texts]
        return pad_rows(rows, self.pad_id)


def pad_rows(rows: Sequence[np.ndarray], pad_id: int = 0,
             length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    L = length or max((len(r) for r in rows), default=2)
    ids = np.full((len(rows), L), pad_id, np.int32)
    mask = np.zeros((len(rows), L), np.int32)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask
