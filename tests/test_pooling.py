"""model.pooling = "mean" (docs/robustness.md): every word present weighs 1 / words. A tiny
bundle (sst2 with 8 hashed features per word, cross-entropy alone, 200 real sentences, one
epoch) converts to int8 with only the ops TFLite Micro and the code generator run, its
attention output is the uniform weight over the words, and the generated C gives TFLite
Micro's bytes on real test sentences. The default stays attention pooling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mcutext.codegen.driver import generate
from mcutext.firmware import hostbuild
from mcutext.int8.bundle import load_bundle
from mcutext.int8.convert import SUPPORTED_OPS
from mcutext.text.datasets import load_split
from mcutext.model.student import MEAN_POOL_OPS, build_student
from mcutext.model.recipe import load_recipe

N = 60


@pytest.fixture(scope="module")
def mean_bundle(tmp_path_factory):
    from mcutext.train.pipeline import train
    r = load_recipe("sst2")
    r = dataclasses.replace(
        r, name="sst2_mean_pool",
        model=dataclasses.replace(r.model, pooling="mean"),
        objective=dataclasses.replace(r.objective, kd_weight=0.0, map_weight=0.0,
                                      adv_weight=0.0))
    out = tmp_path_factory.mktemp("bundle_mean_pool") / "bundle"
    return train(r, out=out, limit=200, epochs=1, test_limit=N)


def test_default_is_attention_pooling():
    r = load_recipe("sst2")
    assert r.model.pooling == "attention"
    names = {layer.name for layer in build_student(r, 2).layers}
    assert "attention_logits" in names and "presence" not in names


def test_pooling_is_checked():
    from mcutext.common.errors import McutextError
    from mcutext.model.recipe import ModelConfig
    with pytest.raises(McutextError, match="model.pooling must be one of"):
        ModelConfig(pooling="max")
    with pytest.raises(McutextError, match="needs model.arch = 'cnn'"):
        ModelConfig(arch="fastgrnn", pooling="mean")


@pytest.mark.slow
def test_mean_pooling_converts_and_the_generated_c_agrees(mean_bundle, tmp_path):
    b = load_bundle(mean_bundle)
    ops = set(b.manifest["int8"]["ops"])
    assert {"MINIMUM", "GATHER", "SOFTMAX"} <= ops <= set(SUPPORTED_OPS + MEAN_POOL_OPS)
    texts = load_split("sst2", "test").texts[:N]
    ids = b.tokenize(texts)
    ref = b.run_int8(ids, "tflm")
    # the attention output: one value for every word present, zero weight for padding
    K = b.tokenizer.spec.features_per_word
    q = b.manifest["int8"]["outputs"]["attention"]
    for row, a in zip(ids.reshape(len(ids), -1, K), ref["attention"]):
        present = row[:, 0] != 0
        n = int(present.sum())
        assert (a[~present] == q["zero_point"]).all()
        w = (a[present].astype(float) - q["zero_point"]) * q["scale"]
        assert np.ptp(a[present]) == 0 and abs(w[0] - 1 / n) < 0.6 * q["scale"] + 1e-6
    info = generate(mean_bundle, tmp_path / "gen")
    assert "MINIMUM" in info["ops"]
    m = hostbuild.build_model(mean_bundle, tmp_path / "dsp", "dsp")
    got = m.run(ids)
    for k in ("logits", "attention", "features"):
        assert (got[k] == ref[k]).all(), k
