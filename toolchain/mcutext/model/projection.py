"""PRADO's token projection: each feature id -> a ternary vector computed on the fly.

This module is the specification; `firmware/projection.c` implements the same function and
is tested against it bit for bit (tests/test_baselines.py). docs/baselines.md has the
rationale. In short (all arithmetic on unsigned 32-bit integers, modulo 2^32):

1. A feature id `f` (from the mcutext tokenizer; 0 is padding) gets `ceil(P / 16)` hash
   words: base = fmix32((f * 0x9E3779B9) ^ seed), word_c = fmix32(base ^ (c * 0x7FEB352D)).
   fmix32 is MurmurHash3's finalizer, the one the tokenizer uses.
2. Projection value j (0 <= j < P) is taken from bits 2*(j % 16) and 2*(j % 16) + 1 of
   word_(j // 16): 0 -> 0, 1 -> +1, 2 -> -1, 3 -> 0 (half of the values are non-zero, as in
   PRADO). The padding id 0 projects to all zeros, by definition.
3. A word's projection is the sum of the projections of its `K` feature ids (the tokenizer's
   typo-tolerant features, K = 4, or the word hash alone, K = 1): integers in [-K, K].
4. The model sees, for each of the `max_words` word slots, P + 1 values: the word projection
   divided by K, then a presence value (1 for a word, 0 for padding). The float Keras model
   computes this inside its graph (`PradoProjection`); the int8 model takes it as its input,
   quantized with the input tensor's scale and zero point. Because the projection sums take
   only 2K + 1 values, the quantization is a lookup table of 2K + 2 int8 entries
   (`input_lut`), computed once on the host; the device indexes it.

No table is stored anywhere: the projection of a word costs K * ceil(P / 16) fmix32 calls.
"""

from __future__ import annotations

import math

import numpy as np

from ..common.errors import McutextError

PROJECTION_VERSION = 1
MAX_FEATURE_SIZE = 4096
MAX_FEATURES_PER_WORD = 8
ID_MULT = 0x9E3779B9
CHUNK_MULT = 0x7FEB352D
VALUES_PER_WORD = 16  # 2 bits per ternary value in a 32-bit hash word
# 2-bit code -> ternary value
TERNARY = np.array([0, 1, -1, 0], dtype=np.int8)


def check_spec(feature_size: int, features_per_word: int, seed: int = 0) -> None:
    if not 1 <= feature_size <= MAX_FEATURE_SIZE:
        raise McutextError(f"prado.feature_size must be in [1, {MAX_FEATURE_SIZE}], "
                           f"got {feature_size}")
    if not 1 <= features_per_word <= MAX_FEATURES_PER_WORD:
        raise McutextError(f"features per word must be in [1, {MAX_FEATURES_PER_WORD}], "
                           f"got {features_per_word}")
    if not 0 <= seed <= 0xFFFFFFFF:
        raise McutextError(f"prado.projection_seed must be a 32-bit unsigned integer, got {seed}")


def hash_words(feature_size: int) -> int:
    return math.ceil(feature_size / VALUES_PER_WORD)


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def feature_projection(ids: np.ndarray, feature_size: int, seed: int = 0) -> np.ndarray:
    """Ternary projections of feature ids: int8 [..., P] in {-1, 0, 1}; id 0 -> zeros."""
    check_spec(feature_size, 1, seed)
    ids = np.asarray(ids)
    if ids.size and ids.min() < 0:
        raise McutextError("feature ids must be >= 0")
    u = ids.astype(np.uint32)
    with np.errstate(over="ignore"):
        base = _fmix32((u * np.uint32(ID_MULT)) ^ np.uint32(seed))
        chunks = np.arange(hash_words(feature_size), dtype=np.uint32) * np.uint32(CHUNK_MULT)
        words = _fmix32(base[..., None] ^ chunks)                      # [..., C]
    shifts = np.arange(VALUES_PER_WORD, dtype=np.uint32) * np.uint32(2)
    codes = (words[..., None] >> shifts) & np.uint32(3)                 # [..., C, 16]
    out = TERNARY[codes].reshape(*ids.shape, -1)[..., :feature_size]
    out[ids == 0] = 0
    return out


def word_counts(ids: np.ndarray, max_words: int, features_per_word: int, feature_size: int,
                seed: int = 0, chunk: int = 256) -> np.ndarray:
    """Token-id rows [N, max_words * K] -> per-word projection sums int8 [N, max_words, P]."""
    check_spec(feature_size, features_per_word, seed)
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] != max_words * features_per_word:
        raise McutextError(f"expected ids of shape [N, {max_words * features_per_word}], "
                           f"got {list(ids.shape)}")
    out = np.zeros((len(ids), max_words, feature_size), dtype=np.int8)
    for s in range(0, len(ids), chunk):
        p = feature_projection(ids[s:s + chunk], feature_size, seed)      # [n, L*K, P]
        p = p.reshape(len(p), max_words, features_per_word, feature_size)
        out[s:s + chunk] = p.sum(axis=2, dtype=np.int8)
    return out


def presence(ids: np.ndarray, max_words: int, features_per_word: int) -> np.ndarray:
    """1.0 for the word slots that hold a word, 0.0 for padding: float32 [N, max_words]."""
    w = np.asarray(ids).reshape(len(ids), max_words, features_per_word)[:, :, 0]
    return (w > 0).astype(np.float32)


def float_features(ids: np.ndarray, max_words: int, features_per_word: int, feature_size: int,
                   seed: int = 0) -> np.ndarray:
    """What the float model sees: float32 [N, max_words, 1, P + 1] (sums / K, presence)."""
    counts = word_counts(ids, max_words, features_per_word, feature_size, seed)
    x = counts.astype(np.float32) / np.float32(features_per_word)
    m = presence(ids, max_words, features_per_word)
    return np.concatenate([x, m[:, :, None]], axis=-1)[:, :, None, :]


def quantize(x: float | np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Affine int8 quantization, rounding half away from zero, computed in float64."""
    v = np.asarray(x, dtype=np.float64) / float(scale)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zero_point, -128, 127).astype(np.int8)


def input_lut(features_per_word: int, scale: float, zero_point: int) -> np.ndarray:
    """int8[2K + 2]: entry S + K quantizes the projection sum S in [-K, K] (as S / K); the
    last entry quantizes the presence value 1.0 (padding's 0.0 is entry K)."""
    k = features_per_word
    vals = np.concatenate([np.arange(-k, k + 1, dtype=np.float64) / k, [1.0]])
    return quantize(vals, scale, zero_point)


def input_from_lut(ids: np.ndarray, max_words: int, features_per_word: int,
                   feature_size: int, seed: int, lut: np.ndarray) -> np.ndarray:
    """The int8 model input from a lookup table (what firmware/projection.c computes):
    int8 [N, max_words, 1, P + 1]."""
    k = features_per_word
    lut = np.asarray(lut, dtype=np.int8)
    if lut.shape != (2 * k + 2,):
        raise McutextError(f"the input lookup table must have {2 * k + 2} entries, "
                           f"got {lut.shape}")
    counts = word_counts(ids, max_words, k, feature_size, seed)
    q = lut[counts.astype(np.int32) + k]
    m = presence(ids, max_words, k) > 0
    last = np.where(m, lut[2 * k + 1], lut[k]).astype(np.int8)
    return np.concatenate([q, last[:, :, None]], axis=-1)[:, :, None, :]


def int8_input(ids: np.ndarray, max_words: int, features_per_word: int, feature_size: int,
               seed: int, scale: float, zero_point: int) -> np.ndarray:
    """The int8 model's input for token-id rows: int8 [N, max_words, 1, P + 1]."""
    lut = input_lut(features_per_word, scale, zero_point)
    return input_from_lut(ids, max_words, features_per_word, feature_size, seed, lut)
