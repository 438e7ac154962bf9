"""firmware/tokenizer.c gives exactly the ids of the Python specification (mcutext.tokenizer).

The C is compiled for the host with gcc (AddressSanitizer + UBSan, so a read past the end of
the text or an overflow fails the test) and driven through a small binary stdin/stdout
protocol: many inputs per process. Both remainder paths are built (the divide instruction,
and the reciprocal used on cores without one); the real test splits run on the default one,
the random inputs (random bucket counts, so random divisors) on both.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcutext.tokenizer import Tokenizer, TokenizerSpec

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"

# Reads records "u32 buckets, max_words, features_per_word, seed, max_word_bytes, len; bytes"
# and writes "u32 words; i32 ids[max_words * features_per_word]" for each. The text is copied
# into a buffer of exactly `len` bytes so that the sanitizer catches any over-read.
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer.h"

static int read_exact(void *p, size_t n) { return fread(p, 1, n, stdin) == n; }

int main(void) {
    uint32_t h[6];
    while (read_exact(h, sizeof h)) {
        mt_tokenizer_spec_t spec = {h[0], h[1], h[2], h[3], h[4]};
        uint8_t *text = malloc(h[5] ? h[5] : 1);
        if (h[5] && !read_exact(text, h[5])) return 2;
        size_t n = (size_t)spec.max_words * spec.features_per_word;
        int32_t *ids = malloc(n * sizeof *ids);
        memset(ids, 0x5A, n * sizeof *ids);
        uint32_t words = mt_tokenize(&spec, h[5] ? text : (const uint8_t *)"", h[5], ids);
        fwrite(&words, sizeof words, 1, stdout);
        fwrite(ids, sizeof *ids, n, stdout);
        free(ids);
        free(text);
    }
    return 0;
}
"""


def _build(tmp_path_factory, soft_divide: bool) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no host C compiler (gcc) found: install build-essential")
    d = tmp_path_factory.mktemp("tokenizer_c")
    (d / "driver.c").write_text(DRIVER)
    exe = d / "tokenize"
    subprocess.run([cc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-DMT_TOKENIZER_SOFT_DIVIDE={int(soft_divide)}",
                    f"-I{FIRMWARE}", str(FIRMWARE / "tokenizer.c"), str(d / "driver.c"),
                    "-o", str(exe)], check=True)
    return exe


# Both ways of computing `hash % (buckets - 1)`: the divide instruction (Cortex-M3/M4/M7, the
# host) and the reciprocal of cores without one (Cortex-M0, the micro:bit).
@pytest.fixture(scope="session", params=["divide", "soft-divide"])
def tokenizer_c(request, tmp_path_factory) -> Path:
    return _build(tmp_path_factory, request.param == "soft-divide")


@pytest.fixture(scope="session")
def tokenizer_c_default(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, False)


def run_c(exe: Path, spec: TokenizerSpec, texts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(words per text, ids[len(texts), seq_len]) from the C implementation."""
    f = spec.features_per_word
    head = (spec.buckets, spec.max_words, f, spec.seed, spec.max_word_bytes)
    payload = b"".join(struct.pack("<6I", *head, len(t)) + t for t in texts)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    out = subprocess.run([str(exe)], input=payload, capture_output=True, env=env)
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    rec = 4 + 4 * spec.seq_len
    assert len(out.stdout) == rec * len(texts)
    words = np.empty(len(texts), dtype=np.int64)
    ids = np.empty((len(texts), spec.seq_len), dtype=np.int32)
    for i in range(len(texts)):
        chunk = out.stdout[i * rec:(i + 1) * rec]
        words[i] = struct.unpack_from("<I", chunk)[0]
        ids[i] = np.frombuffer(chunk, dtype="<i4", offset=4)
    return words, ids


def assert_same(exe: Path, spec: TokenizerSpec, texts: list[bytes | str]) -> None:
    data = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    tok = Tokenizer(spec)
    words, ids = run_c(exe, spec, data)
    expected = tok.encode_batch(data)
    for i, t in enumerate(data):
        if not np.array_equal(ids[i], expected[i]) or words[i] != tok.num_words(t):
            pytest.fail(f"C and Python differ for {spec} on {t[:200]!r}:\n"
                        f"C      {words[i]} words {ids[i].tolist()}\n"
                        f"Python {tok.num_words(t)} words {expected[i].tolist()}")


# --- hand-picked edge cases ------------------------------------------------------------------

EDGE_TEXTS = [
    b"", b" ", b"\x00", b"\x00" * 100, b"a", b"A", b"I", b"ab", b"abc", b"abcd",
    b"Hello, World!", b"don't stop", b"''", b"'", b"...", b"?!", b"a.b,c;d",
    b"\t\n\r\x0b\x0c mixed   whitespace\x7f\x7fend", b"CAPS lower MiXeD",
    b"caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 \xf0\x9f\x98\x80", b"\xff\xfe\xfd invalid \x80\xc3",
    b"\xc3", b"x" * 23, b"x" * 24, b"x" * 25, b"y" * 64, b"z" * 65, b"z" * 5000,
    b"w " * 40, b"1234567890 42 3.14", bytes(range(256)), bytes(range(255, -1, -1)),
    b"@#$%^&*()_+-=[]{}|\\:\"<>/~`", b"AbCdEfGhIjKlMnOpQrStUvWxYz",
]


@pytest.mark.parametrize("spec", [
    TokenizerSpec(),
    TokenizerSpec(buckets=5120, max_words=32, typo_features=True),
    TokenizerSpec(typo_features=False),
    TokenizerSpec(buckets=2, max_words=1, typo_features=False, max_word_bytes=1),
    TokenizerSpec(buckets=3, max_words=512, max_word_bytes=64, seed=0xFFFFFFFF),
    TokenizerSpec(buckets=1 << 20, max_words=7, max_word_bytes=2, seed=12345),
], ids=str)
def test_edge_cases(tokenizer_c, spec):
    assert_same(tokenizer_c, spec, EDGE_TEXTS)


def test_output_is_zero_padded_and_counts_words(tokenizer_c):
    spec = TokenizerSpec(max_words=4)
    words, ids = run_c(tokenizer_c, spec, [b"one two", b"", b"a b c d e f"])
    assert words.tolist() == [2, 0, 4]
    assert (ids[0, 8:] == 0).all() and (ids[0, :8] != 0).all()
    assert (ids[1] == 0).all()
    assert (ids[2] != 0).all()


# --- property tests ----------------------------------------------------------------------------

specs = st.builds(
    TokenizerSpec,
    buckets=st.one_of(st.sampled_from([2, 3, 4096, 5120, 1 << 20]),
                      st.integers(2, 1 << 20)),
    max_words=st.one_of(st.integers(1, 40), st.sampled_from([128, 512])),
    typo_features=st.booleans(),
    seed=st.one_of(st.just(0), st.integers(0, 0xFFFFFFFF)),
    max_word_bytes=st.one_of(st.sampled_from([1, 2, 3, 24, 64]), st.integers(1, 64)),
)

# Bytes weighted towards the interesting classes: letters of both cases, apostrophe,
# punctuation, separators, NUL, DEL and high bytes (UTF-8 lead / continuation / invalid).
interesting = st.sampled_from(list(b"aAzZeE09'.,!?-\"(") + [0x20, 0x09, 0x0A, 0x0D, 0x00,
                                                              0x7F, 0x80, 0xBF, 0xC3, 0xE2,
                                                              0xF0, 0xFF])
texts = st.one_of(
    st.binary(max_size=300),
    st.lists(interesting, max_size=200).map(bytes),
    st.text(max_size=200).map(lambda s: s.encode("utf-8")),
    st.lists(st.text(alphabet="abcdefXYZ'é", min_size=1, max_size=90), max_size=60)
    .map(lambda ws: " ".join(ws).encode("utf-8")),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, batch=st.lists(texts, min_size=1, max_size=40))
def test_random_inputs_match_python(tokenizer_c, spec, batch):
    assert_same(tokenizer_c, spec, batch)


# --- every sentence of the real test splits ----------------------------------------------------

@pytest.mark.parametrize("dataset", ["sst2", "sms_spam", "ag_news", "clinc150"])
def test_real_test_split_matches_python(tokenizer_c_default, dataset):
    tokenizer_c = tokenizer_c_default
    from mcutext.data import load_split
    texts = load_split(dataset, "test").texts
    assert len(texts) > 100
    for spec in (TokenizerSpec(), TokenizerSpec(buckets=5120),
                 TokenizerSpec(typo_features=False, max_words=64, max_word_bytes=8, seed=7)):
        assert_same(tokenizer_c, spec, texts)


# --- the worked examples of docs/tokenizer.md --------------------------------------------------

DOC_SPEC = TokenizerSpec(buckets=4096, max_words=4, typo_features=True, seed=0, max_word_bytes=24)
DOC_EXAMPLES = [
    (DOC_SPEC, b"Don't PANIC!",
     [2551, 2718, 2994, 3900, 513, 600, 277, 1948, 1149, 1712, 1987, 3664, 0, 0, 0, 0]),
    (DOC_SPEC, b"caf\xc3\xa9", [1981, 1845, 702, 3480] + [0] * 12),
    (DOC_SPEC, b"", [0] * 16),
    (TokenizerSpec(buckets=5120, max_words=3, typo_features=False), b"Hello, world",
     [2592, 3053, 3133]),
]


@pytest.mark.parametrize("spec,text,ids", DOC_EXAMPLES)
def test_documented_examples(tokenizer_c, spec, text, ids):
    assert Tokenizer(spec).encode(text).tolist() == ids
    assert run_c(tokenizer_c, spec, [text])[1][0].tolist() == ids
