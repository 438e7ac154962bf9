"""The teacher: WordPiece tokenizer, the re-implemented encoder, word alignment, training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import seed_override
from mcutext.common.errors import McutextError
from mcutext.model.recipe import DistillConfig, TeacherConfig
from mcutext.text.tokenizer import split_words

from mcutext.train.teacher.align import align_to_words, student_word_spans
from mcutext.train.teacher.encoder import Encoder, attention_bias, load_pretrained
from mcutext.train.teacher.fit import train_with_config
from mcutext.train.teacher.trained import load_teacher, text_key
pytest.importorskip("safetensors")


@pytest.fixture(scope="module")
def pretrained():
    try:
        return load_pretrained()
    except McutextError as e:
        pytest.fail(f"encoder package missing: {e} ({e.hint})")


@pytest.fixture(scope="module")
def wp(pretrained):
    return pretrained[2]


# --- WordPiece ---------------------------------------------------------------------------------
# Expected pieces and spans were produced by the reference implementation of the encoder's own
# tokenizer.json (HF `tokenizers`), which our tokenizer matched on ~72,000 texts (all dataset
# texts plus random Unicode strings) when it was written; docs/teacher.md has the details.
REFERENCE_PIECES = [
    ("Don't stop-believing!!!", ["don", "'", "t", "stop", "-", "believing", "!", "!", "!"],
     [(0, 3), (3, 4), (4, 5), (6, 10), (10, 11), (11, 20), (20, 21), (21, 22), (22, 23)]),
    ("Café NAÏVE über", ["cafe", "naive", "uber"], [(0, 4), (5, 10), (11, 15)]),
    ("\x00\x01abc\x7fdef", ["abc", "##de", "##f"], [(2, 5), (6, 8), (8, 9)]),
    ("hello\u00a0world\u2028x", ["hello", "world", "x"], [(0, 5), (6, 11), (12, 13)]),
    ("中文ok", ["中", "文", "ok"], [(0, 1), (1, 2), (2, 4)]),
    ("a" * 101, ["[UNK]"], [(0, 101)]),
    ("£5 (ab)c", ["£5", "(", "ab", ")", "c"], [(0, 2), (3, 4), (4, 6), (6, 7), (7, 8)]),
    ("unaffable", ["una", "##ffa", "##ble"], [(0, 3), (3, 6), (6, 9)]),
    ("😀 fine", ["[UNK]", "fine"], [(0, 1), (2, 6)]),
    ("e\u0301t\u00e9", ["et", "##e"], [(0, 3), (3, 4)]),
    ("", [], []),
    (" \t\n\u3000 ", [], []),
]


@pytest.mark.parametrize("text,pieces,spans", REFERENCE_PIECES)
def test_wordpiece_matches_reference(wp, text, pieces, spans):
    got = wp.tokenize(text)
    assert [wp.inv_vocab[i] for i, _, _ in got] == pieces
    assert [(s, e) for _, s, e in got] == spans


def test_wordpiece_encode_specials_and_truncation(wp):
    ids, spans = wp.encode("", 16)
    assert list(ids) == [wp.cls_id, wp.sep_id] and spans.tolist() == [[-1, -1], [-1, -1]]
    long = "word " * 1000
    ids, spans = wp.encode(long, 16)
    assert len(ids) == 16 and ids[0] == wp.cls_id and ids[-1] == wp.sep_id
    assert (spans[1:-1, 0] >= 0).all()
    batch, mask = wp.encode_batch(["a b c", "", long], 32)
    assert batch.shape == (3, 32) and mask.sum(1).tolist() == [5, 2, 32]
    # spans point back at the original characters
    text = "Héllo, Wörld"
    for pid, s, e in wp.tokenize(text):
        assert wp.inv_vocab[pid].lstrip("#") in text[s:e].lower().replace("é", "e").replace(
            "ö", "o")


# --- the encoder -------------------------------------------------------------------------------

def _sentence_embeddings(pretrained, texts):
    cfg, weights, wp, _ = pretrained
    enc = Encoder(cfg)
    enc.load(weights)
    ids, mask = wp.encode_batch(texts, 128)
    x = enc.run(enc.embeddings(ids), attention_bias(mask), 0, cfg.layers).numpy()
    m = mask[..., None].astype(np.float32)
    e = (x * m).sum(1) / m.sum(1)  # mean pooling, then unit length: the model's sentence vector
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _numpy_encoder(weights, cfg, ids, mask):
    """Plain-numpy BERT forward pass straight from the file's tensors (the reference)."""
    from math import erf, sqrt
    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + erf(v / sqrt(2.0))))

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg.eps) * weights[p + ".weight"] + weights[p + ".bias"]

    def lin(x, p):  # the file stores linear weights as [out, in]
        return x @ weights[p + ".weight"].T + weights[p + ".bias"]

    x = (weights["embeddings.word_embeddings.weight"][ids]
         + weights["embeddings.position_embeddings.weight"][None, :ids.shape[1]]
         + weights["embeddings.token_type_embeddings.weight"][0])
    x = ln(x.astype(np.float64), "embeddings.LayerNorm")
    B, L, H = x.shape
    nh, hd = cfg.heads, H // cfg.heads
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}."

        def heads(t):
            return t.reshape(B, L, nh, hd).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, L, H)
        x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = ln(x + h, p + "output.LayerNorm")
    return x


def test_encoder_matches_numpy_reference(pretrained):
    # two sentences of different lengths, so padding and the attention mask are exercised
    cfg, weights, wp, _ = pretrained
    ids, mask = wp.encode_batch(["the film is a charming , funny delight .",
                                 "Dull!"], 32)
    enc = Encoder(cfg)
    enc.load(weights)
    got = enc.run(enc.embeddings(ids), attention_bias(mask), 0, cfg.layers).numpy()
    ref = _numpy_encoder(weights, cfg, ids, mask.astype(np.float64))
    valid = mask.astype(bool)
    np.testing.assert_allclose(got[valid], ref[valid], atol=2e-4, rtol=0)


def test_encoder_reproduces_published_similarities(pretrained):
    # The sentence-transformers quickstart publishes these cosine similarities for
    # all-MiniLM-L6-v2: a Keras re-implementation with a wrong detail (layer-norm order,
    # GELU variant, a transposed kernel) would not land within 1e-3 of them.
    e = _sentence_embeddings(pretrained, ["The weather is lovely today.",
                                          "It's so sunny outside!", "He drove to the stadium."])
    sim = e @ e.T
    expected = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    np.testing.assert_allclose(sim, expected, atol=1e-3)


def test_encoder_paraphrases_close_unrelated_far(pretrained):
    texts = ["How do I reset my password?", "I forgot my password, how can I change it?",
             "The movie was a delight from start to finish.",
             "I thoroughly enjoyed this film.", "Stock markets fell sharply on Monday."]
    s = _sentence_embeddings(pretrained, texts)
    s = s @ s.T
    assert s[0, 1] > 0.6 and s[2, 3] > 0.5
    for i, j in ((0, 2), (0, 4), (2, 4), (1, 3)):
        assert s[i, j] < 0.25, (i, j, s[i, j])


# --- alignment to the student's words ----------------------------------------------------------

TRICKY = ["", "   ", "!!!", "?", "don't stop", "Don't STOP-believing!!!", "naïve café",
          "\u00a0", "a\u00a0b", "ab\x01cd", "ab\x7fcd", "中文 ok", "😀😀 fine", "\ud800 lone",
          "x" * 300, "word " * 3000, "\x00", "e\u0301te", "$5 (ab)c's", "\t\n", "ü" * 40,
          "hello,world", "#hashtag @user http://x.co/a?b=1"]


def test_student_word_spans_follow_split_words():
    rng = np.random.default_rng(0)
    alphabet = list("aZ09'- .,!?\t\n\x00\x7f") + ["é", "中", "😀", "\u00a0"]
    texts = TRICKY[:13] + TRICKY[14:] + ["".join(rng.choice(alphabet, size=rng.integers(0, 60)))
                                         for _ in range(500)]
    for t in texts:
        data = t.encode("utf-8")
        for mw, mwb in ((32, 24), (3, 2), (48, 64)):
            spans = student_word_spans(data, mw)
            lowered = data.lower()
            assert [lowered[s:e][:mwb] for s, e in spans] == split_words(data, mwb, mw), t


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("max_words,max_word_bytes", [(32, 24), (4, 3)])
def test_alignment_shape_and_normalization(wp, text, max_words, max_word_bytes):
    ids, spans = wp.encode(text, 128)
    rng = np.random.default_rng(len(text))
    w = rng.random(len(ids)).astype(np.float32)
    w[0] = w[-1] = 0.0
    a = align_to_words(text, spans, w, max_words, max_word_bytes)
    n = len(split_words(text.encode("utf-8", "surrogatepass"), max_word_bytes, max_words))
    assert a.shape == (max_words,) and a.dtype == np.float32
    assert np.all(a >= 0) and np.all(a[n:] == 0)
    if n:
        assert abs(float(a[:n].sum()) - 1.0) < 1e-5
    else:
        assert a.sum() == 0


def test_alignment_puts_weight_on_the_right_words(wp):
    text = "Don't stop-believing, OK?"
    ids, spans = wp.encode(text, 64)
    pieces = [wp.inv_vocab[i] for i in ids]
    w = np.zeros(len(ids), np.float32)
    w[pieces.index("don")] = 0.2
    w[pieces.index("'")] = 0.1   # don ' t  -> the student's single word "don't"
    w[pieces.index("believing")] = 0.7
    a = align_to_words(text, spans, w, 8, 24)
    # student words: don't  stop  -  believing  ,  ok  ?
    np.testing.assert_allclose(a, [0.3, 0, 0, 0.7, 0, 0, 0, 0], atol=1e-6)
    # a piece the student sees as two words (control character in between) is shared by bytes
    ids, spans = wp.encode("ab\x01c", 16)
    assert [wp.inv_vocab[i] for i in ids] == ["[CLS]", "abc", "[SEP]"]
    a = align_to_words("ab\x01c", spans, np.array([0.0, 1.0, 0.0]), 4, 24)
    np.testing.assert_allclose(a, [2 / 3, 1 / 3, 0, 0], atol=1e-6)
    # no-break space: a space for the teacher, a word byte for the student, so no piece lands
    # on the student's only word; the row falls back to uniform over the student's words
    ids, spans = wp.encode("\u00a0", 16)
    assert [wp.inv_vocab[i] for i in ids] == ["[CLS]", "[SEP]"]
    a = align_to_words("\u00a0", spans, np.array([1.0, 0.0]), 3, 24)
    np.testing.assert_allclose(a, [1.0, 0, 0])


# --- a trained teacher --------------------------------------------------------------------------
# A tiny run (200 sentences, the top layer only, 2 epochs) checks the mechanics; the real
# teachers and their accuracy are measured by `mcutext teacher train` (docs/teacher.md).

TINY = TeacherConfig(tune_layers=1, epochs=4, max_len=48, seed=seed_override(1))


@pytest.fixture(scope="module")
def small_teacher(tmp_path_factory):
    """A tiny teacher on 200 real sst2 sentences (dev 100, test 300)."""
    import os
    from mcutext.model.recipe import load_recipe
    cache = tmp_path_factory.mktemp("teacher_cache")
    old = os.environ.get("MCUTEXT_TEACHER_CACHE")
    os.environ["MCUTEXT_TEACHER_CACHE"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("teacher") / "sst2"
        path = train_with_config(load_recipe("sst2"), TINY, out=out, limit=400)
    finally:
        if old is None:
            os.environ.pop("MCUTEXT_TEACHER_CACHE", None)
        else:
            os.environ["MCUTEXT_TEACHER_CACHE"] = old
    return path


@pytest.fixture(scope="module")
def loaded_teacher(small_teacher):
    return load_teacher(small_teacher)


@pytest.mark.slow
def test_small_teacher_beats_chance_and_reloads(small_teacher, loaded_teacher, record_property):
    meta = json.loads((small_teacher / "teacher.json").read_text())
    record_property("test_accuracy", meta["metrics"]["test"]["accuracy"])
    assert meta["labels"] == ["negative", "positive"]
    assert meta["metrics"]["test"]["n"] == 400
    # measured over teacher seeds 1-5 (MCUTEXT_TEST_SEED, conftest; the same 400 training
    # sentences): 0.735, 0.738, 0.720, 0.743, 0.715
    assert meta["metrics"]["test"]["accuracy"] > 0.62, meta["metrics"]
    t = loaded_teacher
    assert t.labels == meta["labels"] and t.config == TINY
    assert t.num_params == meta["params"]["total"] > 22_000_000
    texts = ["a gorgeous, moving and funny film", "a dull , lifeless mess", "", "!!!",
             "😀 " * 400]
    z = t.logits(texts)
    assert z.shape == (5, 2) and z.dtype == np.float32 and np.isfinite(z).all()
    assert z[0].argmax() == 1 and z[1].argmax() == 0
    a = t.word_attributions(texts, 32, 24)
    assert a.shape == (5, 32) and a.dtype == np.float32
    for row, text in zip(a, texts):
        n = len(split_words(text.encode(), 24, 32))
        assert abs(row[:n].sum() - (1.0 if n else 0.0)) < 1e-5 and (row[n:] == 0).all()
    # one pass gives both, in chunks, the same as the separate calls
    z2, a2 = t.outputs(texts, 32, 24, chunk=2)
    np.testing.assert_allclose(z2, z, atol=1e-5)
    np.testing.assert_allclose(a2, a, atol=1e-6)


@pytest.mark.slow
def test_memo_agrees_with_a_fresh_forward_pass(small_teacher):
    from mcutext.text.datasets import load_split
    t = load_teacher(small_teacher)
    texts = load_split("sst2", "dev").texts[:40]
    assert all(text_key(x) in t._memo for x in texts)
    memo_z, memo_a = t.logits(texts), t.word_attributions(texts, 32, 24)
    t._memo, t._recent = {}, {}
    z, a = t.logits(texts), t.word_attributions(texts, 32, 24)
    np.testing.assert_allclose(z, memo_z, atol=0.05)
    np.testing.assert_allclose(a, memo_a, atol=0.01)


@pytest.mark.slow
def test_broken_teacher_folders_give_clear_errors(small_teacher, tmp_path):
    with pytest.raises(McutextError, match="no teacher here"):
        load_teacher(tmp_path / "missing")
    for damage in ("teacher.json", "weights.npz"):
        broken = tmp_path / f"broken_{damage}"
        shutil.copytree(small_teacher, broken)
        (broken / damage).write_bytes(b"{not valid")
        with pytest.raises(McutextError, match="broken teacher"):
            load_teacher(broken)
    broken = tmp_path / "no_weights"
    shutil.copytree(small_teacher, broken)
    (broken / "weights.npz").unlink()
    with pytest.raises(McutextError, match="broken teacher"):
        load_teacher(broken)


@pytest.mark.slow
def test_teacher_staleness_and_cli_info(small_teacher):
    import dataclasses
    from click.testing import CliRunner
    from mcutext.cli.commands import cli
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import teacher_is_current
    r = load_recipe("sst2")
    assert teacher_is_current(dataclasses.replace(r, teacher=TINY), small_teacher) == \
        "trained on a subset (--limit)"
    assert "settings changed" in teacher_is_current(r, small_teacher)
    res = CliRunner().invoke(cli, ["teacher", "info", str(small_teacher), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["test"]["n"] == 400


TINY_BILSTM = TeacherConfig(kind="bilstm", rnn_units=32, epochs=3, max_len=48, batch_size=32,
                            seed=seed_override(1))


@pytest.mark.slow
def test_bilstm_teacher_trains_reloads_and_agrees_with_its_memo(tmp_path, monkeypatch,
                                                                 record_property):
    """kind = "bilstm": frozen pretrained embeddings under a BiLSTM trained from scratch."""
    from mcutext.text.datasets import load_split
    from mcutext.model.recipe import load_recipe
    monkeypatch.setenv("MCUTEXT_TEACHER_CACHE", str(tmp_path / "cache"))
    path = train_with_config(load_recipe("sst2"), TINY_BILSTM,
                                         out=tmp_path / "sst2", limit=400)
    meta = json.loads((path / "teacher.json").read_text())
    assert meta["config"]["kind"] == "bilstm" and meta["encoder"]["layers"] == 0
    record_property("test_accuracy", meta["metrics"]["test"]["accuracy"])
    # measured over teacher seeds 1-5 (the same 400 training sentences): 0.640, 0.608,
    # 0.623, 0.668, 0.640 (the bound was 0.6: too close)
    assert meta["metrics"]["test"]["accuracy"] > 0.55, meta["metrics"]
    t = load_teacher(path)
    assert t.config == TINY_BILSTM and t.top is not None
    # the pretrained word embeddings (30,522 x 384) + the BiLSTM + the head; no transformer
    n_emb = 30522 * 384
    assert n_emb < t.num_params == meta["params"]["total"] < n_emb + 1_000_000
    assert meta["params"]["trained"] < 200_000
    texts = load_split("sst2", "dev").texts[:30]
    memo_z, memo_a = t.logits(texts), t.word_attributions(texts, 32, 24)
    t._memo, t._recent = {}, {}
    z, a = t.logits(texts), t.word_attributions(texts, 32, 24)
    np.testing.assert_allclose(z, memo_z, atol=0.05)
    np.testing.assert_allclose(a, memo_a, atol=0.01)
    assert np.isfinite(t.logits(["", "!!!", "😀 " * 400])).all()


# --- distillation: augmentation and the transfer set ------------------------------------------

def test_augmenter_operations_and_determinism():
    from mcutext.train.distill import Augmenter
    nearby = {"good": ["great", "bad"], "film": ["movie"]}
    text = "a good film , truly ( good ) ."
    # replacement only: every replaceable word changes, punctuation around a word is kept
    aug = Augmenter(DistillConfig(mask=0.0, replace=1.0, ngram=0.0), nearby)
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = aug.variant(text, rng).split()
        assert v[0] == "a" and v[2] == "movie" and v[1] in ("great", "bad")
        assert v[6] in ("great", "bad") and v[3:6] + v[7:] == [",", "truly", "(", ")", "."]
    assert Augmenter.core("(Good),") == "good"
    assert aug.variant("(Good),", np.random.default_rng(1)) in ("(great),", "(bad),")
    # masking only: a subsequence of the words
    aug = Augmenter(DistillConfig(mask=0.5, replace=0.0, ngram=0.0), nearby)
    words = text.split()
    for _ in range(20):
        v = aug.variant(text, rng).split()
        it = iter(words)
        assert all(w in it for w in v)
    # n-grams only: a contiguous window of 1..ngram_max words
    aug = Augmenter(DistillConfig(mask=0.0, replace=0.0, ngram=1.0, ngram_max=3), nearby)
    for _ in range(20):
        v = aug.variant(text, rng)
        assert v in text and 1 <= len(v.split()) <= 3
    # the transfer texts are new, distinct, non-empty and reproducible
    aug = Augmenter(DistillConfig(), nearby)
    texts = ["a good film", "a bad film , really", "good"]
    one = aug.transfer_texts(texts, 5, seed=3)
    assert one == aug.transfer_texts(texts, 5, seed=3) != aug.transfer_texts(texts, 5, seed=4)
    assert len(set(one)) == len(one) and all(one) and not set(one) & set(texts)


def test_neighbours_are_similar_words():
    from mcutext.train.distill import neighbours
    nb = neighbours({"good", "film", "stocks", "no-such-word-xyz"}, k=5)
    assert set(nb) == {"good", "film", "stocks"}
    assert "great" in nb["good"] and "movie" in nb["film"] and "shares" in nb["stocks"]
    assert all(len(v) == 5 and w not in v for w, v in nb.items())


@pytest.mark.slow
def test_transfer_set_is_labelled_and_cached(loaded_teacher, monkeypatch):
    import dataclasses
    from mcutext.train import distill
    from mcutext.model.recipe import load_recipe
    r = load_recipe("sst2")
    r = dataclasses.replace(r, distill=dataclasses.replace(r.distill, copies=2))
    texts = ["a gorgeous , moving and funny film", "a dull , lifeless mess",
             "the plot is thin but the acting is good"]
    y = np.array([1, 0, 1])
    ts = distill.transfer_set(r, texts, y, loaded_teacher)
    n = len(ts)
    assert 3 < n <= 9 and ts.texts[:3] == texts
    assert ts.ce_weight.tolist() == [1.0] * 3 + [0.0] * (n - 3)
    assert ts.y[:3].tolist() == [1, 0, 1]
    assert ts.y[3:].tolist() == ts.t_logits[3:].argmax(1).tolist()
    assert ts.t_logits.shape == (n, 2) and ts.t_attr.shape == (n, r.tokenizer.max_words)
    np.testing.assert_allclose(ts.t_attr.sum(1), 1.0, atol=2e-3)
    # the second call reads the cache: no teacher pass on the augmented texts
    calls = []
    real = loaded_teacher.outputs
    monkeypatch.setattr(loaded_teacher, "outputs",
                        lambda t, *a, **k: (calls.append(len(t)), real(t, *a, **k))[1])
    again = distill.transfer_set(r, texts, y, loaded_teacher)
    assert again.texts == ts.texts and calls == [3]
    np.testing.assert_allclose(again.t_logits, ts.t_logits, atol=1e-6)


# --- recipes ----------------------------------------------------------------------------------

def test_recipe_teacher_and_distill_sections(tmp_path):
    from mcutext.model.recipe import load_recipe, recipe_from_dict
    p = tmp_path / "r.toml"
    p.write_text('name="x"\ndataset="sst2"\n[teacher]\ntune_layers=3\n'
                 '[distill]\ncopies=4\n[objective]\nkd_weight=0.5\n'
                 'kd_loss="mse"\n')
    r = load_recipe(p)
    assert r.teacher.tune_layers == 3 and r.distill.copies == 4 and r.objective.kd_loss == "mse"
    assert recipe_from_dict(r.to_dict()) == r
    for body, msg in (('[distill]\ncopy=4\n', r"unknown key 'distill.copy'"),
                      ('[teacher]\nepochs=0\n', r"'teacher.epochs' = 0 is out of range"),
                      ('[objective]\nkd_loss="l1"\n', r"kd_loss must be one of kl, mse"),
                      ('[train]\nlr_schedule="step"\n', r"lr_schedule must be one of")):
        p.write_text('name="x"\ndataset="sst2"\n' + body)
        with pytest.raises(McutextError, match=msg):
            load_recipe(p)
    for name in ("sst2", "ag_news"):
        assert load_recipe(name).objective.uses_teacher


# --- training a student with the teacher ------------------------------------------------------

def test_quick_runs_skip_the_teacher(sst2_small_bundle):
    # `train(limit=...)` must not wait for a teacher: the shared quick fixture trains CE-only
    m = json.loads((sst2_small_bundle / "manifest.json").read_text())
    assert m["training"]["teacher"] is None
    assert m["training"]["transfer_examples"] == m["training"]["examples"] == 2000


@pytest.mark.slow
def test_train_distils_from_the_teacher(small_teacher, tmp_path):
    import dataclasses
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    r = load_recipe("sst2")
    r = dataclasses.replace(
        r, objective=dataclasses.replace(r.objective, teacher=str(small_teacher)),
        distill=dataclasses.replace(r.distill, copies=1))
    path = train(r, out=tmp_path / "bundle", limit=200, epochs=1, test_limit=100, teacher=True)
    m = json.loads((path / "manifest.json").read_text())
    tr = m["training"]
    assert tr["teacher"]["path"] == str(small_teacher) and tr["examples"] == 200
    assert 200 < tr["transfer_examples"] <= 400
    assert m["recipe"]["objective"]["kd_weight"] > 0 and m["metrics"]["test"]["tflm"]["n"] == 100
