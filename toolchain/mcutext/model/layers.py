"""Keras layers the student and the baselines share: the hashed embedding lookup (a plain
GATHER, which TFLite Micro runs) and word dropout (training only)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


@keras.saving.register_keras_serializable(package="mcutext")
class PadZero(keras.constraints.Constraint):
    """Keeps row 0 (the padding id) of an embedding table at exactly zero."""

    def __call__(self, w):
        mask = tf.concat([tf.zeros_like(w[:1]), tf.ones_like(w[1:])], axis=0)
        return w * mask


@keras.saving.register_keras_serializable(package="mcutext")
class HashEmbedding(keras.layers.Layer):
    """Embedding lookup as a plain tf.gather, which converts to a TFLite GATHER on int32 ids.

    keras.layers.Embedding converts to a SELECT_V2 (negative-index handling) that TFLite
    Micro cannot run, so it is not used.
    """

    def __init__(self, buckets: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.buckets = buckets
        self.dim = dim

    def build(self, input_shape):
        self.table = self.add_weight(
            shape=(self.buckets, self.dim), name="table",
            initializer=keras.initializers.RandomUniform(-0.05, 0.05), constraint=PadZero())

    def call(self, ids):
        return tf.gather(self.table, ids)

    def get_config(self):
        return {**super().get_config(), "buckets": self.buckets, "dim": self.dim}


@keras.saving.register_keras_serializable(package="mcutext")
class WordDropout(keras.layers.Layer):
    """Training-time augmentation: drops whole words with probability `rate`: all K feature
    ids of a word become padding, or with `fill` (the robust encoding's fallback code), a word
    becomes that code, so that the model learns to discount it. Identity at inference; it has
    no weights and never reaches the converted model (the batch-1 conversion graph is built
    without it)."""

    def __init__(self, rate: float, features_per_word: int, fill: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.k = features_per_word
        self.fill = fill

    def call(self, ids, training=None):
        if not training or self.rate <= 0:
            return ids
        shape = tf.shape(ids)
        words = tf.reshape(ids, (shape[0], -1, self.k))
        keep = tf.cast(tf.random.uniform((shape[0], tf.shape(words)[1], 1)) >= self.rate,
                       ids.dtype)
        out = words * keep
        if self.fill:
            out += (1 - keep) * self.fill * tf.cast(words > 0, ids.dtype)
        return tf.reshape(out, shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "features_per_word": self.k,
                "fill": self.fill}
