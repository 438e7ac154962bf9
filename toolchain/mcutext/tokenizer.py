"""Vocabulary-free feature-hashing tokenizer.

This module is the specification; `firmware/tokenizer.c` implements the same bytes-to-ids
function and is tested against it. The full spec is in docs/tokenizer.md. In short:

1. The input is a byte string (str is UTF-8 encoded; surrogate escapes, which stand for the
   bytes of a command-line argument that is not UTF-8, are encoded back to those bytes).
   ASCII A-Z are lowered; nothing else is changed, so invalid UTF-8 is just bytes.
2. Bytes are classed: *word* bytes are a-z, 0-9, the apostrophe and every byte >= 0x80;
   *separators* are bytes <= 0x20 and 0x7F; every other byte (ASCII punctuation) is a
   one-byte word of its own. Words are maximal runs of word bytes, truncated to their first
   `max_word_bytes` bytes. The first `max_words` words are kept.
3. Each word yields `features_per_word` hashed features (1, or 4 in typo-tolerant mode):
   W = the word; S = first byte + sorted inner bytes + last byte (invariant to swaps of inner
   letters); P = the first 3 bytes; X = the last 3 bytes. Each feature kind has its own tag
   byte so that equal strings of different kinds hash apart.
4. hash(tag, bytes) = fmix32(FNV-1a-32 over [tag] + bytes, starting from 0x811C9DC5 ^ seed);
   id = 1 + hash % (buckets - 1). Id 0 is padding.
5. The output is int32[max_words * features_per_word]: word i's features at
   [i*F, (i+1)*F), then zeros.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Sequence

import numpy as np

from .errors import McutextError

SPEC_VERSION = 1
PAD_ID = 0
FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
MASK32 = 0xFFFFFFFF
# Tag bytes of the feature kinds, in the order they appear for each word.
TAG_WORD = 0x57  # 'W'
TAG_SORTED = 0x53  # 'S'
TAG_PREFIX = 0x50  # 'P'
TAG_SUFFIX = 0x58  # 'X'
AFFIX_BYTES = 3


def _byte_class_table() -> bytes:
    """0 = separator, 1 = word byte, 2 = one-byte punctuation word."""
    table = bytearray(256)
    for b in range(256):
        if b <= 0x20 or b == 0x7F:
            table[b] = 0
        elif b >= 0x80 or chr(b).isalnum() or b == 0x27:
            table[b] = 1
        else:
            table[b] = 2
    return bytes(table)


BYTE_CLASS = _byte_class_table()
_LOWER = bytes(b + 32 if 0x41 <= b <= 0x5A else b for b in range(256))


def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    h ^= h >> 16
    return h


def feature_hash(tag: int, data: bytes, seed: int) -> int:
    h = FNV_OFFSET ^ seed
    h = ((h ^ tag) * FNV_PRIME) & MASK32
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK32
    return fmix32(h)


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """Everything that defines the token ids; serialized into every bundle."""

    buckets: int = 4096
    max_words: int = 32
    typo_features: bool = True
    seed: int = 0
    max_word_bytes: int = 24
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        if not 2 <= self.buckets <= 1 << 20:
            raise McutextError(f"tokenizer.buckets must be in [2, 1048576], got {self.buckets}")
        if not 1 <= self.max_words <= 512:
            raise McutextError(f"tokenizer.max_words must be in [1, 512], got {self.max_words}")
        if not 1 <= self.max_word_bytes <= 64:
            raise McutextError(
                f"tokenizer.max_word_bytes must be in [1, 64], got {self.max_word_bytes}")
        if not 0 <= self.seed <= MASK32:
            raise McutextError(f"tokenizer.seed must be a 32-bit unsigned integer, got {self.seed}")
        if self.version != SPEC_VERSION:
            raise McutextError(
                f"tokenizer spec version {self.version} is not supported (this mcutext reads "
                f"version {SPEC_VERSION})")

    @property
    def features_per_word(self) -> int:
        return 4 if self.typo_features else 1

    @property
    def seq_len(self) -> int:
        return self.max_words * self.features_per_word

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise McutextError(f"unknown tokenizer keys: {', '.join(sorted(unknown))}")
        return cls(**d)


def split_words(data: bytes, max_word_bytes: int, max_words: int | None = None) -> list[bytes]:
    """Lower-case and split a byte string into (truncated) words, per the spec."""
    data = data.translate(_LOWER)
    words: list[bytes] = []
    i, n = 0, len(data)
    while i < n and (max_words is None or len(words) < max_words):
        c = BYTE_CLASS[data[i]]
        if c == 0:
            i += 1
        elif c == 2:
            words.append(data[i:i + 1])
            i += 1
        else:
            j = i
            while j < n and BYTE_CLASS[data[j]] == 1:
                j += 1
            words.append(data[i:min(j, i + max_word_bytes)])
            i = j
    return words


def _as_bytes(text: str | bytes) -> bytes:
    # A str from a command line that was not valid UTF-8 carries its bytes as surrogate
    # escapes (PEP 383): those bytes are the text, as the device receives them.
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)


class Tokenizer:
    """Turns text into the int32 id array the int8 model takes."""

    def __init__(self, spec: TokenizerSpec):
        self.spec = spec
        self._word_features = functools.lru_cache(maxsize=1 << 18)(self._compute_word_features)

    def _compute_word_features(self, word: bytes) -> tuple[int, ...]:
        spec = self.spec
        m = spec.buckets - 1

        def fid(tag: int, data: bytes) -> int:
            return 1 + feature_hash(tag, data, spec.seed) % m

        if not spec.typo_features:
            return (fid(TAG_WORD, word),)
        if len(word) >= 3:
            key = word[:1] + bytes(sorted(word[1:-1])) + word[-1:]
        else:
            key = word
        return (fid(TAG_WORD, word), fid(TAG_SORTED, key), fid(TAG_PREFIX, word[:AFFIX_BYTES]),
                fid(TAG_SUFFIX, word[-AFFIX_BYTES:]))

    def word_features(self, word: bytes) -> tuple[int, ...]:
        """The ids of one word (lower-cased bytes, as `words` gives them)."""
        return self._word_features(word)

    def words(self, text: str | bytes) -> list[bytes]:
        """The words the model sees (at most max_words), as lower-cased bytes."""
        return split_words(_as_bytes(text), self.spec.max_word_bytes, self.spec.max_words)

    def display_words(self, text: str | bytes) -> list[str]:
        return [w.decode("utf-8", errors="replace") for w in self.words(text)]

    def encode(self, text: str | bytes) -> np.ndarray:
        ids = np.zeros(self.spec.seq_len, dtype=np.int32)
        f = self.spec.features_per_word
        for i, w in enumerate(self.words(text)):
            ids[i * f:(i + 1) * f] = self._word_features(w)
        return ids

    def encode_batch(self, texts: Sequence[str | bytes] | Iterable[str | bytes]) -> np.ndarray:
        rows = [self.encode(t) for t in texts]
        if not rows:
            return np.zeros((0, self.spec.seq_len), dtype=np.int32)
        return np.stack(rows)

    def num_words(self, text: str | bytes) -> int:
        return len(self.words(text))
