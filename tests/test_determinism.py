"""Deterministic training: the same recipe, seed and machine give the same bundle, byte for
byte, each time from an empty build folder (docs/model.md): the int8 model, and the manifest
less the wall times it reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mcutext.int8.bundle import TFLITE_FILE
from mcutext.model.recipe import load_recipe


def without_times(obj):
    """The manifest less what measures wall time (the keys ending in 'seconds')."""
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if not k.endswith("seconds")}
    if isinstance(obj, list):
        return [without_times(v) for v in obj]
    return obj


def twice(tmp_path: Path, make) -> list[Path]:
    """make(build) twice in the same, empty, folder; what the first run made is moved aside
    before the second starts. Returns the two folders."""
    runs = []
    for i in range(2):
        build = tmp_path / "build"
        make(build)
        runs.append(build.rename(tmp_path / f"run{i}"))
    return runs


def assert_same_bundle(a: Path, b: Path) -> dict:
    assert (a / TFLITE_FILE).read_bytes() == (b / TFLITE_FILE).read_bytes()
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert without_times(ma) == without_times(mb)
    fp = ma["fingerprint"]
    assert fp["threads"] == {"intra_op": 2, "inter_op": 2}
    assert set(fp["data"]) == {"train", "dev", "test"}
    return ma


@pytest.mark.slow
def test_training_twice_gives_the_same_bundle(tmp_path):
    """sst2 without a teacher (--limit): cross-entropy, dropout, word dropout, data order and
    the adversarial term (the training adversary's random edits, FGM)."""
    from mcutext.train.pipeline import train
    recipe = load_recipe("sst2")
    assert recipe.objective.adv_weight > 0 and recipe.model.word_dropout > 0

    a, b = twice(tmp_path, lambda build: train(recipe, out=build / "bundle", limit=300,
                                               epochs=2, test_limit=50))
    m = assert_same_bundle(a / "bundle", b / "bundle")
    assert m["fingerprint"]["teacher_sha256"] is None
    assert m["recipe"]["objective"]["adv_weight"] > 0


@pytest.mark.slow
def test_distilling_twice_gives_the_same_teacher_transfer_set_and_bundle(tmp_path, monkeypatch):
    """The full objective (KD, explainable feature mapping, adversarial): a tiny teacher
    trained from scratch in each run (its frozen-layer states cached in the build folder),
    its transfer set, and the student distilled from it."""
    from mcutext.train.teacher.trained import WEIGHTS_FILE
    from mcutext.model.recipe import TeacherConfig
    from mcutext.train.teacher.fit import train_with_config
    from mcutext.train.pipeline import _npz_sha256, train
    base = load_recipe("sst2")

    def make(build: Path) -> None:
        monkeypatch.setenv("MCUTEXT_TEACHER_CACHE", str(build / "states"))
        teacher = train_with_config(base, TeacherConfig(tune_layers=1, epochs=1, max_len=32),
                                    out=build / "teacher", limit=100)
        r = dataclasses.replace(
            base, objective=dataclasses.replace(base.objective, teacher=str(teacher),
                                                adv_candidates=4),
            distill=dataclasses.replace(base.distill, copies=1))
        train(r, out=build / "bundle", limit=100, epochs=1, test_limit=50, teacher=True)

    a, b = twice(tmp_path, make)
    assert _npz_sha256(a / "teacher" / WEIGHTS_FILE) == _npz_sha256(b / "teacher" / WEIGHTS_FILE)
    # the transfer set's file is named after the teacher's teacher.json, which holds its times
    (ta,), (tb,) = ((p / "teacher").glob("transfer-*.npz") for p in (a, b))
    assert _npz_sha256(ta) == _npz_sha256(tb)
    m = assert_same_bundle(a / "bundle", b / "bundle")
    assert m["fingerprint"]["teacher_sha256"] == _npz_sha256(a / "teacher" / WEIGHTS_FILE)
    obj = m["recipe"]["objective"]
    assert obj["kd_weight"] > 0 and obj["map_weight"] > 0 and obj["adv_weight"] > 0
    assert m["training"]["transfer_examples"] > m["training"]["examples"] == 100
