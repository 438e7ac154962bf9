"""HotFlip on the float Keras model: embedding gradients choose the word and its replacement.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import McutextError
from ..int8.bundle import Bundle
from ..text import perturb
from .catalog import CHAR_EDITS_PER_KIND, HOTFLIP_BEAM, HOTFLIP_SYNONYMS
from .classifiers import _compiled_logits
from .search import Context, Found


class WhiteBox:
    """Gradients of the float model's loss with respect to its hashed-feature embeddings."""

    def __init__(self, bundle: Bundle):
        import keras
        model = bundle.keras_model()
        emb = next((layer for layer in model.layers
                    if type(layer).__name__ == "HashEmbedding"), None)
        if emb is None:
            raise McutextError("hotflip needs a model with a hashed embedding layer")
        self.bundle = bundle
        self.model = model
        self.embedding = emb
        self.table = np.asarray(keras.ops.convert_to_numpy(emb.table), np.float64)
        body = keras.Model(emb.output, model.outputs[0])
        spec = bundle.tokenizer.spec
        self.K, self.L = spec.features_per_word, spec.max_words
        self.rows = 0
        import tensorflow as tf

        def grad(ids, y):
            with tf.GradientTape() as tape:
                e = emb(ids)
                tape.watch(e)
                logits = body(e, training=False)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            return loss, logits, tape.gradient(loss, e)

        self._grad = tf.function(grad, input_signature=[
            tf.TensorSpec([1, spec.seq_len], tf.int32), tf.TensorSpec([1], tf.int32)])
        self._logits = _compiled_logits(bundle)

    def gradient(self, ids: np.ndarray, y: int) -> tuple[float, np.ndarray, np.ndarray]:
        """(loss, logits, d loss / d embeddings [L, K, D]) for one id row."""
        self.rows += 1
        loss, logits, g = self._grad(ids[None, :].astype(np.int32), np.array([y], np.int32))
        g = np.asarray(g)[0].astype(np.float64)
        return float(loss[0]), np.asarray(logits)[0], g.reshape(self.L, self.K, -1)

    def logits(self, texts: list[str]) -> np.ndarray:
        self.rows += len(texts)
        return np.asarray(self._logits(self.bundle.tokenize(texts)), np.float64)

    def word_features(self, word: str) -> np.ndarray:
        return self.bundle.tokenizer.encode(word)[:self.K]


def _cross_entropy(logits: np.ndarray, y: int) -> np.ndarray:
    m = logits.max(axis=1, keepdims=True)
    return (np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]) - logits[:, y]


def attack_hotflip(ctx: Context) -> Found:
    wb, s, y = ctx.white_box, ctx.sentence, ctx.y
    words = s.word_indices(ctx.visible)
    cands: dict[int, list[str]] = {}
    for i in words:
        w = s.tokens[i]
        c = perturb.char_candidates(w, ctx.rng, CHAR_EDITS_PER_KIND)
        c += [x for x in perturb.synonyms(w, HOTFLIP_SYNONYMS) if x not in c]
        if c:
            cands[i] = c
    feats = {(i, c): wb.table[wb.word_features(c)] for i, cs in cands.items() for c in cs}
    edits: dict[int, str] = {}
    rows_before = wb.rows
    for _ in range(ctx.budget):
        ids = ctx.bundle.tokenize([s.render(edits)])[0]
        cur_loss, _, g = wb.gradient(ids, y)
        ids = ids.reshape(wb.L, wb.K)
        scored = []
        for (i, c), f in feats.items():
            if i in edits:
                continue
            gain = float(np.sum(g[i] * (f - wb.table[ids[i]])))
            scored.append((gain, i, c))
        if not scored:
            break
        scored.sort(key=lambda t: -t[0])
        beam = scored[:HOTFLIP_BEAM]
        trial = [s.render({**edits, i: c}) for _, i, c in beam]
        lg = wb.logits(trial)
        losses = _cross_entropy(lg, y)
        flipped = lg.argmax(axis=1) != y
        if flipped.any():
            j = int(np.flatnonzero(flipped)[np.argmax(losses[flipped])])
            edits[beam[j][1]] = beam[j][2]
            return Found(edits, True, {"white_box_queries": wb.rows - rows_before})
        j = int(np.argmax(losses))
        if losses[j] <= cur_loss:
            break
        edits[beam[j][1]] = beam[j][2]
    return Found(edits, False, {"white_box_queries": wb.rows - rows_before})
