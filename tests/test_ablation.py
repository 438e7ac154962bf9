"""`mcutext ablate` on a tiny budget: a tiny real teacher (MiniLM with one tuned layer, 400
sst2 sentences, as in test_teacher.py), four students on 600 sentences for two epochs, the
table with its four rows."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from mcutext.model.recipe import TeacherConfig

pytest.importorskip("safetensors")
pytestmark = pytest.mark.slow

TINY = TeacherConfig(tune_layers=1, epochs=2, max_len=48)


def tiny() -> TeacherConfig:
    from conftest import seed_override
    seed = seed_override()
    return TINY if seed is None else dataclasses.replace(TINY, seed=seed)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    from mcutext.train.teacher.fit import train_with_config
    from mcutext.model.recipe import load_recipe
    cache = tmp_path_factory.mktemp("teacher_cache")
    old = os.environ.get("MCUTEXT_TEACHER_CACHE")
    os.environ["MCUTEXT_TEACHER_CACHE"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("teacher") / "sst2"
        return train_with_config(load_recipe("sst2"), tiny(), out=out, limit=400)
    finally:
        if old is None:
            os.environ.pop("MCUTEXT_TEACHER_CACHE", None)
        else:
            os.environ["MCUTEXT_TEACHER_CACHE"] = old


@pytest.fixture(scope="module")
def recipe_file(tiny_teacher, tmp_path_factory):
    """The sst2 recipe pointed at the tiny teacher, one augmented copy per sentence."""
    from mcutext.model.recipe import models_dir
    import re
    from conftest import seed_override
    text = (models_dir() / "sst2.toml").read_text()
    if seed_override() is not None:
        text, n = re.subn(r"(?m)^seed = .*$", f"seed = {seed_override()}", text)
        assert n == 1
    # a budget small enough for a test that still learns something: fewer augmented copies,
    # a larger step, less dropout, small batches on the transfer set too
    for key, value in (("copies", "1"), ("dropout", "0.2"), ("learning_rate", "0.01")):
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
    text, n = re.subn(r"(?m)^(\[distill\][^\[]*?)^batch_size = .*$", r"\1batch_size = 32", text)
    assert n == 1
    # FGM steps of 10 % of the embedding norm: with 50 % the adversarial arm does not leave
    # chance level within this budget (measured: 0.49 vs 0.68 on 100 sentences)
    text, n = re.subn(r"(?m)^fgm_epsilon = .*$", "fgm_epsilon = 0.1", text)
    assert n == 1
    assert text.count("[objective]\n") == 1
    text = text.replace("[objective]\n", f'[objective]\nteacher = "{tiny_teacher}"\n')
    path = tmp_path_factory.mktemp("recipe") / "sst2_tiny.toml"
    path.write_text(text)
    return path


def test_ablate_writes_four_sane_rows(recipe_file, tiny_teacher, tmp_path, capsys,
                                     record_property):
    from mcutext.studies.ablation import ARMS
    from mcutext.cli import main
    out = tmp_path / "ablation"
    code = main(["ablate", str(recipe_file), "--limit", "600", "--epochs", "2", "--n-eval",
                 "20", "--test-limit", "100", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = json.loads(captured.out)
    record_property("arms", {r["arm"]: {k: round(r[k], 4) for k in (
        "clean_accuracy", "float_accuracy", "spearman", "top_k_overlap")} for r in rows})
    summary = json.loads((out / "ablation.json").read_text())
    record_property("spearman_n", {r["arm"]: summary["arms"][r["arm"]]["explanations"]["tflm"]
                                   ["agreement"]["spearman_n"] for r in rows})
    assert [r["arm"] for r in rows] == [a[0] for a in ARMS]
    # the recipe's own a = 0.5, b = 0.1, c = 0.5
    assert [(r["kd_weight"], r["map_weight"], r["adv_weight"]) for r in rows] == [
        (0, 0, 0), (0.5, 0, 0), (0.5, 0.1, 0), (0.5, 0.1, 0.5)]
    assert summary["rows"] == rows and summary["teacher"] == str(tiny_teacher)
    sizes = {r["int8_weights_bytes"] for r in rows}
    assert len(sizes) == 1 and 0 < sizes.pop() <= 96 * 1024   # same student, same size
    seeds = set()
    for r in rows:
        arm = summary["arms"][r["arm"]]
        m = json.loads((out / r["arm"] / "manifest.json").read_text())
        assert arm["bundle"] == str(out / r["arm"])
        assert m["recipe"]["objective"]["kd_weight"] == r["kd_weight"]
        assert m["recipe"]["objective"]["adv_weight"] == r["adv_weight"]
        seeds.add((m["recipe"]["train"]["seed"], m["recipe"]["distill"]["seed"]))
        assert m["training"]["examples"] == 600 and m["training"]["epochs"] == 2
        # the CE arm trains without the teacher; the others distil from the tiny one
        teacher = m["training"]["teacher"]
        assert (teacher is None) == (r["arm"] == "ce")
        if teacher:
            assert teacher["path"] == str(tiny_teacher)
            assert 600 < r["transfer_examples"] <= 1200
        assert r["test_n"] == 100 and r["eval_n"] == 20
        for key in ("clean_accuracy", "float_accuracy", "char_accuracy", "word_accuracy",
                    "top_k_overlap", "top_k_overlap_random"):
            assert 0 <= r[key] <= 1, (r["arm"], key, r[key])
        for key in ("comprehensiveness", "sufficiency", "aopc", "comprehensiveness_random",
                    "sufficiency_random", "aopc_random", "spearman"):
            assert -1 <= r[key] <= 1, (r["arm"], key, r[key])
        # certified at 2 edits implies certified at 1; the CE arm removes none of its errors
        assert 0 <= r["certified_2"] <= r["certified_1"] <= 1
        assert {k: c["n"] for k, c in arm["certified"].items()} == {"1": 20, "2": 20}
        for short in ("char", "word"):
            removed = r[f"{short}_errors_removed"]
            assert removed is None or 0 <= removed <= 1
            if r["arm"] == "ce":
                assert removed in (None, 0.0)
            att = arm["attacks"][short]
            assert att["n"] == 20 and att["budget"] == 2 and att["runtime"] == "tflm"
            # an attack never makes the model more accurate on the same sentences
            assert r[f"{short}_accuracy"] == att["accuracy_under_attack"] <= \
                att["clean_accuracy"]
        ag = arm["explanations"]["tflm"]["agreement"]
        assert ag["n"] == 20 and ag["spearman_n"] + ag["spearman_undefined"] <= 20
        assert arm["explanations"]["keras"]["faithfulness"]["n"] == 20
        assert r["train_seconds"] > 0
        # Spearman is defined where the attention is not flat. Measured over seeds 1-5, of
        # 20: kd_map and kd_map_adv 20 each time; ce 20, 20, 20, 20, 16; kd 20, 20, 8, 20, 11
        # (kd stayed at chance on seed 3; the bound was 10 for every arm)
        assert ag["spearman_n"] >= (10 if r["arm"] in ("ce", "kd_map") else 5)
    assert len(seeds) == 1   # same seeds everywhere
    # Measured over seeds 1-5 (MCUTEXT_TEST_SEED, conftest: the students' and the tiny
    # teacher's): clean accuracy per arm 0.49 to 0.70 on these 100 sentences. At this budget
    # an arm can stay at chance (kd on seed 3, ce on seed 4: 0.49; the bound was 0.55 for
    # every arm), so the bound is on the best arm: 0.68, 0.69, 0.68, 0.65, 0.70 (float
    # 0.67, 0.69, 0.68, 0.65, 0.70)
    assert max(r["clean_accuracy"] for r in rows) > 0.6
    assert max(r["float_accuracy"] for r in rows) > 0.6
    # the mapping term is what aligns the student's attention with the teacher's. Measured
    # over seeds 1-5: Spearman kd_map - ce 0.47, 0.54, 0.60, 0.33, 0.41; top-k overlap
    # kd_map 0.50, 0.47, 0.43, 0.32, 0.27 against ce 0.15, 0.18, 0.22, 0.15, 0.20
    by_arm = {r["arm"]: r for r in rows}
    assert by_arm["kd_map"]["spearman"] > by_arm["ce"]["spearman"] + 0.1
    assert by_arm["kd_map"]["top_k_overlap"] > by_arm["ce"]["top_k_overlap"]
    md = (out / "ablation.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 4
    for (_, title, _), line in zip(ARMS, table[1:]):
        assert line.startswith(f"| {title} |")
    assert "mcutext ablate sst2 --limit 600 --epochs 2 --n-eval 20" in md
    # the bench's combined table (python -m bench --only ablation) from the same rows
    from bench.run import write_ablation
    write_ablation(tmp_path / "bench", {"sst2": rows})
    bench_md = (tmp_path / "bench" / "ablation.md").read_text()
    assert [line.split(" | ")[1] for line in bench_md.splitlines()
            if line.startswith("| sst2 |")] == [a[1] for a in ARMS]
    assert [r["arm"] for r in json.loads((tmp_path / "bench" / "ablation.json").read_text())] \
        == [a[0] for a in ARMS]
