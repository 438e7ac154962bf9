"""The three-part training objective (docs/objective.md explains each choice).

    L = (1 - a) * CE_w(y, z_s)
      + a * KD(z_t, z_s)                                              knowledge distillation
      + b * KL(attr_t || attn_s)                                       explainable feature mapping
      + c * (CE_w(y, z_s(e + r_fgm)) + CE_w(y, z_s(x_adv))) / 2        adversarial robustness
      + d * (1 - cos(P f_s, s_t))                                      sentence mapping

- KD is T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) (Hinton; kd_loss = "kl") or the squared
  error between the logits (Tang et al.; kd_loss = "mse").
- CE_w: cross-entropy weighted per example. The student trains on a transfer set
  (mcutext.train.distill): the training texts, whose gold labels count (w = 1), plus augmented
  variants that only the teacher labels (w = 0: they are learnt through KD alone).
- z_t, attr_t: the teacher's logits and its word attributions, aligned to the student's words
  (mcutext.train.teacher), computed once per transfer set and cached.
- attn_s: the student's attention pooling weights, renormalized over the words present; this
  is also what the device reports as its explanation, so aligning it is aligning the device's
  explanations with the teacher's.
- r_fgm: a norm-bounded step along the loss gradient in word-embedding space (Miyato et al.),
  with ||r|| = fgm_epsilon * ||e|| per example (relative, because hashed embeddings have no
  fixed scale), pads masked, gradient stopped.
- x_adv: discrete perturbations (character edits / WordNet synonyms from mcutext.text.perturb, with
  training seeds that never meet the evaluation seeds) of the `adv_words` words the student
  attends to most, worst of `adv_candidates` candidates per original text under the current
  student (all words at once, or word by word with adv_search = "greedy"), re-drawn every
  epoch.

- P f_s, s_t: a training-only linear map of the student's features, and the pretrained
  encoder's unit sentence embedding of the text (mcutext.train.sentence); unlabelled texts
  (objective.embed_texts) take part in this term only.

One loop serves every variant, so an ablation changes only the weights a, b, c.
"""

from __future__ import annotations


import numpy as np

from ..common import progress
from ..common.errors import McutextError
from ..model.recipe import ObjectiveConfig
from .adversary import Adversary


def word_mask(ids, max_words: int, k: int):
    import tensorflow as tf
    w = tf.reshape(ids, (-1, max_words, k))[:, :, 0]
    return tf.cast(w > 0, tf.float32)


class Trainer(Adversary):
    """Custom training loop for the student under the three-part objective."""

    def __init__(self, recipe, model, n_classes: int, teacher=None):
        import tensorflow as tf
        self.recipe = recipe
        self.cfg: ObjectiveConfig = recipe.objective
        self.model = model
        self.layers = model.student_layers
        self.n_classes = n_classes
        self.teacher = teacher
        if self.cfg.uses_teacher and teacher is None:
            raise McutextError("the objective needs a teacher (kd_weight or map_weight > 0)")
        self.opt = None  # made in fit(), when the number of steps is known
        self.L, self.K = recipe.tokenizer.max_words, recipe.tokenizer.features_per_word
        # sentence mapping: a linear map from the features to the encoder's sentence space,
        # used in training only (it is not part of the model)
        self.proj = None
        if self.cfg.uses_sentence:
            import keras
            from .sentence import DIM
            self.proj = keras.layers.Dense(DIM, name="sentence_map")
            self.proj.build((None, model.get_layer("features").units))
        self.variables = list(model.trainable_variables) + (
            list(self.proj.trainable_variables) if self.proj is not None else [])
        self._step = tf.function(self._train_step, reduce_retracing=True)

    def _optimizer(self, steps: int):
        import keras
        tc = self.recipe.train
        lr = tc.learning_rate
        if tc.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate, max(steps, 1))
        if tc.weight_decay > 0:
            return keras.optimizers.AdamW(lr, weight_decay=tc.weight_decay)
        return keras.optimizers.Adam(lr)

    # --- one optimization step -----------------------------------------------------------
    def _train_step(self, ids, y, w, t_logits, t_attr, adv_ids, t_sent):
        """y: labels (gold for original texts, the teacher's argmax for augmented ones); w: how
        much each example's cross-entropy counts (1 original, 0 augmented)."""
        import tensorflow as tf
        cfg = self.cfg
        lay = self.layers
        smooth = self.recipe.train.label_smoothing
        n_cls = self.n_classes
        w_sum = tf.reduce_sum(w) + 1e-9

        def ce_fn(labels, z):
            if smooth <= 0:
                return tf.keras.losses.sparse_categorical_crossentropy(labels, z, from_logits=True)
            onehot = tf.one_hot(labels, n_cls)
            return tf.keras.losses.categorical_crossentropy(
                onehot, z, from_logits=True, label_smoothing=smooth)

        def weighted(v):
            return tf.reduce_sum(w * v) / w_sum
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                e = lay.embed(ids, training=True)
                inner.watch(e)
                logits, attn, feats = lay.body(e, training=True)
                ce = weighted(ce_fn(y, logits))
            loss = ce
            parts = {"ce": ce}
            if self.proj is not None:
                p = tf.math.l2_normalize(self.proj(feats), axis=-1)
                sent = tf.reduce_mean(1.0 - tf.reduce_sum(p * t_sent, axis=-1))
                loss = loss + cfg.embed_weight * sent
                parts["sent"] = sent
            if cfg.kd_weight > 0:
                if cfg.kd_loss == "mse":
                    kd = tf.reduce_mean(tf.reduce_sum(tf.square(logits - t_logits), axis=-1))
                else:
                    T = cfg.temperature
                    p_t = tf.nn.softmax(t_logits / T)
                    log_p_s = tf.nn.log_softmax(logits / T)
                    kd = tf.reduce_mean(tf.reduce_sum(
                        p_t * (tf.math.log(p_t + 1e-9) - log_p_s), axis=-1)) * T * T
                loss = (1 - cfg.kd_weight) * ce + cfg.kd_weight * kd
                parts["kd"] = kd
            if cfg.map_weight > 0:
                m = word_mask(ids, self.L, self.K)
                a_s = attn * m
                a_s = a_s / (tf.reduce_sum(a_s, axis=-1, keepdims=True) + 1e-9)
                has = tf.cast(tf.reduce_sum(m, axis=-1) > 0, tf.float32)
                kl = tf.reduce_sum(t_attr * (tf.math.log(t_attr + 1e-9) -
                                             tf.math.log(a_s + 1e-9)), axis=-1)
                fm = tf.reduce_sum(kl * has) / (tf.reduce_sum(has) + 1e-9)
                loss = loss + cfg.map_weight * fm
                parts["map"] = fm
            if cfg.adv_weight > 0:
                # on the original texts only (w = 1): the adversary attacks gold labels
                g = inner.gradient(ce, e)
                g = tf.stop_gradient(tf.zeros_like(e) if g is None else g)
                m4 = tf.reshape(word_mask(ids, self.L, self.K), (-1, self.L, 1, 1))
                g = g * m4
                g_norm = tf.sqrt(tf.reduce_sum(g * g, axis=[1, 2, 3], keepdims=True)) + 1e-12
                e_norm = tf.stop_gradient(
                    tf.sqrt(tf.reduce_sum(e * e, axis=[1, 2, 3], keepdims=True)))
                r = cfg.fgm_epsilon * e_norm * g / g_norm
                logits_fgm, _, _ = lay.body(e + r, training=True)
                fgm = weighted(ce_fn(y, logits_fgm))
                logits_adv, _, _ = lay.body(lay.embed(adv_ids, training=True), training=True)
                disc = weighted(ce_fn(y, logits_adv))
                loss = loss + cfg.adv_weight * 0.5 * (fgm + disc)
                parts["fgm"] = fgm
                parts["adv"] = disc
        grads = tape.gradient(loss, self.variables)
        self.opt.apply_gradients(zip(grads, self.variables))
        if lay.embedding is not None:  # PRADO has no table
            # keep the padding row of the embedding table at exactly zero
            table = lay.embedding.table
            table.assign(table.constraint(table))
        parts["loss"] = loss
        return parts


    # --- the loop --------------------------------------------------------------------------
    def fit(self, data, x_dv: np.ndarray, y_dv: np.ndarray, tokenizer, epochs: int,
            batch_size: int | None = None) -> dict:
        """Train on `data` (a mcutext.train.distill.TrainingSet) and keep the weights of the epoch
        with the best dev accuracy."""
        import tensorflow as tf
        x_tr = tokenizer.encode_batch(data.texts)
        n = len(x_tr)
        orig = np.flatnonzero(data.ce_weight > 0)
        history: dict[str, list[float]] = {"loss": [], "val_accuracy": []}
        best_acc, best_weights = -1.0, None
        # FastGRNN's compression phases (mcutext.model.baselines.CompressionSchedule): only
        # checkpoints of the last phase have the target sparsity
        schedule = getattr(self.layers, "schedule", None)
        bs = batch_size or self.recipe.train.batch_size
        self.opt = self._optimizer(epochs * -(-n // bs))
        rng = np.random.default_rng(self.recipe.train.seed)
        t_sent = (data.t_sent if self.proj is not None
                  else np.zeros((n, 1), np.float32))
        # the bar counts steps (batches), so its time estimate shows within the first epoch
        with progress.task(f"training {self.recipe.name}", total=epochs * -(-n // bs)) as update:
            for epoch in range(epochs):
                if schedule is not None:
                    schedule.begin_epoch(epoch, epochs)
                adv = x_tr
                if self.cfg.adv_weight > 0:
                    update(status=f"epoch {epoch + 1}/{epochs}: adversarial examples")
                    adv = x_tr.copy()
                    adv[orig] = self.adversarial_ids([data.texts[i] for i in orig], data.y[orig],
                                                     tokenizer, epoch)
                update(status=f"epoch {epoch + 1}/{epochs}")
                order = rng.permutation(n)
                totals: dict[str, float] = {}
                steps = 0
                for s in range(0, n, bs):
                    idx = order[s:s + bs]
                    parts = self._step(tf.constant(x_tr[idx]), tf.constant(data.y[idx]),
                                       tf.constant(data.ce_weight[idx]),
                                       tf.constant(data.t_logits[idx]),
                                       tf.constant(data.t_attr[idx]), tf.constant(adv[idx]),
                                       tf.constant(t_sent[idx]))
                    for key, v in parts.items():
                        totals[key] = totals.get(key, 0.0) + float(v)
                    steps += 1
                    update(advance=1)
                val = self.model.predict(x_dv, batch_size=1024, verbose=0)[0].argmax(1)
                acc = float(np.mean(val == y_dv))
                for key, v in totals.items():
                    history.setdefault(key, []).append(v / steps)
                history["val_accuracy"].append(acc)
                if acc > best_acc and (schedule is None or schedule.may_keep(epoch, epochs)):
                    best_acc, best_weights = acc, self.model.get_weights()
                update(status=f"epoch {epoch + 1}/{epochs} loss {totals['loss'] / steps:.3f} "
                              f"val_acc {acc:.3f}")
        self.model.set_weights(best_weights)
        return history
