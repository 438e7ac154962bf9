"""The two compact text models of the literature, built for exactly the mcutext pipeline.

Both take the same int32 token ids as the default student (mcutext.text.tokenizer), train in the
same loop (mcutext.train.objective) and give the same three outputs (logits, attention [max_words],
features), so that explain, personalization, the attack suite and the bench treat them like
any bundle. docs/baselines.md has the choices and the measurements.

FastGRNN (Kusupati et al., NeurIPS 2018), recipe `model.arch = "fastgrnn"`:

    ids --GATHER, AVG_POOL(K)--> word embeddings x_t [L, D]      (the default student's embed)
    z_t = sigmoid(W x_t + U h_{t-1} + b_z)
    h~_t = tanh(W x_t + U h_{t-1} + b_h)
    h_t = (sigmoid(zeta) (1 - z_t) + sigmoid(nu)) h~_t + z_t h_{t-1}       (padding: h_t = h_{t-1})
    features = ReLU(Dense(h_L)), logits = Dense(features)
    attention_t = softmax_t(5 (1 - mean_j z_t,j) - 10 [word t is padding])

  W = W1 W2 and U = U1 U2 with `w_rank` / `u_rank` > 0 (EdgeML's low rank). The recurrence
  is unrolled to max_words steps, so it converts to FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC,
  TANH, STRIDED_SLICE, ... (no WHILE, no GRU op). The weights are laid out and named like
  EdgeML's FastGRNNCell (W [D, H], U [H, H], B_g, B_h [1, H], zeta, nu [1, 1]), and
  tests/test_baselines.py checks the layer against that cell. The attention is derived from
  the update gate: 1 - z_t is how much word t overwrites the state.

  EdgeML's compression recipe (`keep_w` / `keep_u` < 1): the epochs are split in thirds,
  dense training, iterative hard thresholding (every `trim_every` steps the matrices are cut
  to their largest `keep` share, the support fixed in between), then retraining with the
  support fixed; the kept checkpoint is the best of the last third, so it has the target
  sparsity. Then int8 like every model.

PRADO (Kaliamoorthi et al., EMNLP 2019), recipe `model.arch = "prado"`:

    ids --projection (mcutext.model.projection; no table)--> [L, P + 1] (ternary sums / K, presence)
      --Dense(E, ReLU, no bias) x2--> value and attention inputs (padding stays exactly 0)
      per n-gram width w: values = Conv(w)(.), attention logits = Conv(w)(.) [L, C];
        a = softmax over time per channel (padding masked), pooled_w = sum_t a_t * values_t
    features = concat_w pooled_w, logits = Dense(features)
    attention_t = mean over widths and channels of a_t

  The projection is computed outside the int8 graph (the int8 model's input is the int8
  projection, docs/baselines.md); the float Keras model computes it inside its graph so that
  it still takes token ids.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import projection  # noqa: E402
from ..common.errors import McutextError  # noqa: E402
from .layers import HashEmbedding, WordDropout  # noqa: E402
from .recipe import Recipe  # noqa: E402

ARCHS = ("fastgrnn", "prado")
# Attention logits of padding slots get this much less than any word's: after the softmax a
# padding slot weighs at most e^-10 of a word (FastGRNN) and the int8 attention-logit tensor
# still has a fine scale (its range grows by 10 only).
MASK_PENALTY = 10.0
# FastGRNN attention logits: 5 * (1 - mean update gate) in [0, 5].
GATE_SHARPNESS = 5.0

# Ops the baselines' int8 models use, beyond the default student's (convert.SUPPORTED_OPS).
# TFLite Micro runs all of them (checked when each model is loaded in its interpreter); the
# mcutext code generator emits them too (codegen.SUPPORTED_OPS; docs/baselines.md lists the
# configurations and their int8 semantics).
EXTRA_OPS = {
    "fastgrnn": ("STRIDED_SLICE", "MINIMUM", "ADD", "SUB", "LOGISTIC", "TANH", "PACK", "MEAN",
                 "QUANTIZE"),
    "prado": ("STRIDED_SLICE", "ADD", "SUB", "TRANSPOSE", "MEAN", "CONCATENATION", "QUANTIZE"),
}


# --- shared pieces --------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="mcutext")
class WordPresence(keras.layers.Layer):
    """ids [N, L*K] -> [N, L]: 1 where the word slot holds a word, 0 for padding.

    Written so that it converts to TFLite Micro builtins on int32 ids: STRIDED_SLICE (each
    word's first id), MINIMUM(id, 1), GATHER from the constant table [0, 1] (int8 result)."""

    def __init__(self, max_words: int, features_per_word: int, **kwargs):
        super().__init__(**kwargs)
        self.L, self.K = max_words, features_per_word

    def call(self, ids):
        first = tf.reshape(ids, (-1, self.L, self.K))[:, :, 0]
        return tf.gather(tf.constant([0.0, 1.0]), tf.minimum(first, 1))

    def get_config(self):
        return {**super().get_config(), "max_words": self.L, "features_per_word": self.K}


@keras.saving.register_keras_serializable(package="mcutext")
class EmbeddingPresence(keras.layers.Layer):
    """word embeddings [N, L, 1, D] -> [N, L] presence. Padding embeddings are exactly zero
    (the table's row 0 is pinned to zero; FGM perturbations are masked at padding), so this
    equals WordPresence in the float training graph, where the layers only see embeddings."""

    def call(self, e):
        return tf.cast(tf.reduce_max(tf.abs(e), axis=[2, 3]) > 0, e.dtype)


@keras.saving.register_keras_serializable(package="mcutext")
class MaskedSoftmax(keras.layers.Layer):
    """softmax_t(scale * scores_t - MASK_PENALTY * (1 - m_t)) over the last axis."""

    def __init__(self, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        s, m = inputs
        return tf.nn.softmax(self.scale * s + MASK_PENALTY * (m - 1.0), axis=-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


# --- FastGRNN ---------------------------------------------------------------------------------
class CompressionSchedule:
    """EdgeML's FastGRNN compression phases, by thirds of the epochs: 0 dense, 1 iterative
    hard thresholding, 2 retraining with the support fixed. The training loop calls
    `begin_epoch` and keeps only checkpoints for which `may_keep` is true."""

    def __init__(self, trim_every: int):
        self.trim_every = trim_every
        self.mode = tf.Variable(0, dtype=tf.int32, trainable=False, name="compression_mode")
        self.constraints: list[HardThreshold] = []

    @staticmethod
    def phase(epoch: int, epochs: int) -> int:
        if epoch >= (2 * epochs) // 3:
            return 2
        return 1 if epoch >= epochs // 3 else 0

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        phase = self.phase(epoch, epochs)
        if phase != int(self.mode.numpy()):
            for c in self.constraints:
                c.count.assign(0)
                if phase == 2:  # the support of the last thresholding, applied once more
                    c.threshold_now()
        self.mode.assign(phase)

    def may_keep(self, epoch: int, epochs: int) -> bool:
        return self.phase(epoch, epochs) == 2


class HardThreshold(keras.constraints.Constraint):
    """Keeps the `keep` share of largest-magnitude entries (EdgeML's hardThreshold) every
    `trim_every` steps in phase 1 and holds that support (copySupport) otherwise in phases
    1 and 2. Identity in phase 0. Training-graph only: never serialized."""

    def __init__(self, schedule: CompressionSchedule, keep: float, shape):
        self.schedule = schedule
        self.n = int(np.prod(shape))
        self.k = max(1, math.ceil(keep * self.n))
        self.mask = tf.Variable(tf.ones(shape), trainable=False)
        self.count = tf.Variable(0, dtype=tf.int32, trainable=False)
        self.variable = None
        schedule.constraints.append(self)

    def _top_k_mask(self, w):
        th = tf.math.top_k(tf.reshape(tf.abs(w), [-1]), k=self.k, sorted=True).values[-1]
        return tf.cast(tf.abs(w) >= th, w.dtype)

    def threshold_now(self) -> None:
        self.mask.assign(self._top_k_mask(self.variable))
        self.variable.assign(self.variable * self.mask)

    def __call__(self, w):
        mode = self.schedule.mode
        step = self.count.assign_add(tf.where(tf.equal(mode, 1), 1, 0))
        trim = tf.logical_and(tf.equal(mode, 1),
                              tf.equal((step - 1) % self.schedule.trim_every, 0))
        mask = tf.cond(trim, lambda: self._top_k_mask(w), lambda: tf.identity(self.mask))
        self.mask.assign(mask)
        return tf.where(tf.equal(mode, 0), w, w * mask)


@keras.saving.register_keras_serializable(package="mcutext")
class FastGRNN(keras.layers.Layer):
    """FastGRNN unrolled over a fixed number of steps.

    inputs: x [N, L, D] and presence m [N, L] (padding steps keep the state).
    returns: h_L [N, H] and the update strength per step, 1 - mean_j z_t,j [N, L].
    """

    def __init__(self, hidden: int, w_rank: int = 0, u_rank: int = 0, zeta_init: float = 1.0,
                 nu_init: float = -4.0, keep_w: float = 1.0, keep_u: float = 1.0,
                 schedule: CompressionSchedule | None = None, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.w_rank, self.u_rank = w_rank, u_rank
        self.zeta_init, self.nu_init = zeta_init, nu_init
        self.keep_w, self.keep_u = keep_w, keep_u
        self.schedule = schedule

    def _matrix(self, name: str, shape, keep: float):
        constraint = None
        if self.schedule is not None and keep < 1.0:
            constraint = HardThreshold(self.schedule, keep, shape)
        v = self.add_weight(shape=shape, name=name, constraint=constraint,
                            initializer=keras.initializers.RandomNormal(0.0, 0.1))
        if constraint is not None:
            constraint.variable = v
        return v

    def build(self, input_shape):
        d, h = int(input_shape[0][-1]), self.hidden
        if self.w_rank:
            self.W1 = self._matrix("W1", (d, self.w_rank), self.keep_w)
            self.W2 = self._matrix("W2", (self.w_rank, h), self.keep_w)
        else:
            self.W = self._matrix("W", (d, h), self.keep_w)
        if self.u_rank:
            self.U1 = self._matrix("U1", (h, self.u_rank), self.keep_u)
            self.U2 = self._matrix("U2", (self.u_rank, h), self.keep_u)
        else:
            self.U = self._matrix("U", (h, h), self.keep_u)
        self.B_g = self.add_weight(shape=(1, h), name="B_g", initializer="ones")
        self.B_h = self.add_weight(shape=(1, h), name="B_h", initializer="ones")
        self.zeta = self.add_weight(shape=(1, 1), name="zeta",
                                    initializer=keras.initializers.Constant(self.zeta_init))
        self.nu = self.add_weight(shape=(1, 1), name="nu",
                                  initializer=keras.initializers.Constant(self.nu_init))

    def input_transform(self, x):
        """W x for every step at once: [N, L, D] -> [N, L, H]."""
        if self.w_rank:
            return tf.matmul(tf.matmul(x, self.W1), self.W2)
        return tf.matmul(x, self.W)

    def recurrent(self, h):
        if self.u_rank:
            return tf.matmul(tf.matmul(h, self.U1), self.U2)
        return tf.matmul(h, self.U)

    def step(self, wx_t, h):
        """One cell step from the precomputed W x_t; h None means the zero state."""
        pre = wx_t if h is None else wx_t + self.recurrent(h)
        z = tf.sigmoid(pre + self.B_g)
        c = tf.tanh(pre + self.B_h)
        g = tf.sigmoid(self.zeta) * (1.0 - z) + tf.sigmoid(self.nu)
        return (g * c if h is None else z * h + g * c), z

    def sequence(self, x, m=None):
        """All states: x [N, L, D], m [N, L] or None -> (states [N, L, H], gates [N, L, H])."""
        wx = self.input_transform(x)
        h, states, gates = None, [], []
        for t in range(int(x.shape[1])):
            h_new, z = self.step(wx[:, t, :], h)
            if m is not None:
                m_t = m[:, t:t + 1]
                h_new = m_t * h_new if h is None else h + m_t * (h_new - h)
            h = h_new
            states.append(h)
            gates.append(z)
        return tf.stack(states, axis=1), tf.stack(gates, axis=1)

    def call(self, inputs):
        x, m = inputs
        states, gates = self.sequence(x, m)
        return states[:, -1, :], 1.0 - tf.reduce_mean(gates, axis=-1)

    def compute_output_shape(self, input_shape):
        n, steps = input_shape[0][0], input_shape[0][1]
        return (n, self.hidden), (n, steps)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "w_rank": self.w_rank,
                "u_rank": self.u_rank, "zeta_init": self.zeta_init, "nu_init": self.nu_init,
                "keep_w": self.keep_w, "keep_u": self.keep_u}

    def compressible(self) -> dict[str, tf.Variable]:
        names = (["W1", "W2"] if self.w_rank else ["W"]) + (["U1", "U2"] if self.u_rank else ["U"])
        return {n: getattr(self, n) for n in names}


class FastGRNNLayers:
    """StudentLayers for FastGRNN: `embed` is the default student's (hashed embeddings, mean
    of each word's K features), `body` the unrolled FastGRNN and the head."""

    arch = "fastgrnn"

    def __init__(self, recipe: Recipe, n_classes: int, training_graph: bool = False):
        tok, cfg, fg = recipe.tokenizer, recipe.model, recipe.fastgrnn
        self.L, self.K, self.D = tok.max_words, tok.features_per_word, cfg.embed_dim
        self.word_dropout = (WordDropout(cfg.word_dropout, self.K, name="word_dropout")
                             if training_graph and cfg.word_dropout > 0 else None)
        self.embedding = HashEmbedding(tok.buckets, cfg.embed_dim, name="embedding")
        self.to_nhwc = keras.layers.Reshape((self.L * self.K, 1, self.D), name="to_nhwc")
        self.word_pool = (keras.layers.AveragePooling2D((self.K, 1), name="word_pool")
                          if self.K > 1 else None)
        compresses = fg.keep_w < 1.0 or fg.keep_u < 1.0
        self.schedule = (CompressionSchedule(fg.trim_every)
                         if training_graph and compresses else None)
        self.presence = WordPresence(self.L, self.K, name="presence")
        self.embedding_presence = EmbeddingPresence(name="embedding_presence")
        self.embed_dropout = keras.layers.Dropout(cfg.dropout, name="embed_dropout")
        self.to_sequence = keras.layers.Reshape((self.L, self.D), name="to_sequence")
        self.rnn = FastGRNN(fg.hidden, fg.w_rank, fg.u_rank, fg.zeta_init, fg.nu_init,
                            fg.keep_w, fg.keep_u, schedule=self.schedule, name="fastgrnn")
        self.attention = MaskedSoftmax(GATE_SHARPNESS, name="attention")
        self.features = keras.layers.Dense(cfg.feature_dim, activation="relu", name="features")
        self.feature_dropout = keras.layers.Dropout(cfg.dropout, name="feature_dropout")
        self.head = keras.layers.Dense(n_classes, name="head")

    def embed(self, ids, training=None):
        """ids [N, L*K] -> word embeddings [N, L, 1, D]."""
        x = ids
        if self.word_dropout is not None:
            x = self.word_dropout(x, training=training)
        x = self.to_nhwc(self.embedding(x))
        return self.word_pool(x) if self.word_pool is not None else x

    def body(self, e, training=None, mask=None):
        """word embeddings -> (logits, attention, features); `mask` [N, L] is the presence of
        each word (from the ids in the inference graph, from the embeddings otherwise)."""
        m = self.embedding_presence(e) if mask is None else mask
        x = self.to_sequence(self.embed_dropout(e, training=training))
        h, update = self.rnn([x, m])
        a = self.attention([update, m])
        feats = self.features(h)
        logits = self.head(self.feature_dropout(feats, training=training))
        return logits, a, feats

    def outputs(self, ids):
        return self.body(self.embed(ids), mask=self.presence(ids))


# --- PRADO ------------------------------------------------------------------------------------
def _fmix32(h):
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))
    h = h * tf.constant(0x85EBCA6B, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(13, tf.uint32)))
    h = h * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32)))


@keras.saving.register_keras_serializable(package="mcutext")
class PradoProjection(keras.layers.Layer):
    """ids [N, L*K] -> [N, L, 1, P + 1]: mcutext.model.projection.float_features inside the graph
    (the same unsigned 32-bit arithmetic, so the values are identical). No weights."""

    def __init__(self, feature_size: int, seed: int, max_words: int, features_per_word: int,
                 **kwargs):
        super().__init__(**kwargs)
        projection.check_spec(feature_size, features_per_word, seed)
        self.P, self.seed = feature_size, seed
        self.L, self.K = max_words, features_per_word

    def call(self, ids):
        ids = tf.convert_to_tensor(ids)
        u = tf.cast(tf.maximum(ids, 0), tf.uint32)
        base = _fmix32(tf.bitwise.bitwise_xor(u * tf.constant(projection.ID_MULT, tf.uint32),
                                              tf.constant(self.seed, tf.uint32)))
        chunks = tf.constant(np.arange(projection.hash_words(self.P), dtype=np.uint32) *
                             np.uint32(projection.CHUNK_MULT))
        words = _fmix32(tf.bitwise.bitwise_xor(base[..., None], chunks))        # [N, LK, C]
        shifts = tf.constant(np.arange(projection.VALUES_PER_WORD, dtype=np.uint32) * 2)
        codes = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words[..., None], shifts),
                                       tf.constant(3, tf.uint32))               # [N, LK, C, 16]
        vals = tf.gather(tf.constant(projection.TERNARY.astype(np.float32)),
                         tf.cast(codes, tf.int32))
        n = tf.shape(ids)[0]
        vals = tf.reshape(vals, (n, self.L * self.K, -1))[:, :, :self.P]
        present = tf.cast(ids > 0, tf.float32)
        vals = vals * present[..., None]
        sums = tf.reduce_sum(tf.reshape(vals, (n, self.L, self.K, self.P)), axis=2) / self.K
        words_present = tf.reshape(present, (n, self.L, self.K))[:, :, :1]
        return tf.concat([sums, words_present], axis=-1)[:, :, None, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.L, 1, self.P + 1)

    def get_config(self):
        return {**super().get_config(), "feature_size": self.P, "seed": self.seed,
                "max_words": self.L, "features_per_word": self.K}


@keras.saving.register_keras_serializable(package="mcutext")
class PresenceChannel(keras.layers.Layer):
    """The last channel of the projection input [N, L, 1, P + 1] -> presence [N, L]. The
    gradient is stopped: the mask is not a feature (FGM leaves it alone)."""

    def call(self, x):
        return tf.stop_gradient(x[:, :, 0, -1])


@keras.saving.register_keras_serializable(package="mcutext")
class MaskedAttentionPool(keras.layers.Layer):
    """PRADO's attention pooling, per channel: a = softmax over time of the attention logits
    (padding masked), pooled = sum_t a_t * values_t. Returns pooled [N, C] and the mean over
    channels of a, [N, L] (the per-word explanation)."""

    def call(self, inputs):
        values, logits, m = inputs
        lg = logits[:, :, 0, :] + MASK_PENALTY * (m[:, :, None] - 1.0)
        a = tf.nn.softmax(lg, axis=1)
        pooled = tf.reduce_sum(a * values[:, :, 0, :], axis=1)
        return pooled, tf.reduce_mean(a, axis=2)

    def compute_output_shape(self, input_shape):
        v = input_shape[0]
        return (v[0], v[-1]), (v[0], v[1])


class PradoLayers:
    """StudentLayers for PRADO: `embed` is the projection (no weights), `body` the encoder."""

    arch = "prado"
    embedding = None  # no embedding table

    def __init__(self, recipe: Recipe, n_classes: int, training_graph: bool = False):
        tok, cfg, pc = recipe.tokenizer, recipe.model, recipe.prado
        self.L, self.K, self.P = tok.max_words, tok.features_per_word, pc.feature_size
        self.seed = pc.projection_seed
        self.word_dropout = (WordDropout(cfg.word_dropout, self.K, name="word_dropout")
                             if training_graph and cfg.word_dropout > 0 else None)
        self.projection = PradoProjection(self.P, self.seed, self.L, self.K, name="projection")
        self.presence = PresenceChannel(name="presence")
        self.values_fc = keras.layers.Dense(pc.bottleneck, activation="relu", use_bias=False,
                                            name="values_fc")
        self.attention_fc = keras.layers.Dense(pc.bottleneck, activation="relu",
                                               use_bias=False, name="attention_fc")
        self.dropout = keras.layers.Dropout(cfg.dropout, name="fc_dropout")
        self.value_convs = [keras.layers.Conv2D(pc.channels, (w, 1), padding="same",
                                                name=f"values_conv{w}")
                            for w in pc.ngram_widths]
        self.attention_convs = [keras.layers.Conv2D(pc.channels, (w, 1), padding="same",
                                                    name=f"attention_conv{w}")
                                for w in pc.ngram_widths]
        self.pools = [MaskedAttentionPool(name=f"attention_pool{w}") for w in pc.ngram_widths]
        n = len(pc.ngram_widths)
        self.concat = keras.layers.Concatenate(name="features") if n > 1 else None
        self.attention = keras.layers.Average(name="attention") if n > 1 else None
        self.feature_dropout = keras.layers.Dropout(cfg.dropout, name="feature_dropout")
        self.head = keras.layers.Dense(n_classes, name="head")

    def embed(self, ids, training=None):
        """ids [N, L*K] -> projection [N, L, 1, P + 1]."""
        x = ids
        if self.word_dropout is not None:
            x = self.word_dropout(x, training=training)
        return self.projection(x)

    def body(self, e, training=None, mask=None):
        m = self.presence(e) if mask is None else mask
        v = self.dropout(self.values_fc(e), training=training)
        q = self.dropout(self.attention_fc(e), training=training)
        pooled, atts = [], []
        for vc, ac, pool in zip(self.value_convs, self.attention_convs, self.pools):
            p, a = pool([vc(v), ac(q), m])
            pooled.append(p)
            atts.append(a)
        feats = self.concat(pooled) if self.concat is not None else pooled[0]
        att = self.attention(atts) if self.attention is not None else atts[0]
        logits = self.head(self.feature_dropout(feats, training=training))
        return logits, att, feats

    def outputs(self, ids):
        return self.body(self.embed(ids))

    def input_features(self, ids: np.ndarray) -> np.ndarray:
        """Host-side projection (float, what the int8 model's input quantizes)."""
        return projection.float_features(ids, self.L, self.K, self.P, self.seed)


LAYERS = {"fastgrnn": FastGRNNLayers, "prado": PradoLayers}


def build_baseline(recipe: Recipe, n_classes: int, batch_size: int | None = None,
                   seed: int | None = None, training_graph: bool = False) -> keras.Model:
    """The baseline named by recipe.model.arch, ids in, (logits, attention, features) out."""
    arch = recipe.model.arch
    if arch not in LAYERS:
        raise McutextError(f"unknown model.arch '{arch}' (baselines: {', '.join(ARCHS)})")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = LAYERS[arch](recipe, n_classes, training_graph)
    ids = keras.Input((layers.L * layers.K,), dtype="int32", batch_size=batch_size, name="ids")
    logits, a, feats = layers.outputs(ids)
    model = keras.Model(ids, [logits, a, feats], name=f"{recipe.name}_{arch}")
    model.student_layers = layers
    return model


def copy_weights(src: keras.Model, dst: keras.Model) -> None:
    """Layer by layer, by name (the graphs differ; the weighted layers are the same)."""
    for layer in dst.layers:
        if layer.weights:
            layer.set_weights(src.get_layer(layer.name).get_weights())


def int8_graph(recipe: Recipe, model: keras.Model, n_classes: int):
    """(the batch-1 Keras model the int8 converter sees, ids rows -> that model's input).

    FastGRNN: the inference graph itself (ids in). PRADO: the encoder alone, its input the
    projection [1, L, 1, P + 1] computed outside the graph."""
    arch = recipe.model.arch
    if arch == "prado":
        layers = PradoLayers(recipe, n_classes)
        x = keras.Input((layers.L, 1, layers.P + 1), batch_size=1, name="projection")
        logits, a, feats = layers.body(x)
        m1 = keras.Model(x, [logits, a, feats], name=f"{recipe.name}_prado_int8")
        copy_weights(model, m1)
        return m1, layers.input_features
    m1 = build_baseline(recipe, n_classes, batch_size=1)
    copy_weights(model, m1)
    return m1, lambda ids: np.asarray(ids, np.int32)


def input_section(recipe: Recipe, scale: float, zero_point: int) -> dict | None:
    """The manifest's int8.input entry: how token ids become the int8 model's input."""
    if recipe.model.arch != "prado":
        return None
    tok, pc = recipe.tokenizer, recipe.prado
    return {"kind": "prado_projection", "version": projection.PROJECTION_VERSION,
            "feature_size": pc.feature_size, "seed": pc.projection_seed,
            "max_words": tok.max_words, "features_per_word": tok.features_per_word,
            "scale": scale, "zero_point": zero_point,
            "lut": projection.input_lut(tok.features_per_word, scale, zero_point).tolist()}


def int8_input(section: dict, ids: np.ndarray) -> np.ndarray:
    """Token-id rows -> the int8 model's input, per the manifest's int8.input entry."""
    if section.get("kind") != "prado_projection":
        raise McutextError(f"unknown int8 input kind '{section.get('kind')}'")
    # the manifest's lookup table: the one the firmware is built with
    return projection.input_from_lut(ids, section["max_words"], section["features_per_word"],
                                     section["feature_size"], section["seed"], section["lut"])


def compression_report(model: keras.Model) -> dict | None:
    """FastGRNN only: non-zeros of the compressible matrices (EdgeML's model-size view)."""
    try:
        rnn = model.get_layer("fastgrnn")
    except ValueError:
        return None
    out = {}
    for name, v in rnn.compressible().items():
        w = np.asarray(keras.ops.convert_to_numpy(v))
        out[name] = {"shape": list(w.shape), "nonzero": int(np.count_nonzero(w)),
                     "size": int(w.size)}
    nnz = sum(v["nonzero"] for v in out.values())
    size = sum(v["size"] for v in out.values())
    # int8 value + 16-bit index per non-zero, the storage a sparse kernel would need
    return {"matrices": out, "nonzero": nnz, "dense_int8_bytes": size,
            "sparse_int8_bytes": 3 * nnz}
