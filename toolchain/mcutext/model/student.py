"""The default student: hashed embeddings -> CNN encoder -> attention pooling -> features -> head.

Every layer is chosen so that the full-integer converter emits only TFLite Micro builtin ops
(GATHER, RESHAPE, AVERAGE_POOL_2D, CONV_2D, SOFTMAX, MUL, SUM, FULLY_CONNECTED) and so that
the firmware's code generator has a kernel for each. Tensors are kept 4-D (NHWC, W = 1) on
purpose: the converter then maps them one-to-one to the ops above, with no hidden reshapes.

    ids int32[L*K] --GATHER--> [L*K, D] --AVG_POOL(K)--> [L, D]     (K hashed features per word)
      --CONV(width w, ReLU)--> h [L, F] --CONV 1x1--> logits [L] --SOFTMAX--> attention a [L]
      --sum_t a_t h_t--> [F] --DENSE (ReLU or linear)--> features [H] --DENSE--> class scores [C]

The attention weights are the per-word explanation; the features are what the device's
personalization fine-tunes the head on.

With model.pooling = "mean" the attention logits are not learned: they are 0 for a word and
-MASK_PENALTY for padding, read from the ids (STRIDED_SLICE of each word's first id,
MINIMUM(id, 1), GATHER from the constant table [-MASK_PENALTY, 0]), so the SOFTMAX gives every
word present 1 / words and the same MUL + SUM computes the mean of the word states: no word
can outweigh the others, so one edited word moves the sentence vector by at most 1 / words.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from .layers import HashEmbedding, WordDropout  # noqa: E402
from .recipe import Recipe  # noqa: E402
from ..text.tokenizer import CODE_FALLBACK  # noqa: E402

OUTPUT_NAMES = ("logits", "attention", "features")
# Ops of model.pooling = "mean" beyond convert.SUPPORTED_OPS (the firmware's generator and
# TFLite Micro run both).
MEAN_POOL_OPS = ("STRIDED_SLICE", "MINIMUM")
# Mean pooling's attention logit of a padding slot: after the softmax a padding slot weighs
# e^-10 of a word's weight (0 in int8), and the logits' int8 scale is 10 / 255.
MASK_PENALTY = 10.0


@keras.saving.register_keras_serializable(package="mcutext")
class AttentionSum(keras.layers.Layer):
    """sum_t a_t * h_t over the time (and unit width) axes: MUL then SUM in TFLite."""

    def call(self, inputs):
        h, a = inputs
        return tf.reduce_sum(h * a, axis=[1, 2])


@keras.saving.register_keras_serializable(package="mcutext")
class PresenceLogits(keras.layers.Layer):
    """ids [N, L*K] -> [N, L] attention logits of mean pooling: 0 where the word slot holds a
    word, -MASK_PENALTY for padding. Converts to TFLite Micro builtins on the int32 ids
    (like mcutext.model.baselines.WordPresence): STRIDED_SLICE, MINIMUM, GATHER (int8 result)."""

    def __init__(self, max_words: int, features_per_word: int, **kwargs):
        super().__init__(**kwargs)
        self.L, self.K = max_words, features_per_word

    def call(self, ids):
        first = tf.reshape(ids, (-1, self.L, self.K))[:, :, 0]
        return tf.gather(tf.constant([-MASK_PENALTY, 0.0]), tf.minimum(first, 1))

    def get_config(self):
        return {**super().get_config(), "max_words": self.L, "features_per_word": self.K}


@keras.saving.register_keras_serializable(package="mcutext")
class EmbeddingPresenceLogits(keras.layers.Layer):
    """word embeddings [N, L, 1, D] -> PresenceLogits' values, for the training loop, where the
    layers see embeddings only: padding embeddings are exactly zero (the table's row 0 is
    pinned to zero; FGM perturbations are masked at padding)."""

    def call(self, e):
        present = tf.cast(tf.reduce_max(tf.abs(e), axis=[2, 3]) > 0, e.dtype)
        return MASK_PENALTY * (present - 1.0)


@keras.saving.register_keras_serializable(package="mcutext")
class CosineHead(keras.layers.Layer):
    """scale * cos(f - center, w_c) for every class c: the training form of model.head =
    "prototype". It never reaches a bundle: after training, the head is replaced by a Dense
    layer holding one prototype per class (mcutext.train.pipeline.prototype_head), which has the same
    argmax for every input, because all its rows have the same norm and the scores are
    w_c . (f - center) scaled by a positive number that does not depend on c."""

    def __init__(self, classes: int, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.scale = scale

    def build(self, input_shape):
        h = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(h, self.classes), name="kernel",
                                      initializer=keras.initializers.RandomNormal(stddev=0.05))
        self.center = self.add_weight(shape=(h,), name="center", initializer="zeros")

    def call(self, f):
        u = tf.math.l2_normalize(f - self.center, axis=-1)
        return self.scale * tf.matmul(u, tf.math.l2_normalize(self.kernel, axis=0))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "scale": self.scale}


class StudentLayers:
    """The student's layers, callable in two halves: `embed` (ids -> word embeddings) and
    `body` (word embeddings -> logits, attention, features). The functional model is built
    from the same two calls, and the training loop uses them to perturb embeddings (FGM)."""

    def __init__(self, recipe: Recipe, n_classes: int, training_graph: bool = False,
                 dense_head: bool = False):
        tok, cfg = recipe.tokenizer, recipe.model
        self.L, self.K, self.D = tok.max_words, tok.features_per_word, cfg.embed_dim
        self.word_dropout = (WordDropout(cfg.word_dropout, self.K,
                                         fill=CODE_FALLBACK if tok.robust else 0,
                                         name="word_dropout")
                             if training_graph and cfg.word_dropout > 0 else None)
        self.embedding = HashEmbedding(tok.buckets, cfg.embed_dim, name="embedding")
        self.to_nhwc = keras.layers.Reshape((self.L * self.K, 1, self.D), name="to_nhwc")
        self.word_pool = (keras.layers.AveragePooling2D((self.K, 1), name="word_pool")
                          if self.K > 1 else None)
        self.embed_dropout = keras.layers.Dropout(cfg.dropout, name="embed_dropout")
        self.conv = keras.layers.Conv2D(cfg.conv_filters, (cfg.conv_width, 1), padding="same",
                                        activation="relu", name="conv")
        self.mean_pool = cfg.pooling == "mean"
        if self.mean_pool:
            self.presence = PresenceLogits(self.L, self.K, name="presence")
            self.embedding_presence = EmbeddingPresenceLogits(name="embedding_presence")
        else:
            self.attention_logits = keras.layers.Conv2D(1, (1, 1), name="attention_logits")
            self.attention_flat = keras.layers.Reshape((self.L,), name="attention_flat")
        self.attention = keras.layers.Softmax(name="attention")
        self.attention_nhwc = keras.layers.Reshape((self.L, 1, 1), name="attention_nhwc")
        self.pool = AttentionSum(name="attention_pool")
        # linear features have no bias: the converter would fold it into the head and
        # compute the features output with an ADD; a prototype head's center plays its part
        linear = cfg.feature_activation == "linear"
        self.features = keras.layers.Dense(cfg.feature_dim, activation=None if linear else "relu",
                                           use_bias=not linear, name="features")
        self.feature_dropout = keras.layers.Dropout(cfg.dropout, name="feature_dropout")
        self.head = (CosineHead(n_classes, cfg.head_scale, name="head")
                     if cfg.head == "prototype" and not dense_head
                     else keras.layers.Dense(n_classes, name="head"))

    def embed(self, ids, training=None):
        """ids [N, L*K] -> word embeddings [N, L, 1, D] (mean of each word's K features)."""
        x = ids
        if self.word_dropout is not None:
            x = self.word_dropout(x, training=training)
        x = self.to_nhwc(self.embedding(x))
        return self.word_pool(x) if self.word_pool is not None else x

    def body(self, e, training=None, mask_logits=None):
        """word embeddings -> (logits [N, C], attention [N, L], features [N, H]).
        `mask_logits`: mean pooling's attention logits from the ids (PresenceLogits; the
        inference graph); from the embeddings when None."""
        h = self.conv(self.embed_dropout(e, training=training))
        if self.mean_pool:
            a = self.attention(self.embedding_presence(e) if mask_logits is None
                               else mask_logits)
        else:
            a = self.attention(self.attention_flat(self.attention_logits(h)))
        pooled = self.pool([h, self.attention_nhwc(a)])
        feats = self.features(pooled)
        # a prototype head measures directions: dropout would move them, so it sees the
        # features as they are
        logits = self.head(feats if isinstance(self.head, CosineHead)
                           else self.feature_dropout(feats, training=training))
        return logits, a, feats


def build_student(recipe: Recipe, n_classes: int, batch_size: int | None = None,
                  seed: int | None = None, training_graph: bool = False,
                  dense_head: bool = False) -> keras.Model:
    """Model with outputs (logits, attention, features). `training_graph` adds the
    training-only augmentation layers (no weights, so weights copy across). The recipe's
    model.arch picks the mcutext student ("cnn") or a baseline (mcutext.model.baselines).
    `dense_head`: a plain Dense head even when model.head is "prototype" (the exported form)."""
    if recipe.model.arch != "cnn":
        from .baselines import build_baseline
        return build_baseline(recipe, n_classes, batch_size, seed, training_graph)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = StudentLayers(recipe, n_classes, training_graph, dense_head)
    ids = keras.Input((layers.L * layers.K,), dtype="int32", batch_size=batch_size, name="ids")
    logits, a, feats = layers.body(layers.embed(ids), mask_logits=(
        layers.presence(ids) if layers.mean_pool else None))
    model = keras.Model(ids, [logits, a, feats], name=f"{recipe.name}_student")
    model.student_layers = layers
    return model


def count_params(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))
