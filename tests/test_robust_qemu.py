"""The robust word encoding (tokenizer spec version 2) on the device, under qemu-system-arm.

A small sst2 model is trained through the ordinary train path on a recipe whose tokenizer is
robust: its table is built with RobustTable.build from the training vocabulary (one code per
frequent word, their one-deletion typos sharing it: bench.encoder.frequency_table). The firmware built from the bundle
carries the table in flash (gen/encoding.c); on netduinoplus2 (Cortex-M4F) and microbit
(Cortex-M0), real test sentences and one-edit typos of them give the ids' label and int8
scores byte-identical to TFLite Micro fed the Python encoder's ids.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.encoder import frequency_table, robust_recipe
from mcutext.device.client import Device

pytestmark = pytest.mark.qemu

BOARDS = ["netduinoplus2", "microbit"]
WORDS = 1198        # words of the table (codes: these, padding and the fallback)
TRAIN_SENTENCES = 2000
N_SENTENCES = 60


@pytest.fixture(scope="module")
def robust_bundle(tmp_path_factory):
    from mcutext.int8.bundle import load_bundle
    from mcutext.text.datasets import load_split
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    recipe = load_recipe("sst2")
    recipe = dataclasses.replace(recipe, objective=dataclasses.replace(
        recipe.objective, kd_weight=0.0, map_weight=0.0, adv_weight=0.0))
    texts = load_split("sst2", "train").texts[:TRAIN_SENTENCES]
    table = frequency_table(texts, WORDS, recipe.tokenizer.max_word_bytes,
                            recipe.tokenizer.seed)
    recipe = robust_recipe(recipe, table, "sst2_robust")
    out = tmp_path_factory.mktemp("bundle_sst2_robust") / "bundle"
    path = train(recipe, out=out, limit=TRAIN_SENTENCES, epochs=3, test_limit=200)
    return load_bundle(path)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """Real test sentences and a copy of each with one or two words edited."""
    from mcutext.text.datasets import load_split
    from mcutext.text.perturb import random_perturbation
    texts = load_split("sst2", "test").texts[:N_SENTENCES]
    rng = np.random.default_rng(3)
    return texts + [random_perturbation(t, rng, "char", max_words=2) for t in texts]


def test_bundle_carries_the_table(robust_bundle):
    from mcutext.int8.bundle import ENCODING_FILE
    from mcutext.text.tokenizer import CODE_FALLBACK
    spec = robust_bundle.tokenizer.spec
    assert spec.robust and spec.version == 2 and spec.features_per_word == 1
    assert (robust_bundle.path / ENCODING_FILE).is_file()
    assert robust_bundle.encoding_table.sha256 == spec.table
    ids = robust_bundle.tokenize(["the performance", "the perfomance", "the performence",
                                  "a greatt movie", "a great movie", "zzqx"])
    # a deletion, a substitution, an insertion keep the word's code; unknown: the fallback
    assert ids[0][:2].tolist() == ids[1][:2].tolist() == ids[2][:2].tolist()
    assert ids[3][:3].tolist() == ids[4][:3].tolist()
    assert ids[5][0] == CODE_FALLBACK and CODE_FALLBACK not in ids[4][:3]


@pytest.fixture(scope="module")
def builds(robust_bundle, tmp_path_factory) -> dict:
    from mcutext.firmware.build import build
    out = tmp_path_factory.mktemp("fw_robust")
    return {b: build(robust_bundle.path, b, out / b) for b in BOARDS}


def test_build_reports_the_table(builds, robust_bundle):
    n = len(robust_bundle.encoding_table.keys)
    for rep in builds.values():
        assert rep["encoding_bytes"] == 8 * n + 20
        assert rep["flash_bytes"] > rep["weights_bytes"] + rep["encoding_bytes"]
        assert rep["stack_worst_case"] <= rep["stack_reserve"]
        # the table's arrays are in the image, in flash
        gen = [f for f in rep["generated"] if f.endswith("encoding.c")]
        assert len(gen) == 1


@pytest.fixture(scope="module", params=BOARDS)
def device(request, builds):
    from mcutext.device.qemu import boot
    with boot(builds[request.param]["elf"], request.param) as url:
        with Device(url, timeout=30) as dev:
            yield dev


def test_device_matches_tflite_micro(device, robust_bundle, sentences):
    info = device.info()
    spec = robust_bundle.tokenizer.spec
    assert info["tokenizer"] == {"version": 2, "buckets": spec.buckets,
                                 "max_words": spec.max_words, "features_per_word": 1,
                                 "seed": spec.seed, "max_word_bytes": spec.max_word_bytes,
                                 "keys": len(robust_bundle.encoding_table.keys)}
    want = robust_bundle.run_int8(robust_bundle.tokenize(sentences), "tflm")["logits"]
    tok = []
    for i, text in enumerate(sentences):
        r = device.classify(text)
        assert np.array_equal(np.array(r["scores"], np.int8), want[i]), \
            f"sentence {i} {text!r}: device {r['scores']} TFLM {want[i].tolist()}"
        assert r["words"] == robust_bundle.tokenizer.num_words(text)
        tok.append(r["instructions"]["tokenizer"])
    print(f"\n{info['board']}: {len(sentences)} sentences identical to TFLite Micro; "
          f"encoder instructions per sentence: mean {np.mean(tok):.0f}, max {max(tok)}")
