"""Explanations (mcutext.explain.attribution): the metrics on toy cases computed by hand, then on a real
sst2 student (float and int8), and `mcutext explain` on a bundle."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mcutext.explain import attribution as ex
from mcutext.common.errors import McutextError


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- toy case: a bag-of-words logistic model, K = 1 feature per word, L = 5 slots ----------
WEIGHT = {1: 2.0, 2: 1.0, 3: 0.0, 4: -0.5}


def toy_proba(ids: np.ndarray) -> np.ndarray:
    """p(class 1) = sigmoid(sum of the words' weights); padding (0) weighs nothing."""
    z = np.array([sum(WEIGHT.get(int(i), 0.0) for i in row) for row in ids])
    p1 = 1.0 / (1.0 + np.exp(-z))
    return np.stack([1 - p1, p1], axis=1)


def test_rows_without_deletes_and_keeps_words_in_order():
    words = np.array([[1, 11], [2, 12], [3, 13], [4, 14], [0, 0]], np.int32)
    assert ex._rows_without(words, 4, drop=np.array([1])).tolist() == \
        [1, 11, 3, 13, 4, 14, 0, 0, 0, 0]
    assert ex._rows_without(words, 4, keep=np.array([3, 0])).tolist() == \
        [1, 11, 4, 14, 0, 0, 0, 0, 0, 0]
    assert ex._rows_without(words, 4, drop=np.arange(4)).tolist() == [0] * 10
    assert ex.num_words(np.array([words.reshape(-1), np.zeros(10, np.int32)]), 2).tolist() == \
        [4, 0]
    assert [ex._count(f, 30) for f in (0.1, 0.2, 0.5, 1.0)] == [3, 6, 15, 30]
    assert [ex._count(f, 4) for f in (0.1, 0.2, 0.5)] == [1, 1, 2]


def test_faithfulness_matches_hand_computed_values():
    ids = np.array([[1, 2, 3, 4, 0]], np.int32)
    attr = np.array([[0.4, 0.3, 0.2, 0.1, 0.0]])  # ranking: word 0, 1, 2, 3
    r = ex.faithfulness(toy_proba, ids, attr, k=1, per_example=True)
    p0 = sigmoid(2.5)                       # predicted class 1
    # fractions 10 / 20 / 50 % of 4 words -> top 1, 1, 2 words
    comp = [p0 - sigmoid(0.5), p0 - sigmoid(0.5), p0 - sigmoid(-0.5)]
    suff = [p0 - sigmoid(2.0), p0 - sigmoid(2.0), p0 - sigmoid(3.0)]
    assert r["per_example"]["model"]["comprehensiveness"][0] == pytest.approx(comp)
    assert r["per_example"]["model"]["sufficiency"][0] == pytest.approx(suff)
    assert r["comprehensiveness"]["model"] == pytest.approx(np.mean(comp))
    assert r["comprehensiveness"]["model_by_fraction"]["0.5"] == pytest.approx(comp[2])
    assert r["sufficiency"]["model"] == pytest.approx(np.mean(suff))
    # deletion curve at 0..100 % in 10 steps: top ceil(j * 4 / 10) words deleted, j = 0..10
    # -> 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4 words; sums of the weights left: 2.5, 0.5, -0.5,
    # -0.5 (word 2 weighs 0), 0 (nothing left)
    left = {0: 2.5, 1: 0.5, 2: -0.5, 3: -0.5, 4: 0.0}
    curve = [0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
    assert r["aopc"]["model"] == pytest.approx(np.mean([p0 - sigmoid(left[c]) for c in curve]))
    assert r["n"] == 1 and r["distinct_rows"] < r["rows"]  # repeated variants run once


def test_faithfulness_prefers_the_true_ranking_over_its_reverse_and_random():
    rng = np.random.default_rng(5)
    ids = np.zeros((60, 8), np.int32)
    for i in range(60):
        n = rng.integers(3, 9)
        ids[i, :n] = rng.integers(1, 5, size=n)
    true_attr = np.where(ids > 0, np.vectorize(lambda v: abs(WEIGHT.get(int(v), 0.0)))(ids), 0)
    good = ex.faithfulness(toy_proba, ids, true_attr + 0.01, k=1)
    bad = ex.faithfulness(toy_proba, ids, -true_attr, k=1)
    for r in (good, bad):
        for m in ("comprehensiveness", "sufficiency", "aopc"):
            for order in ("model", "random"):
                assert -1 <= r[m][order] <= 1
        # the random baseline does not depend on the attribution
        assert r["comprehensiveness"]["random"] == good["comprehensiveness"]["random"]
    assert good["comprehensiveness"]["model"] > good["comprehensiveness"]["random"] > \
        bad["comprehensiveness"]["model"]
    assert good["sufficiency"]["model"] < good["sufficiency"]["random"] < \
        bad["sufficiency"]["model"]
    assert good["aopc"]["model"] > good["aopc"]["random"] > bad["aopc"]["model"]


def test_ties_are_broken_at_random_not_by_position():
    firsts = {int(ex.ranking(np.zeros(5), np.random.default_rng([0, i, 0]))[0])
              for i in range(40)}
    assert len(firsts) == 5
    assert ex.ranking(np.array([0.1, 0.5, 0.3]), np.random.default_rng(0)).tolist() == [1, 2, 0]


def test_spearman_and_agreement_by_hand():
    assert ex.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert ex.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: a = [1, 2, 2] -> ranks 0, 1.5, 1.5; b ranks 0, 1, 2
    # rho = cov / (sd sd) = 1.5 / sqrt(1.5 * 2) = 0.866
    assert ex.spearman([1, 2, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(ex.spearman([1, 1, 1], [1, 2, 3]))
    s = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.7, 0.0], [0.2, 0.2, 0.0, 0.0]])
    t = np.array([[0.6, 0.3, 0.1, 0.0], [0.7, 0.2, 0.1, 0.0], [0.9, 0.1, 0.0, 0.0]])
    r = ex.agreement(s, t, [3, 3, 2], top_k=1)
    # rho: 1 and -1; the third (constant student) is undefined
    assert r["spearman"] == pytest.approx(0.0) and r["spearman_n"] == 2
    assert r["spearman_undefined"] == 1
    # top-1 overlap: 1, 0, and 1 or 0 for the tie (seeded); chance 1/3, 1/3, 1/2
    assert r["top_k_overlap"] in (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert r["top_k_overlap_random"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)
    same = ex.agreement(s[:2], s[:2], [3, 3], top_k=2)
    assert same["spearman"] == pytest.approx(1.0) and same["top_k_overlap"] == 1.0


# --- a real student ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    from mcutext.int8.bundle import load_bundle
    return load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from mcutext.text.datasets import load_split
    return load_split("sst2", "test").texts[:200]


def test_int8_attribution_is_the_models_attention_output(bundle, texts):
    ids = bundle.tokenize(texts[:30])
    raw = bundle.run_int8(ids, "tflm")
    q = bundle.manifest["int8"]["outputs"]["attention"]
    assert q["zero_point"] == -128 and q["scale"] == pytest.approx(1 / 256)
    es = ex.explain(bundle, texts[:30], "tflm")
    for i, e in enumerate(es):
        n = bundle.tokenizer.num_words(texts[i])
        assert e.words == bundle.tokenizer.display_words(texts[i]) and len(e.words) == n
        assert e.attention_int8.tolist() == raw["attention"][i][:n].tolist()
        assert e.attention == pytest.approx((raw["attention"][i][:n].astype(float) + 128) / 256)
        assert e.share.sum() == pytest.approx(1.0)
        assert e.label == bundle.predict(texts[i], "tflm")[0]
    fl = ex.explain(bundle, texts[:30], "keras")
    att = bundle.keras_model().predict(ids, verbose=0)[1]
    for i, e in enumerate(fl):
        assert e.attention == pytest.approx(att[i][:len(e.words)], abs=1e-6)
        assert e.attention_int8 is None
        assert e.probabilities == pytest.approx(bundle.predict_proba(texts[i])[0], abs=1e-5)


def test_id_deletion_is_text_deletion(bundle, texts):
    """The batched variants equal the model on the texts with the words really deleted."""
    k = bundle.tokenizer.spec.features_per_word
    sample = [t for t in texts if 4 <= bundle.tokenizer.num_words(t) <= 20][:6]
    ids = bundle.tokenize(sample)
    for rt in ("tflm", "keras"):
        att = ex.run_ids(bundle, ids, rt).attention
        r = ex.faithfulness(lambda x: ex.run_ids(bundle, x, rt).proba, ids, att, k,
                            fractions=(0.5,), aopc_steps=2, per_example=True)
        for i, text in enumerate(sample):
            words = bundle.tokenizer.display_words(text)
            n = len(words)
            order = ex.ranking(att[i, :n], ex._rng(0, i, 0))
            top = set(order[:ex._count(0.5, n)].tolist())
            p = bundle.predict_proba([text, " ".join(w for j, w in enumerate(words)
                                                    if j not in top),
                                      " ".join(w for j, w in enumerate(words) if j in top)], rt)
            y = int(p[0].argmax())
            got = r["per_example"]["model"]
            assert got["comprehensiveness"][i][0] == pytest.approx(p[0, y] - p[1, y], abs=1e-5)
            assert got["sufficiency"][i][0] == pytest.approx(p[0, y] - p[2, y], abs=1e-5)


@pytest.mark.parametrize("runtime", ["tflm", "keras"])
def test_own_attention_is_more_faithful_than_random(bundle, texts, runtime, record_property):
    r = ex.bundle_faithfulness(bundle, texts, runtime)
    for m in ("comprehensiveness", "sufficiency", "aopc"):
        record_property(m, [r[m]["model"], r[m]["random"]])
    record_property("comprehensiveness_by_fraction", r["comprehensiveness"]["model_by_fraction"])
    assert r["n"] == len(texts) and r["runtime"] == runtime
    for m in ("comprehensiveness", "sufficiency", "aopc"):
        for order in ("model", "random"):
            assert -1 <= r[m][order] <= 1
    print(f"\n{runtime}: comprehensiveness {r['comprehensiveness']['model']:.3f} (random "
          f"{r['comprehensiveness']['random']:.3f}), sufficiency "
          f"{r['sufficiency']['model']:.3f} ({r['sufficiency']['random']:.3f}), AOPC "
          f"{r['aopc']['model']:.3f} ({r['aopc']['random']:.3f})")
    # measured over train seeds 1-6 (tflm; keras within 0.003): comprehensiveness 0.091 /
    # 0.084 / 0.121 / 0.075 / 0.103 / 0.108 against random 0.032-0.045; sufficiency 0.030
    # to 0.060 against random 0.077-0.122; AOPC 0.086-0.140 against random 0.053-0.087
    # (at least 1.5 times random each time)
    assert r["comprehensiveness"]["model"] > r["comprehensiveness"]["random"]
    assert r["sufficiency"]["model"] < r["sufficiency"]["random"]
    assert r["aopc"]["model"] > r["aopc"]["random"]
    # comprehensiveness grows with the share of words removed (measured: steps of at least
    # 0.020 from 10 to 20 % and 0.027 from 20 to 50 %)
    byf = r["comprehensiveness"]["model_by_fraction"]
    assert byf["0.1"] < byf["0.2"] < byf["0.5"]


def test_agreement_of_float_and_int8_attention(bundle, texts, record_property):
    """The int8 attention ranks words like the float one (Spearman well above 0), far
    above a shuffled attention."""
    ids = bundle.tokenize(texts)
    k = bundle.tokenizer.spec.features_per_word
    n = ex.num_words(ids, k)
    fl, q = ex.run_ids(bundle, ids, "keras").attention, ex.run_ids(bundle, ids, "tflm").attention
    r = ex.agreement(q, fl, n)
    rng = np.random.default_rng(1)
    shuffled = np.array([np.concatenate([rng.permutation(row[:m]), row[m:]])
                         for row, m in zip(fl, n)])
    base = ex.agreement(shuffled, fl, n)
    record_property("spearman", [r["spearman"], base["spearman"]])
    record_property("top_k_overlap", [r["top_k_overlap"], base["top_k_overlap"]])
    # measured over train seeds 1-6: Spearman 0.960, 0.968, 0.963, 0.910, 0.929, 0.959
    # (shuffled -0.02 to 0.02); top-k overlap 0.82-0.93 (shuffled 0.18-0.21)
    assert r["spearman"] > 0.7 and r["spearman"] > base["spearman"] + 0.5
    assert r["top_k_overlap"] > base["top_k_overlap"]


def test_baseline_bundles_are_refused(tmp_path):
    from mcutext.int8.bundle import Bundle
    b = Bundle(tmp_path, {"name": "x", "labels": ["a", "b"], "max_words": 4,
                          "tokenizer": {"max_words": 4},
                          "recipe": {"model": {"arch": "prado"}}, "int8": {"input": {}}})
    with pytest.raises(McutextError, match="baseline"):
        ex.run_ids(b, np.zeros((1, 16), np.int32), "tflm")


# --- the command line ---------------------------------------------------------------------------
def test_cli_explain_bundle(bundle, capsys):
    from mcutext.cli import main
    from mcutext.cli.explain import colour
    text = "a gripping , funny and moving film"
    assert main(["explain", str(bundle.path), text, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["runtime"] for o in out] == ["keras", "tflm"]
    for o in out:
        want = ex.explain(bundle, [text], o["runtime"])[0]
        assert [w["word"] for w in o["words"]] == want.words
        assert o["label"] == want.label
        assert sum(o["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert [w["share"] for w in o["words"]] == pytest.approx(want.share.tolist(), abs=1e-6)
    assert [w["attention_int8"] for w in out[1]["words"]] == ex.explain(
        bundle, [text], "tflm")[0].attention_int8.tolist()
    assert main(["explain", str(bundle.path), "--runtime", "tflm", text]) == 0
    shown = capsys.readouterr().out
    assert "int8 (TFLite Micro)" in shown and "float" not in shown
    assert " ".join(bundle.tokenizer.display_words(text)) in shown
    # the colour deepens with the weight
    assert colour(0.0, 0.5) == "black on rgb(255,255,255)"
    assert colour(0.5, 0.5) == "black on rgb(255,110,0)"
    assert main(["explain", str(bundle.path)]) == 2
    assert "no text" in capsys.readouterr().err
