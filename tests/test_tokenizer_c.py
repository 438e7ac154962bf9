"""firmware/tokenizer.c gives exactly the ids of the Python specification (mcutext.text.tokenizer).

The C is compiled for the host with gcc (AddressSanitizer + UBSan, so a read past the end of
the text or an overflow fails the test) and driven through a small binary stdin/stdout
protocol: many inputs per process. Both remainder paths are built (the divide instruction,
and the reciprocal used on cores without one); the real test splits run on the default one,
the random inputs (random bucket counts, so random divisors) on both.

The robust encoding (spec version 2) is compared the same way, on tables built with
RobustTable.build from the real training vocabularies of sst2 and clinc150 (random codes, a
random share of words taking their typos, a forced 32-bit key collision, tiny tables of 0-3
keys): the driver reads the table from its encoding.bin bytes, each array in a block of
exactly its size, so an over-read of the table is a sanitizer report too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcutext.text.tokenizer import (
    CODE_AMBIGUOUS, RobustTable, Tokenizer, TokenizerSpec, key_hash, make_tokenizer, split_words)

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"

# Reads records "u32 buckets, max_words, features_per_word, seed, max_word_bytes, len; bytes"
# and writes "u32 words; i32 ids[max_words * features_per_word]" for each. The text is copied
# into a buffer of exactly `len` bytes so that the sanitizer catches any over-read. With an
# argument, the spec's robust table is read from that file (encoding.bin's format).
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer.h"

static int read_exact(void *p, size_t n) { return fread(p, 1, n, stdin) == n; }

static void *read_array(FILE *f, size_t n, size_t size) {
    void *p = malloc(n ? n * size : 1);
    if (n && fread(p, size, n, f) != n) exit(3);
    return p;
}

int main(int argc, char **argv) {
    mt_robust_table_t table = {0, 0, 0, 0, 0};
    if (argc > 1) {
        FILE *f = fopen(argv[1], "rb");
        uint32_t head[4];
        if (!f || fread(head, sizeof head, 1, f) != 1 || memcmp(head, "MTRE", 4)) return 3;
        table.count = head[2];
        table.codes = head[3];
        table.keys = read_array(f, table.count, sizeof *table.keys);
        table.exact = read_array(f, table.count, sizeof *table.exact);
        table.near = read_array(f, table.count, sizeof *table.near);
        fclose(f);
    }
    uint32_t h[6];
    while (read_exact(h, sizeof h)) {
        mt_tokenizer_spec_t spec = {h[0], h[1], h[2], h[3], h[4], argc > 1 ? &table : 0};
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
    free((void *)table.keys);
    free((void *)table.exact);
    free((void *)table.near);
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


def run_c(exe: Path, spec: TokenizerSpec, texts: list[bytes],
          table: RobustTable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(words per text, ids[len(texts), seq_len]) from the C implementation."""
    f = spec.features_per_word
    head = (spec.buckets, spec.max_words, f, spec.seed, spec.max_word_bytes)
    payload = b"".join(struct.pack("<6I", *head, len(t)) + t for t in texts)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    args = [str(exe)]
    if table is not None:
        table_file = exe.parent / f"table_{table.sha256[:16]}.bin"
        if not table_file.exists():
            table_file.write_bytes(table.to_bytes())
        args.append(str(table_file))
    out = subprocess.run(args, input=payload, capture_output=True, env=env)
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


def assert_same(exe: Path, spec: TokenizerSpec, texts: list[bytes | str],
                table: RobustTable | None = None) -> None:
    data = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
    tok = make_tokenizer(spec, table)
    words, ids = run_c(exe, spec, data, table)
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
    from mcutext.text.datasets import load_split
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


# --- the robust encoding (spec version 2) ------------------------------------------------------

def robust_spec(table: RobustTable, seed: int, max_words: int = 32,
                max_word_bytes: int = 24) -> TokenizerSpec:
    return TokenizerSpec(encoding="robust", version=2, typo_features=False,
                         buckets=table.codes, table=table.sha256, seed=seed,
                         max_words=max_words, max_word_bytes=max_word_bytes)


def vocabulary(dataset: str, max_word_bytes: int = 24) -> list[bytes]:
    """The distinct words of a dataset's training split, in order of first appearance."""
    from mcutext.text.datasets import load_split
    seen: dict[bytes, None] = {}
    for t in load_split(dataset, "train").texts:
        for w in split_words(t.encode("utf-8"), max_word_bytes):
            seen.setdefault(w, None)
    return list(seen)


def key_collision(seed: int) -> tuple[bytes, bytes]:
    """Two different 7-letter words with the same 32-bit key (a seeded birthday search,
    FNV-1a + fmix32 vectorized over 2^18 random words)."""
    rng = np.random.default_rng(seed)
    n = 1 << 18
    letters = rng.integers(ord("a"), ord("z") + 1, size=(n, 7), dtype=np.uint64)
    h = np.full(n, (0x811C9DC5 ^ seed) ^ 0x4B, np.uint64) * 0x01000193 & 0xFFFFFFFF
    for j in range(7):
        h = ((h ^ letters[:, j]) * 0x01000193) & 0xFFFFFFFF
    for s, m in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = ((h ^ (h >> s)) * m) & 0xFFFFFFFF
    h ^= h >> 16
    order = np.argsort(h, kind="stable")
    same = np.nonzero(h[order][1:] == h[order][:-1])[0]
    for i in same:
        a, b = (bytes(letters[order[i + k]].astype(np.uint8)) for k in (0, 1))
        if a != b:
            assert key_hash(a, seed) == key_hash(b, seed)
            return a, b
    raise AssertionError("no key collision among 2^18 random words: change the seed")


def clustered_table(words: list[bytes], codes: int, near_share: float, seed: int,
                    extra: dict[bytes, int] | None = None) -> RobustTable:
    """A table over real words: a seeded random clustering (each word a random code in
    [1, codes), the fallback code 1 included) and a random share of them taking typos."""
    rng = np.random.default_rng(seed)
    word_codes = {w: int(c) for w, c in zip(words, rng.integers(1, codes, len(words)))}
    word_codes.update(extra or {})
    near = [w for w in word_codes if rng.random() < near_share]
    return RobustTable.build(codes, word_codes, near, seed)


@pytest.fixture(scope="session")
def vocabularies() -> dict[str, list[bytes]]:
    return {d: vocabulary(d) for d in ("sst2", "clinc150")}


@pytest.fixture(scope="session")
def robust_tables(vocabularies) -> dict[str, tuple[RobustTable, int, list[bytes]]]:
    """name -> (table, seed, its known words)."""
    out = {}
    sst2, clinc = vocabularies["sst2"], vocabularies["clinc150"]
    a, b = key_collision(11)
    # many codes: clusters of about 4 words; the collision's two words get different codes
    out["sst2"] = (clustered_table(sst2, len(sst2) // 4, 0.7, 11, {a: 5, b: 9}), 11,
                   sst2 + [a, b])
    # few codes: most deletions near two codes, so many ambiguous keys
    out["clinc150"] = (clustered_table(clinc, 7, 0.5, 3), 3, clinc)
    out["clinc150_all_near"] = (clustered_table(clinc, 1000, 1.0, 0xFFFFFFFF), 0xFFFFFFFF,
                                clinc)
    # tiny tables of 0, 1, 2 and 3 keys: {}, {a}, {a, i}, {a, an, n (a deletion of an)}
    out["empty"] = (RobustTable.build(3, {}, [], 0), 0, [b"a", b"an", b"the", b"it's"])
    for n, words in ((1, [b"a"]), (2, [b"a", b"i"]), (3, [b"a", b"an"])):
        table = RobustTable.build(4, {w: 2 + i for i, w in enumerate(words)}, words, 0)
        out[f"tiny{n}"] = (table, 0, words)
    words = [b"the", b"thee", b"tho"]
    out["rule"] = (RobustTable.build(5, {w: 2 + i for i, w in enumerate(words)}, words, 0), 0,
                   words)
    return out


def test_robust_tables_cover_the_cases(robust_tables):
    """The tables exercise what the lookup rule distinguishes."""
    sst2 = robust_tables["sst2"][0]
    clinc = robust_tables["clinc150"][0]
    assert len(sst2.keys) > 50_000 and len(clinc.keys) > 10_000
    assert np.any(clinc.near == CODE_AMBIGUOUS) and np.any(sst2.near == CODE_AMBIGUOUS)
    both = (sst2.exact != 0xFFFF) & (sst2.near != 0xFFFF)
    assert np.any(both)  # a known word that is also a deletion of another
    assert len(robust_tables["empty"][0].keys) == 0
    assert [len(robust_tables[f"tiny{n}"][0].keys) for n in (1, 2, 3)] == [1, 2, 3]


def one_edits(word: bytes, alphabet: bytes = b"aeiostz'9\xc3\x80") -> list[bytes]:
    """Every deletion, adjacent swap, substitution and insertion of `word` over a small
    alphabet (bytes that are word bytes, so the result stays one word)."""
    n = len(word)
    out = [word[:i] + word[i + 1:] for i in range(n)]
    out += [word[:i] + word[i + 1:i + 2] + word[i:i + 1] + word[i + 2:] for i in range(n - 1)]
    for c in alphabet:
        out += [word[:i] + bytes([c]) + word[i + 1:] for i in range(n)]
        out += [word[:i] + bytes([c]) + word[i:] for i in range(n + 1)]
    return [w for w in out if w]


def as_texts(words: list[bytes], per_text: int = 16) -> list[bytes]:
    return [b" ".join(words[i:i + per_text]) for i in range(0, len(words), per_text)]


ROBUST_NAMES = ["sst2", "clinc150", "clinc150_all_near", "empty", "tiny1", "tiny2", "tiny3",
                "rule"]


@pytest.mark.parametrize("name", ROBUST_NAMES)
def test_robust_edge_cases(tokenizer_c, robust_tables, name):
    table, seed, words = robust_tables[name]
    rng = np.random.default_rng(5)
    some = [words[int(i)] for i in rng.choice(len(words), min(30, len(words)), replace=False)]
    typos = [e for w in some for e in one_edits(w)]
    long = [w for w in words if len(w) >= 20][:5]
    texts = EDGE_TEXTS + as_texts(words[:2000]) + as_texts(typos) + [
        w * 30 for w in long] + [w + b"s" * 30 for w in some]
    for mw, mwb in ((32, 24), (512, 64), (3, 1), (7, 4)):
        assert_same(tokenizer_c, robust_spec(table, seed, mw, mwb), texts, table)
    # a seed other than the table's: the keys miss, every word is the fallback or a rare hit
    assert_same(tokenizer_c, robust_spec(table, seed ^ 1), texts, table)


def test_robust_codes_are_the_table_rule(tokenizer_c, robust_tables):
    """Known words get their cluster's code; a word's one-deletion typo its code or the
    fallback; 1-byte words and unknown words without neighbours the fallback."""
    table, seed, _ = robust_tables["rule"]  # the: 2, thee: 3, tho: 4, all taking typos
    spec = robust_spec(table, seed, max_words=10)
    text = b"the thee tho xyz t th thx thoo xthee hee"
    _, ids = run_c(tokenizer_c, spec, [text], table)
    # th: a deletion of the (2) and of tho (4): ambiguous -> fallback; thx: one of its
    # deletions is th -> fallback; thoo, xthee: tho, thee with a byte inserted -> 4, 3;
    # hee: a deletion of thee (3), and its own deletion he one of the (2) -> fallback
    assert ids[0].tolist() == [2, 3, 4, 1, 1, 1, 1, 4, 3, 1]
    assert make_tokenizer(spec, table).encode(text).tolist() == ids[0].tolist()


robust_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(interesting, max_size=120).map(bytes),
    st.text(max_size=120).map(lambda s: s.encode("utf-8")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data(), name=st.sampled_from(ROBUST_NAMES),
       max_words=st.integers(1, 40), max_word_bytes=st.one_of(st.just(24), st.integers(1, 64)))
def test_robust_random_inputs_match_python(tokenizer_c, robust_tables, data, name, max_words,
                                           max_word_bytes):
    table, seed, words = robust_tables[name]
    # known words, edited at random byte positions, between random bytes
    word = st.sampled_from(words).flatmap(
        lambda w: st.one_of(st.just(w), st.sampled_from(one_edits(w) or [w])))
    text = st.one_of(robust_bytes, st.lists(st.one_of(word, word, robust_bytes), max_size=40)
                     .map(b" ".join))
    batch = data.draw(st.lists(text, min_size=1, max_size=20))
    assert_same(tokenizer_c, robust_spec(table, seed, max_words, max_word_bytes), batch, table)


@pytest.mark.parametrize("dataset", ["sst2", "clinc150"])
def test_robust_real_test_split_matches_python(tokenizer_c_default, robust_tables, dataset):
    """Every test sentence of the dataset, and a copy of each with one or two words edited
    (swap, substitute, delete, insert, keyboard), on the table of its own vocabulary."""
    from mcutext.text.datasets import load_split
    from mcutext.text.perturb import random_perturbation
    texts = load_split(dataset, "test").texts
    assert len(texts) > 100
    rng = np.random.default_rng(17)
    typos = [random_perturbation(t, rng, "char", max_words=1 + i % 2)
             for i, t in enumerate(texts)]
    assert sum(a != b for a, b in zip(texts, typos)) > len(texts) // 2
    table, seed, _ = robust_tables[dataset]
    assert_same(tokenizer_c_default, robust_spec(table, seed), texts + typos, table)


def test_robust_spec_that_breaks_its_table_gives_no_words(tokenizer_c, robust_tables):
    """buckets other than the table's codes: no words, all padding (Python refuses the spec;
    the firmware never gets one, as codegen takes both from the bundle)."""
    table, seed, words = robust_tables["rule"]
    spec = TokenizerSpec(encoding="robust", version=2, typo_features=False,
                         buckets=table.codes + 1, seed=seed, max_words=4)
    n, ids = run_c(tokenizer_c, spec, [b"the thee tho"], table)
    assert n.tolist() == [0] and not ids.any()
    right = dataclasses.replace(spec, buckets=table.codes)
    assert run_c(tokenizer_c, right, [b"the thee tho"], table)[0].tolist() == [3]


def test_generated_table_c_encodes_like_python(robust_tables, tmp_path):
    """The table as codegen emits it into the firmware (gen/encoding.c) gives the Python codes:
    the driver built against the generated arrays instead of encoding.bin."""
    from mcutext.codegen.emit import robust_table_c
    table, seed, words = robust_tables["clinc150"]
    (tmp_path / "encoding.c").write_text(robust_table_c(table, "mt_test_table", "a test"))
    driver = DRIVER.replace('#include "tokenizer.h"',
                            '#include "tokenizer.h"\nextern const mt_robust_table_t '
                            'mt_test_table;').replace(
        "argc > 1 ? &table : 0", "&mt_test_table")
    (tmp_path / "driver.c").write_text(driver)
    exe = tmp_path / "tokenize"
    subprocess.run([shutil.which("gcc") or "cc", "-std=c11", "-O1", "-Wall", "-Wextra",
                    "-Werror", "-Wno-unused-parameter", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", f"-I{FIRMWARE}", str(FIRMWARE / "tokenizer.c"),
                    str(tmp_path / "encoding.c"), str(tmp_path / "driver.c"), "-o", str(exe)],
                   check=True)
    from mcutext.text.datasets import load_split
    texts = load_split("clinc150", "test").texts[:500]
    spec = robust_spec(table, seed)
    tok = make_tokenizer(spec, table)
    n, ids = run_c(exe, spec, [t.encode("utf-8") for t in texts])
    assert np.array_equal(ids, tok.encode_batch(texts))
    assert (ids[:, 0] != 1).sum() > len(texts) // 2  # known words: the table is really used
