"""Sentence embeddings of the pretrained encoder, the target of the sentence-mapping term.

The student's features are trained to map (through a training-only linear layer) onto the
mean-pooled, L2-normalized output of the teacher's pretrained encoder (all-MiniLM-L6-v2, the
six layers frozen as published). That space transfers to intents the student never saw
(docs/personalization.md), which is what the device needs when its owner adds labels.

Embeddings are computed once per list of texts and cached on disk by content, beside the
teacher's cached states.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from ..common import progress
from ..common.errors import McutextError
from ..model.recipe import VOCAB_SOURCE

DIM = 384           # the encoder's hidden size
MAX_PIECES = 64     # pieces per text, [CLS] and [SEP] included


def extra_texts(sources: Sequence[str]) -> list[str]:
    """The unlabelled texts of objective.embed_texts: a dataset name (its train split) or
    "vocab" (every whole word of the encoder's vocabulary, as a one-word text)."""
    from ..text.datasets import has_split, load_split
    out: list[str] = []
    for src in sources:
        if src == VOCAB_SOURCE:
            from .distill import vocab_words
            from .teacher.encoder import load_pretrained
            out += vocab_words(load_pretrained()[2])[0]
        elif has_split(src, "train"):
            out += load_split(src, "train").texts
        else:
            raise McutextError(f"objective.embed_texts: '{src}' is neither a dataset with a "
                               f"train split nor '{VOCAB_SOURCE}'")
    return out


def embed(texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """float32[n, 384]: unit-norm mean-pooled encoder outputs, cached by content."""
    import tensorflow as tf
    from .teacher.encoder import Encoder, attention_bias, load_pretrained
    from .teacher.fit import cache_dir
    from .teacher.trained import text_key
    cfg, weights, wp, sha = load_pretrained()
    h = hashlib.sha256(f"sentence|{sha}|{MAX_PIECES}|{len(texts)}|".encode())
    for t in texts:
        h.update(text_key(t))
    path = cache_dir() / f"sent-{h.hexdigest()[:32]}.npy"
    if path.is_file():
        try:
            out = np.load(path)
            if out.shape == (len(texts), DIM):
                return out
        except (OSError, ValueError):
            pass  # a broken cache entry is recomputed
    enc = Encoder(cfg, dropout=0.0)
    enc.load(weights)

    @tf.function(reduce_retracing=True, input_signature=[
        tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.int32)])
    def forward(ids, mask):
        x = enc.run(enc.embeddings(ids), attention_bias(mask), 0, cfg.layers)
        m = tf.cast(mask, tf.float32)[..., None]
        return tf.math.l2_normalize(tf.reduce_sum(x * m, 1) / tf.reduce_sum(m, 1), -1)

    rows = [wp.encode(t, MAX_PIECES)[0] for t in texts]
    order = np.argsort([len(r) for r in rows], kind="stable")
    out = np.zeros((len(texts), DIM), np.float32)
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    for b in progress.track(batches, len(batches), "sentence embeddings"):
        L = max(len(rows[j]) for j in b)
        ids = np.zeros((len(b), L), np.int32)
        mask = np.zeros((len(b), L), np.int32)
        for r, j in enumerate(b):
            ids[r, :len(rows[j])] = rows[j]
            mask[r, :len(rows[j])] = 1
        out[b] = forward(ids, mask).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out
