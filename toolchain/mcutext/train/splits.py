"""The recipe's train and dev splits: the dataset's dev split, or a seeded share of train held
out for it; the recipe's dropped labels removed; --limit's subset."""

from __future__ import annotations

import numpy as np

from ..common.errors import McutextError
from ..model.recipe import Recipe
from ..text.datasets import Dataset, has_split, limited, load_split


def split_train_dev(recipe: Recipe, limit: int | None = None) -> tuple[Dataset, Dataset]:
    train = load_split(recipe.dataset, "train")
    rng = np.random.default_rng(recipe.train.seed)
    if has_split(recipe.dataset, "dev"):
        dev = load_split(recipe.dataset, "dev")
    else:
        perm = rng.permutation(len(train))
        n_dev = max(1, int(len(train) * recipe.train.dev_fraction))
        dev, train = train.subset(perm[:n_dev]), train.subset(perm[n_dev:])
    if recipe.train.drop_labels:
        unknown = [lab for lab in recipe.train.drop_labels if lab not in set(train.labels)]
        if unknown:
            known = sorted(set(train.labels))
            raise McutextError(f"{recipe.path or recipe.name}: train.drop_labels names "
                               f"{', '.join(map(repr, unknown))}, which {train.source} does "
                               "not have",
                               hint=f"its labels: {', '.join(known[:10])}"
                                    f"{' ...' if len(known) > 10 else ''}")
        train, dev = (drop_labels(d, recipe.train.drop_labels) for d in (train, dev))
    if limit is not None:
        train = limited(train, limit, rng)
        dev = dev.subset(range(min(len(dev), max(100, limit // 5))))
    return train, dev


def drop_labels(data: Dataset, labels) -> Dataset:
    drop = set(labels)
    return data.subset([i for i, y in enumerate(data.labels) if y not in drop])
