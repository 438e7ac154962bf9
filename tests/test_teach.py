"""What the "teach new commands" scenario rests on (docs/personalization.md):

- a prototype head (model.head = "prototype") exports as a plain Dense layer whose argmax is
  the cosine classifier's over the class prototypes, with rows and bias in the form the
  device's imprint gives a new label;
- the sentence-mapping targets are unit vectors of the pretrained encoder that put
  paraphrases nearer than unrelated sentences;
- recipe settings are checked;
- the scenario's example draw is fixed and interleaved.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mcutext.common.errors import McutextError
from mcutext.model.recipe import load_recipe


@pytest.fixture(scope="module")
def tiny_recipe():
    r = load_recipe("clinc140")
    return dataclasses.replace(
        r, tokenizer=dataclasses.replace(r.tokenizer, buckets=512, max_words=8),
        model=dataclasses.replace(r.model, embed_dim=8, conv_filters=16, feature_dim=12))


def test_prototype_head_exports_as_dense_with_the_cosine_argmax(tiny_recipe):
    from mcutext.model.student import CosineHead, build_student
    from mcutext.train.pipeline import plain_copy, prototype_head
    n_cls = 5
    m = build_student(tiny_recipe, n_cls, seed=3, training_graph=True)
    head = m.get_layer("head")
    assert isinstance(head, CosineHead)
    rng = np.random.default_rng(0)
    head.center.assign(rng.normal(size=head.center.shape).astype(np.float32) * 0.1)
    L = tiny_recipe.tokenizer.max_words * tiny_recipe.tokenizer.features_per_word
    x = rng.integers(1, 512, size=(200, L)).astype(np.int32)
    y = np.arange(200) % n_cls
    plain = plain_copy(tiny_recipe, m, n_cls)
    for layer in plain.layers:   # weights of a unit scale, so that the features vary
        if layer.weights and layer.name != "head":
            layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                               for w in layer.get_weights()])
    out, center = prototype_head(tiny_recipe, plain, x, y, n_cls)
    w, b = out.get_layer("head").get_weights()
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), tiny_recipe.model.head_scale,
                               rtol=1e-5)
    np.testing.assert_allclose(b, -np.asarray(center, np.float32) @ w, rtol=1e-4, atol=1e-5)
    f = out.predict(x, verbose=0)[2]
    np.testing.assert_allclose(f, plain.predict(x, verbose=0)[2], rtol=1e-5, atol=1e-6)
    u = f - np.asarray(center)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    proto = np.stack([u[y == c].mean(0) for c in range(n_cls)], axis=1)
    proto /= np.linalg.norm(proto, axis=0, keepdims=True)
    np.testing.assert_allclose(w, tiny_recipe.model.head_scale * proto, rtol=1e-4, atol=1e-5)
    cos = u @ proto
    logits = out.predict(x, verbose=0)[0]
    margin = np.sort(cos, axis=1)
    clear = margin[:, -1] - margin[:, -2] > 1e-4
    assert clear.sum() > 150
    assert np.array_equal(logits[clear].argmax(1), cos[clear].argmax(1))
    # the conversion graph gets the Dense head back from the exported model
    assert not isinstance(plain_copy(tiny_recipe, out, n_cls).get_layer("head"), CosineHead)


def test_sentence_targets_are_unit_and_semantic():
    from mcutext.train.sentence import embed
    e = embed(["set a timer for ten minutes", "start a ten minute timer",
               "what is the capital of france"])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_recipe_settings_are_checked(tmp_path):
    from mcutext.model.recipe import load_recipe as lr
    p = tmp_path / "r.toml"
    p.write_text('name = "r"\ndataset = "sst2"\n[model]\nhead = "cosine"\n')
    with pytest.raises(McutextError, match="model.head must be one of dense, prototype"):
        lr(p)
    p.write_text('name = "r"\ndataset = "sst2"\n[model]\nmax_new_labels = 300\n')
    with pytest.raises(McutextError, match="max_new_labels"):
        lr(p)
    from mcutext.train.sentence import extra_texts
    with pytest.raises(McutextError, match="neither a dataset"):
        extra_texts(["nosuchdataset"])


def test_sentence_mapping_refuses_a_teacher(tiny_recipe):
    from mcutext.train.distill import TrainingSet
    from mcutext.model.recipe import ObjectiveConfig
    from mcutext.train.pipeline import with_sentence_targets
    r = dataclasses.replace(tiny_recipe, objective=ObjectiveConfig(
        kd_weight=0.5, embed_weight=1.0, embed_texts=("sst2",)))
    with pytest.raises(McutextError, match="cannot be combined"):
        with_sentence_targets(r, TrainingSet.plain(["a"], np.zeros(1, np.int32), 2, 8))


def test_shot_draw_is_fixed_and_interleaved():
    from bench.teach import shot_indices
    labels = ["a"] * 30 + ["b"] * 30 + ["c"] * 30
    i1 = shot_indices(labels, ["a", "c"], 5, 0)
    assert np.array_equal(i1, shot_indices(labels, ["a", "c"], 5, 0))
    assert [labels[i] for i in i1] == ["a", "c"] * 5 and len(set(i1)) == 10
    assert not np.array_equal(i1, shot_indices(labels, ["a", "c"], 5, 1))
    with pytest.raises(McutextError, match="fewer than 40"):
        shot_indices(labels, ["a"], 40, 0)


def test_linear_features_convert_to_the_supported_ops(tiny_recipe):
    """Linear features have no bias: with one, the converter folds it into the head and
    computes the features output with an ADD, which the student's op set does not have."""
    from mcutext.int8.convert import SUPPORTED_OPS, check_ops, read_model, to_int8
    from mcutext.model.student import build_student
    from mcutext.train.pipeline import batch1_copy
    assert tiny_recipe.model.feature_activation == "linear"
    dense = dataclasses.replace(tiny_recipe, model=dataclasses.replace(tiny_recipe.model,
                                                                         head="dense"))
    m = build_student(dense, 5, seed=1)
    assert len(m.get_layer("features").get_weights()) == 1      # kernel only
    rng = np.random.default_rng(1)
    for layer in m.layers:
        if layer.weights:
            layer.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.3
                               for w in layer.get_weights()])
    L = tiny_recipe.tokenizer.max_words * tiny_recipe.tokenizer.features_per_word
    x = rng.integers(1, 512, size=(50, L)).astype(np.int32)
    ops = check_ops(read_model(to_int8(batch1_copy(dense, m, 5), x)))
    assert set(ops) <= set(SUPPORTED_OPS) and "ADD" not in ops
