"""Recipes: every shipped recipe loads; unknown keys and impossible values are clear errors."""

import pytest

from mcutext.errors import McutextError
from mcutext.recipe import load_recipe, models_dir


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
    with pytest.raises(McutextError, match=r"unknown recipe 'imdb' \(known: .*sst2"):
        load_recipe("imdb")


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
    from mcutext.teacher import default_out
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
    from mcutext.recipe import recipe_from_dict
    assert recipe_from_dict(r.to_dict()) == r

