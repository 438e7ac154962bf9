"""The training objective's discrete adversary (mcutext.train.objective.Trainer.adversarial_ids) on a
real sst2 student: what it returns is a perturbation of at most `adv_words` words, at least as
bad for the model as the clean text, reproducible per epoch, and never touches what the model
cannot see."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mcutext.text.datasets import load_split
from mcutext.common.errors import McutextError
from mcutext.model.student import build_student
from mcutext.model.recipe import ObjectiveConfig
from mcutext.train.objective import Trainer
from mcutext.model.recipe import load_recipe
from mcutext.text.tokenizer import Tokenizer


def _trainer(search: str, candidates: int = 8, words: int = 2):
    r = load_recipe("sst2")
    obj = dataclasses.replace(r.objective, kd_weight=0.0, map_weight=0.0, adv_weight=0.5,
                              adv_search=search, adv_candidates=candidates, adv_words=words)
    r = dataclasses.replace(r, objective=obj)
    return r, Trainer(r, build_student(r, 2), 2)


def _losses(model, ids, y):
    logits = model.predict(ids, verbose=0)[0].astype(np.float64)
    mx = logits.max(1, keepdims=True)
    logp = logits - mx - np.log(np.exp(logits - mx).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y]


@pytest.mark.parametrize("search", ["joint", "greedy"])
def test_adversary_edits_few_words_and_never_helps_the_model(search):
    r, tr = _trainer(search)
    data = load_split("sst2", "train")
    ids = {lab: i for i, lab in enumerate(sorted(set(data.labels)))}
    texts, y = data.texts[:120], np.asarray([ids[lab] for lab in data.labels[:120]])
    tok = Tokenizer(r.tokenizer)
    clean = tok.encode_batch(texts)
    adv, adv_texts = tr.adversarial_ids(texts, y, tok, epoch=0, with_texts=True)
    assert adv.shape == clean.shape and adv.dtype == clean.dtype
    # the ids are those of the adversarial texts (the greedy search patches the edited word's
    # ids in place instead of tokenizing every candidate)
    assert np.array_equal(adv, tok.encode_batch(adv_texts))
    from mcutext.text.perturb import changed_words
    assert max(len(changed_words(t, a)) for t, a in zip(texts, adv_texts)) <= 2
    K = r.tokenizer.features_per_word
    changed_words = (clean.reshape(len(texts), -1, K) != adv.reshape(len(texts), -1, K)).any(-1)
    assert changed_words.sum(1).max() <= r.objective.adv_words
    assert changed_words.any(1).mean() > 0.5          # most texts do get a perturbation
    # padding stays padding: no word appears where the text had none
    assert not (adv.reshape(len(texts), -1, K)[~(clean.reshape(len(texts), -1, K) > 0).any(-1)]
                ).any()
    if search == "greedy":      # an edit is kept only if it raises the text's loss
        assert np.all(_losses(tr.model, adv, y) >= _losses(tr.model, clean, y) - 1e-4)
    # the same epoch draws the same perturbations; another epoch others
    assert np.array_equal(adv, tr.adversarial_ids(texts, y, tok, epoch=0))
    assert not np.array_equal(adv, tr.adversarial_ids(texts, y, tok, epoch=1))


def test_unknown_search_is_refused():
    with pytest.raises(McutextError, match="adv_search must be one of joint, greedy"):
        ObjectiveConfig(adv_search="beam")
