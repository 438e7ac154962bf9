"""What the teacher puts on the encoder, by teacher kind: the attention-pooling classifier
(every kind) and, for `bilstm`, a recurrent layer between the encoder and the pooling.
"""

from __future__ import annotations

import numpy as np

from ...model.recipe import TeacherConfig
from .encoder import Encoder, EncoderConfig, NEG, _keras


class PoolingHead(_keras().layers.Layer):
    """Attention pooling over token states, then a linear classifier."""

    def __init__(self, hidden: int, attn_hidden: int, n_classes: int, dropout: float, **kw):
        super().__init__(**kw)
        keras = _keras()
        self.score_hidden = keras.layers.Dense(attn_hidden, activation="tanh", name="score_hidden")
        self.score = keras.layers.Dense(1, name="score")
        self.classifier = keras.layers.Dense(n_classes, name="classifier")
        self.drop = keras.layers.Dropout(dropout)
        self.hidden = hidden

    def build(self, input_shape):
        self.score_hidden.build((None, None, self.hidden))
        self.score.build((None, None, self.score_hidden.units))
        self.classifier.build((None, self.hidden))

    def named_variables(self) -> dict:
        out = {}
        for layer in (self.score_hidden, self.score, self.classifier):
            out[f"head.{layer.name}.kernel"] = layer.kernel
            out[f"head.{layer.name}.bias"] = layer.bias
        return out

    def call(self, states, pool, training=False):
        """states [B, L, H], pool [B, L] (1 = may receive weight) -> logits [B, C], weights [B, L]."""
        import tensorflow as tf
        s = self.score(self.score_hidden(states))[..., 0]
        s = tf.where(pool > 0, s, NEG)
        w = tf.nn.softmax(s, axis=-1)
        pooled = tf.reduce_sum(w[..., None] * states, axis=1)
        return self.classifier(self.drop(pooled, training=training)), w


class RecurrentTop(_keras().layers.Layer):
    """kind = "bilstm": a bidirectional LSTM over the frozen input embeddings (masked), in place
    of the transformer layers; its states [B, L, 2 * units] feed the pooling head."""

    def __init__(self, units: int, hidden: int, dropout: float, **kw):
        super().__init__(**kw)
        keras = _keras()
        self.rnn = keras.layers.Bidirectional(
            keras.layers.LSTM(units, return_sequences=True), name="bilstm")
        self.drop = keras.layers.Dropout(dropout)
        self.hidden, self.units = hidden, units

    def build(self, input_shape):
        self.rnn.build((None, None, self.hidden))

    def named_variables(self) -> dict:
        return {f"rnn.{i}": v for i, v in enumerate(self.rnn.weights)}

    def call(self, x, valid, training=False):
        """x [B, L, H] embeddings, valid [B, L] 0/1 -> states [B, L, 2 * units]."""
        import tensorflow as tf
        h = self.rnn(self.drop(x, training=training), mask=tf.cast(valid, tf.bool),
                     training=training)
        return tf.identity(h)  # a plain tensor: the pooling head takes its own mask


def build_head(cfg: TeacherConfig, enc_cfg: EncoderConfig, n_classes: int) -> PoolingHead:
    hidden = 2 * cfg.rnn_units if cfg.kind == "bilstm" else enc_cfg.hidden
    head = PoolingHead(hidden, cfg.attn_hidden, n_classes, cfg.dropout, name="head")
    head.build(None)
    return head


def build_top(cfg: TeacherConfig, enc_cfg: EncoderConfig) -> RecurrentTop | None:
    if cfg.kind != "bilstm":
        return None
    top = RecurrentTop(cfg.rnn_units, enc_cfg.hidden, cfg.dropout, name="top")
    top.build(None)
    return top


def count_params(encoder: Encoder, head: PoolingHead, top: RecurrentTop | None) -> int:
    """Parameters the teacher runs: for kind "bilstm" the input embeddings, not the unused
    transformer layers."""
    if top is None:
        n = encoder.num_params
    else:
        n = int(sum(np.prod(v.shape) for v in encoder.embeddings.weights))
        n += int(sum(np.prod(v.shape) for v in top.weights))
    return n + int(sum(np.prod(v.shape) for v in head.weights))
