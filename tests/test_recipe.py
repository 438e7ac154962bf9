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
