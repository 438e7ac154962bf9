"""A trained teacher folder (teacher.json, weights.npz, memo.npz): loading it, and its logits
and word attributions for any text (remembered for its own texts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ...common import progress
from ...common.errors import McutextError
from ...model.recipe import TeacherConfig, project_root
from ...text.wordpiece import WordPiece, pad_rows
from .align import _utf8, align_to_words, pool_mask
from .encoder import Encoder, attention_bias, load_pretrained, model_dir
from .heads import PoolingHead, RecurrentTop, build_head, build_top, count_params


TEACHER_FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE, MEMO_FILE = "teacher.json", "weights.npz", "memo.npz"


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
        (mcutext.text.tokenizer.split_words), renormalized to 1 over the words present."""
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
    from ...common.determinism import configure_tensorflow
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
