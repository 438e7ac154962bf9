"""Recipes: every shipped recipe loads; unknown keys and impossible values are clear errors."""

import pytest

from mcutext.common.errors import McutextError
from mcutext.model.recipe import load_recipe, models_dir


@pytest.mark.parametrize("name", ["sst2", "sms_spam", "ag_news", "clinc150"])
def test_shipped_recipes_load(name):
    r = load_recipe(name)
    assert r.name == name and r.dataset == name
    assert (models_dir() / f"{name}.toml").is_file()


@pytest.mark.parametrize("body,msg", [
    ('name="x"\ndataset="sst2"\n[model]\nembed_dims=3\n', r"unknown key 'model.embed_dims'"),
    ('name="x"\ndataset="sst2"\n[train]\nepochs=0\n', r"'train.epochs' = 0 is out of range"),
    ('name="x"\ndataset="sst2"\n[train]\nepochs="ten"\n', r"'train.epochs' must be int"),
    ('name="x"\ndataset="sst2"\nflavour="big"\n', r"unknown key\(s\) flavour"),
    ('dataset="sst2"\n', r"'name' must be a non-empty string"),
    ('name="x"\ndataset="sst2"\n[tokenizer]\nbuckets=1\n', r"buckets must be in"),
    ('name="x"\ndataset="sst2"\n[model\n', r"not valid TOML"),
    ('name="v"\nbase="imdb"\n', r"base: unknown recipe 'imdb'"),
    ('name="v"\nbase=3\n', r"'base' must be the name of a recipe"),
    ('name="v"\nbase="bad.toml"\n', r"more than 4 deep"),
    ('name="v"\nbase="sst2"\n[model]\nembed_dims=3\n', r"unknown key 'model.embed_dims'"),
])
def test_recipe_errors_name_the_file(tmp_path, body, msg):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(McutextError, match=msg) as e:
        load_recipe(p)
    assert str(p) in str(e.value)


def test_unknown_recipe_lists_known():
    with pytest.raises(McutextError, match=r"unknown recipe 'imdb': no .*/models/imdb.toml "
                                           r"\(known: .*sst2") as e:
        load_recipe("imdb")
    assert ".toml" in e.value.hint


@pytest.mark.parametrize("name", ["sst2", "sms_spam", "ag_news", "ag_news_96k", "clinc150_96k"])
def test_full_objective_is_the_default(name):
    """Every recipe with a teacher trains with all three parts of the objective."""
    o = load_recipe(name).objective
    assert o.kd_weight > 0 and o.map_weight > 0 and o.adv_weight > 0


@pytest.mark.parametrize("name", ["ag_news_96k", "clinc150_96k"])
def test_96k_recipes_are_variants_within_the_budget(name):
    """The baselines comparison's students for the two datasets whose recipes exceed 96 KB:
    the base recipe with a table small enough for 96 KB of int8 weights."""
    r = load_recipe(name)
    base = load_recipe(name.removesuffix("_96k"))
    assert r.name == name and r.dataset == base.dataset
    assert r.tokenizer.buckets * r.model.embed_dim <= 90 * 1024
    assert base.tokenizer.buckets * base.model.embed_dim > 96 * 1024
    assert r.train == base.train and r.eval == base.eval


def test_base_merges_key_by_key_and_shares_the_teacher(tmp_path):
    p = tmp_path / "v.toml"
    p.write_text('name = "v"\nbase = "sst2"\n[model]\nconv_filters = 32\n'
                 '[objective]\nadv_weight = 0.25\n')
    r, base = load_recipe(p), load_recipe("sst2")
    assert r.name == "v" and r.dataset == "sst2"
    assert r.model.conv_filters == 32 and r.model.embed_dim == base.model.embed_dim
    assert r.objective.adv_weight == 0.25 and r.objective.kd_weight == base.objective.kd_weight
    assert r.tokenizer == base.tokenizer and r.teacher == base.teacher
    from mcutext.train.teacher.trained import default_out
    assert default_out(r) == default_out(base) and default_out(base).name == "sst2"
    # a variant of a variant still shares it
    q = tmp_path / "w.toml"
    q.write_text('name = "w"\nbase = "v.toml"\n[train]\nepochs = 3\n')
    w = load_recipe(q)
    assert w.train.epochs == 3 and w.model.conv_filters == 32 and default_out(w).name == "sst2"
    # its own [teacher] settings -> its own teacher folder
    q.write_text('name = "w"\nbase = "sst2"\n[teacher]\nepochs = 1\n')
    w = load_recipe(q)
    assert w.teacher.epochs == 1 and default_out(w).name == "w"
    # the stored recipe keeps it (bundles are re-read from their manifest)
    from mcutext.model.recipe import recipe_from_dict
    assert recipe_from_dict(r.to_dict()) == r



def test_paths_are_relative_to_the_recipe_file(tmp_path):
    """dataset, base (a .toml path) and objective.teacher / embed_texts folders resolve against
    the folder of the file that names them; the named datasets stay names."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.toml").write_text(
        'name = "b"\ndataset = "../data/x"\n[objective]\nteacher = "t"\n'
        'embed_texts = ["sst2", "vocab", "more"]\n')
    (tmp_path / "proj").mkdir()
    v = tmp_path / "proj" / "v.toml"
    v.write_text('name = "v"\nbase = "../shared/base.toml"\n')
    r = load_recipe(v)
    assert r.dataset == str(tmp_path / "data" / "x")   # the base's folder, not proj/ or cwd
    assert r.objective.teacher == str(tmp_path / "shared" / "t")
    assert r.objective.embed_texts == ("sst2", "vocab", str(tmp_path / "shared" / "more"))
    v.write_text('name = "v"\nbase = "../shared/base.toml"\ndataset = "data"\n')
    assert load_recipe(v).dataset == str(tmp_path / "proj" / "data")
    v.write_text('name = "v"\nbase = "sst2"\n')
    assert load_recipe(v).dataset == "sst2"
    v.write_text(f'name = "v"\ndataset = "{tmp_path / "abs"}"\n')
    assert load_recipe(v).dataset == str(tmp_path / "abs")


def test_missing_base_and_dataset_errors_say_where_they_looked(tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    monkeypatch.chdir(tmp_path)
    v = tmp_path / "proj" / "v.toml"
    v.write_text('name = "v"\nbase = "other.toml"\n')
    with pytest.raises(McutextError) as e:
        load_recipe("proj/v.toml")
    assert f"{tmp_path / 'proj' / 'other.toml'}: no such recipe file" in str(e.value)
    assert "relative to the folder of proj/v.toml" in str(e.value)
    v.write_text('name = "v"\ndataset = "data"\n')
    from mcutext.text.datasets import load_split
    with pytest.raises(McutextError, match=f"no folder {tmp_path / 'proj' / 'data'}$") as e:
        load_split(load_recipe("proj/v.toml").dataset, "train")
    assert "relative to the recipe file's folder" in e.value.hint


def _real_rows(src, n: int) -> str:
    """The header and the first n rows of a real dataset file, with both labels present."""
    lines = src.read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[:n + 1]) + "\n"


@pytest.mark.slow
def test_recipe_in_another_folder_trains_from_any_directory(tmp_path):
    """A recipe naming `dataset = "data"` trains and evaluates from an unrelated working
    directory; a folder without dev.tsv gets a held-out dev split, and train says so."""
    import json
    import os
    import subprocess
    import sys

    from mcutext.text.datasets import data_dir
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    (proj / "data").mkdir(parents=True)
    elsewhere.mkdir()
    (proj / "data" / "train.tsv").write_text(_real_rows(data_dir() / "sst2" / "train.tsv", 400))
    (proj / "data" / "test.tsv").write_text(_real_rows(data_dir() / "sst2" / "test.tsv", 100))
    (proj / "mine.toml").write_text('name = "mine"\nbase = "sst2"\ndataset = "data"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def mcutext(*args):
        return subprocess.run([sys.executable, "-m", "mcutext.cli", *args], cwd=elsewhere,
                              env=env, capture_output=True, text=True, timeout=900)

    p = mcutext("train", "../proj/mine.toml", "--limit", "200", "--epochs", "1",
                "--out", "bundle")
    assert p.returncode == 0, p.stderr
    m = json.loads((elsewhere / "bundle" / "manifest.json").read_text())
    assert m["dataset"] == str(proj / "data") and m["training"]["examples"] == 200
    assert m["metrics"]["test"]["tflm"]["n"] == 100
    dev_line = [x for x in p.stdout.splitlines() if x.startswith("dev: ")]
    assert dev_line == [f"dev: {m['training']['dev_examples']} examples held out from train "
                        "(0.1 of it, train.dev_fraction): the dataset has no dev split; they "
                        "are not trained on"]
    other = tmp_path / "third"
    other.mkdir()
    q = subprocess.run([sys.executable, "-m", "mcutext.cli", "evaluate",
                        str(elsewhere / "bundle"), "--json"], cwd=other, env=env,
                       capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["n"] == 100
