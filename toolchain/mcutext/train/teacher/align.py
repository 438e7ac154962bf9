"""The teacher's WordPiece pieces mapped onto the student's words: which pieces pool, the
student's word spans in bytes, and piece weights summed per student word.
"""

from __future__ import annotations

import numpy as np

from ...text.tokenizer import BYTE_CLASS
from ...text.wordpiece import WordPiece


def pool_mask(ids: np.ndarray, wp: WordPiece) -> np.ndarray:
    """Which positions the pooling may weigh: real pieces; [CLS] alone if a row has none."""
    pool = ((ids != wp.pad_id) & (ids != wp.cls_id) & (ids != wp.sep_id)).astype(np.float32)
    empty = pool.sum(axis=1) == 0
    pool[empty, 0] = 1.0
    return pool


def student_word_spans(data: bytes, max_words: int) -> list[tuple[int, int]]:
    """Byte spans [start, end) of the words `mcutext.text.tokenizer.split_words` makes, in order.

    A span covers the whole run of word bytes, also the part beyond max_word_bytes that the
    student truncates away: the word still stands for those characters.
    """
    spans: list[tuple[int, int]] = []
    i, n = 0, len(data)
    while i < n and len(spans) < max_words:
        c = BYTE_CLASS[data[i]]
        if c == 0:
            i += 1
        elif c == 2:
            spans.append((i, i + 1))
            i += 1
        else:
            j = i
            while j < n and BYTE_CLASS[data[j]] == 1:
                j += 1
            spans.append((i, j))
            i = j
    return spans


def _utf8(text: str) -> bytes:
    # lone surrogates cannot be UTF-8 encoded; encode them as their 3-byte forms instead of
    # failing, the way a lenient byte-level reader would see them
    return text.encode("utf-8", "surrogatepass")


def char_byte_offsets(text: str) -> np.ndarray:
    """int64[len(text) + 1]: the UTF-8 byte offset at which each character starts (+ the end)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    nbytes = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
    out = np.zeros(len(cps) + 1, np.int64)
    np.cumsum(nbytes, out=out[1:])
    return out


def align_to_words(text: str, spans: np.ndarray, weights: np.ndarray, max_words: int,
                   max_word_bytes: int) -> np.ndarray:
    """Sum per-piece weights onto the student's words; float32[max_words] summing to 1 over
    the words present (uniform if no piece weight lands on any word), zeros if there are none.

    A piece's weight is shared among the student words its characters' bytes fall in, in
    proportion to bytes (a piece can straddle words when a character the teacher drops, such
    as a control character, separates words for the student).
    """
    del max_word_bytes  # truncation keeps the word; its span is the whole run (see above)
    out = np.zeros(max_words, np.float64)
    data = _utf8(text)
    words = student_word_spans(data, max_words)
    if not words:
        return out.astype(np.float32)
    starts = char_byte_offsets(text)
    end = words[-1][1]
    owner = np.full(end, -1, np.int64)
    for j, (s, e) in enumerate(words):
        owner[s:e] = j
    for (cs, ce), w in zip(spans, weights):
        if cs < 0 or not w > 0:
            continue
        bs, be = int(starts[cs]), min(int(starts[ce]), end)
        if bs >= be:
            continue
        o = owner[bs:be]
        o = o[o >= 0]
        if o.size:
            out += float(w) * np.bincount(o, minlength=max_words)[:max_words] / o.size
    total = out.sum()
    if total > 0:
        out /= total
    else:
        out[:len(words)] = 1.0 / len(words)
    return out.astype(np.float32)
