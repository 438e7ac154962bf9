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

The robust encoding (spec version 2, `encoding = "robust"`, docs/tokenizer.md) keeps steps 1,
2 and 5 and replaces 3-4: each word becomes one code, looked up in a table built on the host
from the training text (`mcutext.text.encoding`) so that a word and its one-edit typos share a
code; what the table cannot place gets the fallback code. The table travels in the bundle
(`encoding.bin`, named by its sha256 in the spec) and is compiled into the firmware.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import struct
from typing import Iterable, Sequence

import numpy as np

from ..common.errors import McutextError

SPEC_VERSION = 1          # the hashed encoding
ROBUST_SPEC_VERSION = 2   # the robust encoding
SPEC_VERSIONS = {"hash": SPEC_VERSION, "robust": ROBUST_SPEC_VERSION}
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
# The robust encoding: the tag of its table keys, and the codes with a meaning of their own.
TAG_KEY = 0x4B  # 'K'
CODE_FALLBACK = 1        # a word the table cannot place (unknown, or near two codes)
CODE_NONE = 0xFFFF       # table field: nothing there
CODE_AMBIGUOUS = 0xFFFE  # table field (near): one deletion away from words of several codes
MAX_CODES = 0xFFF0


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
    encoding: str = "hash"
    table: str = ""  # robust: sha256 (hex) of the table's bytes; "" until it is built

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
        if self.encoding not in SPEC_VERSIONS:
            raise McutextError(f"tokenizer.encoding must be one of {', '.join(SPEC_VERSIONS)}, "
                               f"got {self.encoding!r}")
        if self.robust and self.version == SPEC_VERSION:
            # a recipe names the encoding; its spec version follows from it
            object.__setattr__(self, "version", ROBUST_SPEC_VERSION)
        if self.version != SPEC_VERSIONS[self.encoding]:
            raise McutextError(
                f"tokenizer spec version {self.version} is not supported for the "
                f"{self.encoding} encoding (this mcutext reads version "
                f"{SPEC_VERSIONS[self.encoding]})")
        if self.robust:
            if self.typo_features:
                raise McutextError("tokenizer.typo_features must be false with the robust "
                                   "encoding (one code per word)")
            if not 3 <= self.buckets <= MAX_CODES:
                raise McutextError(f"tokenizer.buckets (codes) must be in [3, {MAX_CODES}] with "
                                   f"the robust encoding, got {self.buckets}")
            if self.table and (len(self.table) != 64 or
                               any(c not in "0123456789abcdef" for c in self.table)):
                raise McutextError("tokenizer.table must be a sha256 in hex")
        elif self.table:
            raise McutextError("tokenizer.table is only for the robust encoding")

    @property
    def robust(self) -> bool:
        return self.encoding == "robust"

    @property
    def features_per_word(self) -> int:
        return 4 if self.typo_features else 1

    @property
    def seq_len(self) -> int:
        return self.max_words * self.features_per_word

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.robust:  # version-1 specs read exactly as before the robust encoding
            del d["encoding"], d["table"]
        return d

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


# --- the robust encoding (spec version 2) ---------------------------------------------------
TABLE_MAGIC = b"MTRE"
TABLE_FORMAT = 1


def key_hash(word: bytes, seed: int) -> int:
    """The 32-bit key of a string in the robust encoding's table."""
    return feature_hash(TAG_KEY, word, seed)


def deletions(word: bytes) -> list[bytes]:
    """The word with one byte deleted, for every position, in order (duplicates kept); none
    for a word of one byte (the empty string is never a key)."""
    if len(word) < 2:
        return []
    return [word[:i] + word[i + 1:] for i in range(len(word))]


@dataclasses.dataclass(frozen=True)
class RobustTable:
    """The lookup table of the robust encoding, as the firmware holds it in flash.

    `keys` are the 32-bit key hashes (ascending, unique) of every known word and of every
    one-byte deletion of the words that have typo neighbours; per key, `exact` is the code
    of the known word with that key (CODE_NONE if none) and `near` the code of the words one
    deletion away from it (CODE_NONE, or CODE_AMBIGUOUS when they have different codes).
    Two strings with the same key are the same key: the table, not the strings, defines the
    encoding, so the host and the device agree by construction."""

    codes: int
    keys: np.ndarray   # uint32[n], ascending
    exact: np.ndarray  # uint16[n]
    near: np.ndarray   # uint16[n]

    def __post_init__(self) -> None:
        n = len(self.keys)
        if not (len(self.exact) == len(self.near) == n):
            raise McutextError("robust table: keys, exact and near differ in length")
        if n and np.any(np.diff(self.keys.astype(np.int64)) <= 0):
            raise McutextError("robust table: keys are not strictly ascending")
        for name, col in (("exact", self.exact), ("near", self.near)):
            ok = (col < self.codes) | (col == CODE_NONE) | ((col == CODE_AMBIGUOUS) &
                                                             (name == "near"))
            if not np.all(ok):
                raise McutextError(f"robust table: {name} holds a code outside [0, "
                                   f"{self.codes})")
            if np.any(col == PAD_ID):
                raise McutextError(f"robust table: {name} holds the padding code 0")

    def to_bytes(self) -> bytes:
        head = TABLE_MAGIC + struct.pack("<III", TABLE_FORMAT, len(self.keys), self.codes)
        return (head + self.keys.astype("<u4").tobytes() + self.exact.astype("<u2").tobytes()
                + self.near.astype("<u2").tobytes())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "robust table") -> "RobustTable":
        if len(data) < 16 or data[:4] != TABLE_MAGIC:
            raise McutextError(f"{where}: not a robust encoding table")
        fmt, n, codes = struct.unpack_from("<III", data, 4)
        if fmt != TABLE_FORMAT:
            raise McutextError(f"{where}: table format {fmt} is not supported (this mcutext "
                               f"reads {TABLE_FORMAT})")
        if len(data) != 16 + 8 * n:
            raise McutextError(f"{where}: {len(data)} bytes, expected {16 + 8 * n} for {n} keys")
        keys = np.frombuffer(data, "<u4", n, 16).astype(np.uint32)
        exact = np.frombuffer(data, "<u2", n, 16 + 4 * n).astype(np.uint16)
        near = np.frombuffer(data, "<u2", n, 16 + 6 * n).astype(np.uint16)
        try:
            return cls(codes, keys, exact, near)
        except McutextError as e:
            raise McutextError(f"{where}: {e}") from None

    @classmethod
    def build(cls, codes: int, word_codes: dict[bytes, int], near_words, seed: int
              ) -> "RobustTable":
        """The table for known words (`word_codes`: lower-cased word -> code in [1, codes))
        of which `near_words` also take their one-deletion typos."""
        exact: dict[int, int] = {}
        near: dict[int, int] = {}
        for w, c in word_codes.items():
            k = key_hash(w, seed)
            # two known words with one key: the key keeps the smaller code (deterministic)
            exact[k] = min(c, exact.get(k, c))
        for w in near_words:
            c = word_codes[w]
            for d in set(deletions(w)):
                k = key_hash(d, seed)
                old = near.get(k)
                near[k] = c if old is None or old == c else CODE_AMBIGUOUS
        keys = np.array(sorted(set(exact) | set(near)), np.uint32)
        return cls(codes, keys,
                   np.array([exact.get(int(k), CODE_NONE) for k in keys], np.uint16),
                   np.array([near.get(int(k), CODE_NONE) for k in keys], np.uint16))


class RobustTokenizer(Tokenizer):
    """One code per word from a RobustTable (spec version 2; docs/tokenizer.md):

    1. the word's own key, if it is a known word: its code;
    2. otherwise the codes found at the word's own key (`near`: it is a known word with one
       byte deleted) and at the key of each one-byte deletion of it (`exact`: a known word
       with one byte inserted; `near`: a known word with one byte substituted, or two
       adjacent bytes swapped): exactly one code found -> that code; none, several, or an
       ambiguous key -> CODE_FALLBACK."""

    def __init__(self, spec: TokenizerSpec, table: RobustTable):
        if not spec.robust:
            raise McutextError("RobustTokenizer needs a spec with encoding = \"robust\"")
        if table.codes != spec.buckets:
            raise McutextError(f"robust table has {table.codes} codes, the tokenizer spec "
                               f"{spec.buckets}")
        if spec.table and spec.table != table.sha256:
            raise McutextError("robust table does not match the tokenizer spec's sha256")
        super().__init__(spec)
        self.table = table
        self._index = {int(k): i for i, k in enumerate(table.keys)}

    def _lookup(self, word: bytes) -> int | None:
        return self._index.get(key_hash(word, self.spec.seed))

    def code(self, word: bytes) -> int:
        t = self.table
        i = self._lookup(word)
        if i is not None and t.exact[i] != CODE_NONE:
            return int(t.exact[i])
        found = CODE_NONE

        def see(c: int) -> bool:  # False once the answer is the fallback
            nonlocal found
            if c == CODE_NONE:
                return True
            if c == CODE_AMBIGUOUS or (found != CODE_NONE and c != found):
                return False
            found = c
            return True

        if i is not None and not see(int(t.near[i])):
            return CODE_FALLBACK
        for d in deletions(word):
            j = self._lookup(d)
            if j is not None and not (see(int(t.exact[j])) and see(int(t.near[j]))):
                return CODE_FALLBACK
        return CODE_FALLBACK if found == CODE_NONE else found

    def _compute_word_features(self, word: bytes) -> tuple[int, ...]:
        return (self.code(word),)


# Tables by sha256: a robust spec names its table, which is registered when it is built or
# read from a bundle, so that everything holding only the spec (a recipe) finds it.
_TABLES: dict[str, RobustTable] = {}


def register_table(table: RobustTable) -> str:
    sha = table.sha256
    _TABLES[sha] = table
    return sha


def make_tokenizer(spec: TokenizerSpec, table: RobustTable | None = None) -> Tokenizer:
    """The tokenizer a spec describes: hashed (version 1) or robust (version 2, its table
    given or registered under the spec's sha256)."""
    if not spec.robust:
        return Tokenizer(spec)
    if table is None:
        if not spec.table:
            raise McutextError("the robust encoding's table is not built yet")
        table = _TABLES.get(spec.table)
        if table is None:
            raise McutextError(f"robust encoding table {spec.table[:12]}... is not loaded")
    return RobustTokenizer(spec, table)


def _hash_rows(rows: np.ndarray, lengths: np.ndarray, tag: int, seed: int) -> np.ndarray:
    """feature_hash of many byte strings at once: rows[i, :lengths[i]] (uint8, zero padded)."""
    h = np.full(len(rows), FNV_OFFSET ^ seed, np.uint32)
    p = np.uint32(FNV_PRIME)
    h = (h ^ np.uint32(tag)) * p
    for j in range(rows.shape[1]):
        on = j < lengths
        if not on.any():
            break
        h = np.where(on, (h ^ rows[:, j].astype(np.uint32)) * p, h)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _as_rows(words: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    n = max((len(w) for w in words), default=0)
    rows = np.zeros((len(words), max(n, 1)), np.uint8)
    lengths = np.array([len(w) for w in words], np.int64)
    for i, w in enumerate(words):
        rows[i, :len(w)] = np.frombuffer(w, np.uint8)
    return rows, lengths


def robust_codes(tok: "RobustTokenizer", words: Sequence[bytes]) -> np.ndarray:
    """RobustTokenizer.code for many words at once (numpy; the same rule, checked by the
    tests against the one-word function)."""
    t, seed = tok.table, tok.spec.seed
    words = list(words)
    out = np.full(len(words), CODE_FALLBACK, np.int64)
    if not words or len(t.keys) == 0:
        return out
    rows, lengths = _as_rows(words)
    keys = t.keys

    def find(h):
        i = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
        hit = keys[i] == h
        return (np.where(hit, t.exact[i], CODE_NONE).astype(np.int64),
                np.where(hit, t.near[i], CODE_NONE).astype(np.int64))

    ex, nr = find(_hash_rows(rows, lengths, TAG_KEY, seed))
    cands = [nr]
    m = rows.shape[1]
    for i in range(m):
        # delete byte i: the rows' bytes i+1.. shift left by one
        live = (lengths >= 2) & (i < lengths)
        if not live.any():
            continue
        drows = np.concatenate([rows[:, :i], rows[:, i + 1:], np.zeros((len(rows), 1),
                                                                        np.uint8)], axis=1)
        de, dn = find(_hash_rows(drows, lengths - 1, TAG_KEY, seed))
        cands += [np.where(live, de, CODE_NONE), np.where(live, dn, CODE_NONE)]
    c = np.stack(cands, axis=1)                              # [N, 1 + 2m]
    amb = np.any(c == CODE_AMBIGUOUS, axis=1)
    real = np.where(c == CODE_NONE, -1, c)
    hi = real.max(axis=1)
    lo = np.where(real < 0, np.iinfo(np.int64).max, real).min(axis=1)
    single = (hi >= 0) & (hi == lo) & ~amb
    out = np.where(single, hi, CODE_FALLBACK)
    return np.where(ex != CODE_NONE, ex, out)
