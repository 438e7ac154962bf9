"""The robust encoding's table built from real training text (mcutext.text.encoding), its vectorized
encoder and what one edit of a word can reach."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from mcutext.text.datasets import load_split
from mcutext.text.encoding import EncodingConfig, _variants, build_table, reachable_codes
from mcutext.text.perturb import edit_family
from mcutext.text.tokenizer import (
    CODE_FALLBACK, RobustTokenizer, TokenizerSpec, robust_codes, split_words)

SPEC = TokenizerSpec(max_words=32, typo_features=False, encoding="robust", buckets=3)


@pytest.fixture(scope="module")
def sst2_table():
    """A table from 1,500 real sst2 training sentences, its tokenizer and the vocabulary."""
    ds = load_split("sst2", "train").subset(range(1500))
    labels = sorted(set(ds.labels))
    y = np.array([labels.index(v) for v in ds.labels])
    cfg = EncodingConfig(min_count=2, neutral_share=0.8, clusters=8, smoothing=10.0,
                         informative_min_count=5, guard_neutral=True)
    table, summary = build_table(ds.texts, y, len(labels), SPEC, cfg)
    spec = TokenizerSpec(max_words=32, typo_features=False, encoding="robust",
                         buckets=table.codes, table=table.sha256)
    counts = collections.Counter(w for t in ds.texts for w in split_words(t.encode(), 24, 32))
    vocab = sorted(w for w, c in counts.items() if c >= cfg.min_count)   # the table's words
    return RobustTokenizer(spec, table), summary, vocab


def test_variants_are_the_attacks_family():
    for w in ("a", "film", "good", "moviee", "it's", "café"):
        assert _variants(w.encode()) == sorted(v.encode() for v in edit_family(w))


def test_vectorized_codes_equal_the_specification(sst2_table):
    tok, _, vocab = sst2_table
    words = vocab[::7] + [v for w in vocab[:40] for v in _variants(w)][::3]
    words += [b"", b"x", b"\xff\xfe", b"z" * 24]
    assert robust_codes(tok, words).tolist() == [tok.code(w) for w in words]


def test_summary_and_codes(sst2_table):
    tok, summary, vocab = sst2_table
    assert summary["codes"] == tok.spec.buckets <= 2 + 8
    assert 0 < summary["informative_words"] < summary["vocabulary"]
    codes = robust_codes(tok, vocab)
    assert codes.min() >= 1 and codes.max() < tok.spec.buckets
    # the informative words keep codes of their own clusters; the rest share the fallback
    assert np.sum(codes != CODE_FALLBACK) == summary["informative_words"]


def test_reachable_codes_are_what_one_edit_gives(sst2_table):
    tok, _, vocab = sst2_table
    words = vocab[:: max(1, len(vocab) // 60)]
    reach = reachable_codes(tok, words)
    for w in words:
        own = tok.code(w)
        if not any(97 <= b <= 122 for b in w):   # the attacks edit only words with a letter
            assert reach[w] == (), w
            continue
        brute = {tok.code(v[:24]) for v in _variants(w)} - {own}
        assert set(reach[w]) == brute, w


def test_a_guarded_neutral_word_reaches_no_cluster_through_a_non_word(sst2_table):
    """A neutral word's typos that are not themselves known words never take an informative
    code: the guard makes them ambiguous instead (only a real word one edit away can)."""
    tok, _, vocab = sst2_table
    known = set(vocab)
    neutral = [w for w in vocab if tok.code(w) == CODE_FALLBACK
               and any(97 <= b <= 122 for b in w)][:300]   # words the attacks edit
    for w in neutral:
        for v in _variants(w):
            if v not in known and not any(len(v) > 1 and (v[:i] + v[i + 1:]) in known
                                          for i in range(len(v))):
                assert tok.code(v) == CODE_FALLBACK, (w, v)


def test_typos_of_informative_words_come_back(sst2_table):
    """Most one-edit typos of an informative word that are no known word get its code."""
    tok, _, vocab = sst2_table
    known = set(vocab)
    informative = [w for w in vocab if tok.code(w) != CODE_FALLBACK and len(w) >= 6][:100]
    same = total = 0
    for w in informative:
        for v in _variants(w):
            if v in known:
                continue
            total += 1
            same += tok.code(v) == tok.code(w)
    # measured 0.92 on these 1,500 sentences; long words have few neighbours
    assert total > 1000 and same / total > 0.8


@pytest.mark.slow
def test_robust_recipe_trains_a_bundle_with_its_table(tmp_path):
    """The sst2_robust recipe on a real subset: the table is built from the training split,
    the code-space adversary runs, and the bundle carries the table its spec names. Trained
    enough (2,000 sentences, 3 epochs) that the certificate's threats find witnesses: 61 /
    53 / 44 / 49 / 50 of 150 sentences attacked under family / no-injection / deletion /
    real-words / typos when measured."""
    import dataclasses

    from mcutext.int8.bundle import ENCODING_FILE, load_bundle
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    recipe = load_recipe("sst2_robust")
    assert recipe.objective.adv_search == "codes" and recipe.tokenizer.robust
    recipe = dataclasses.replace(recipe, encoding=dataclasses.replace(recipe.encoding,
                                                                      clusters=4))
    out = train(recipe, out=tmp_path / "bundle", limit=2000, epochs=3, test_limit=100)
    b = load_bundle(out)
    spec = b.tokenizer.spec
    assert spec.robust and spec.version == 2 and spec.table == b.encoding_table.sha256
    assert (out / ENCODING_FILE).read_bytes() == b.encoding_table.to_bytes()
    assert b.manifest["encoding"]["codes"] == spec.buckets <= 2 + 4
    assert b.manifest["recipe"]["tokenizer"] == b.manifest["tokenizer"]
    ids = b.tokenize(["a gripping , funny film", "a gripinng , funy film"])
    assert ids.shape == (2, spec.max_words) and ids.max() < spec.buckets
    # int8 and float agree on the test sentences the manifest measured
    assert b.manifest["metrics"]["test"]["int8_float_agreement"] >= 0.9
    check_threats(b)


def check_threats(b) -> None:
    """The certificate's narrower threats: each allows a subset of the family's moves, so
    certified accuracy can only grow from family to no-injection to deletion; every witness
    is still a real edit that TFLite Micro misclassifies (certify checks it), and it makes only
    the moves its threat allows."""
    from mcutext.attack.certify import certify
    from mcutext.common.errors import McutextError
    from mcutext.text.tokenizer import CODE_FALLBACK
    tok = b.tokenizer
    code = {}

    def word_code(w: str) -> int:
        if w not in code:
            code[w] = int(tok.word_features(tok.words(w)[0])[0])
        return code[w]
    got, checked = {}, 0
    for threat in ("family", "no-injection", "deletion"):
        r = certify(b, edits=2, n=150, engine="tflm", threat=threat)
        assert r.get("threat", "family") == threat
        got[threat] = r["certified"]
        for v in r["sentences"]:
            for ch in v.get("witness", {}).get("changes", []):
                checked += threat != "family"
                if threat != "family":   # only informative words move
                    assert word_code(ch["from"]) != CODE_FALLBACK
                if threat == "deletion":   # and only to the fallback
                    assert word_code(ch["to"]) == CODE_FALLBACK
    assert got["family"] <= got["no-injection"] <= got["deletion"] and checked > 0
    # any encoding: only edits that make a real word, or only internal typos
    from mcutext.attack.moves import lexicon
    from mcutext.text import perturb
    from mcutext.text.datasets import load_split
    words = lexicon(load_split(b.manifest["dataset"], "train").texts, tok)
    for threat in ("real-words", "typos"):
        r = certify(b, edits=2, n=150, engine="tflm", threat=threat)
        assert r["threat"] == threat and r["certified"] >= got["family"]
        changes = [ch for v in r["sentences"] for ch in v.get("witness", {}).get("changes", [])]
        assert changes, threat
        for ch in changes:
            if threat == "typos":
                assert ch["to"] in perturb.typo_family(ch["from"])
            else:
                assert ch["to"] in perturb.edit_family(ch["from"])
                assert ch["to"].lower() in words and r["lexicon_words"] == len(words)
    with pytest.raises(McutextError, match="unknown threat"):
        certify(b, edits=2, n=5, threat="typo")
