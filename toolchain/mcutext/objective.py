"""The three-part training objective (docs/objective.md explains each choice).

    L = (1 - a) * CE_w(y, z_s)
      + a * KD(z_t, z_s)                                              knowledge distillation
      + b * KL(attr_t || attn_s)                                       explainable feature mapping
      + c * (CE_w(y, z_s(e + r_fgm)) + CE_w(y, z_s(x_adv))) / 2        adversarial robustness
      + d * (1 - cos(P f_s, s_t))                                      sentence mapping

- KD is T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) (Hinton; kd_loss = "kl") or the squared
  error between the logits (Tang et al.; kd_loss = "mse").
- CE_w: cross-entropy weighted per example. The student trains on a transfer set
  (mcutext.distill): the training texts, whose gold labels count (w = 1), plus augmented
  variants that only the teacher labels (w = 0: they are learnt through KD alone).
- z_t, attr_t: the teacher's logits and its word attributions, aligned to the student's words
  (mcutext.teacher), computed once per transfer set and cached.
- attn_s: the student's attention pooling weights, renormalized over the words present; this
  is also what the device reports as its explanation, so aligning it is aligning the device's
  explanations with the teacher's.
- r_fgm: a norm-bounded step along the loss gradient in word-embedding space (Miyato et al.),
  with ||r|| = fgm_epsilon * ||e|| per example (relative, because hashed embeddings have no
  fixed scale), pads masked, gradient stopped.
- x_adv: discrete perturbations (character edits / WordNet synonyms from mcutext.perturb, with
  training seeds that never meet the evaluation seeds) of the `adv_words` words the student
  attends to most, worst of `adv_candidates` candidates per original text under the current
  student (all words at once, or word by word with adv_search = "greedy"), re-drawn every
  epoch.

- P f_s, s_t: a training-only linear map of the student's features, and the pretrained
  encoder's unit sentence embedding of the text (mcutext.sentence); unlabelled texts
  (objective.embed_texts) take part in this term only.

One loop serves every variant, so an ablation changes only the weights a, b, c.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import progress
from .errors import McutextError

# Seeds of the training-time adversary are offset so they never coincide with the seeds the
# attack suite uses for evaluation (small integers).
TRAIN_ADVERSARY_SEED_OFFSET = 1_000_003
KD_LOSSES = ("kl", "mse")
ADV_SEARCHES = ("joint", "greedy", "codes")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    kd_weight: float = 0.0        # a
    temperature: float = 2.0      # T
    kd_loss: str = "kl"           # "kl": T^2 * KL of the softened outputs; "mse": logit MSE
    map_weight: float = 0.0       # b
    adv_weight: float = 0.0       # c
    fgm_epsilon: float = 0.5      # relative to each example's embedding norm
    adv_candidates: int = 4       # random perturbations per example; the worst one is kept
    adv_words: int = 2            # words edited per candidate (the attack budget we train for)
    # "joint": every candidate edits all adv_words words at once; "greedy": word by word, the
    # worst of adv_candidates edits of each word kept before the next (as the attacks search);
    # "codes" (robust encoding only): word by word, the worst of every code any one-edit
    # typo of any word reaches (exact, not sampled: the encoding makes the set small)
    adv_search: str = "joint"
    teacher: str = ""             # teacher folder; default build/<recipe>/teacher
    # d: sentence mapping. The features, through a training-only linear layer, follow the
    # pretrained encoder's sentence embedding (cosine; mcutext.sentence), on the training
    # texts and on the unlabelled texts of embed_texts (dataset names, or "vocab")
    embed_weight: float = 0.0
    embed_texts: tuple = ()

    def __post_init__(self) -> None:
        if self.kd_loss not in KD_LOSSES:
            raise McutextError(f"objective.kd_loss must be one of {', '.join(KD_LOSSES)}, "
                               f"got '{self.kd_loss}'")
        if self.adv_search not in ADV_SEARCHES:
            raise McutextError(f"objective.adv_search must be one of {', '.join(ADV_SEARCHES)}, "
                               f"got '{self.adv_search}'")

    @property
    def uses_sentence(self) -> bool:
        return self.embed_weight > 0

    @property
    def uses_teacher(self) -> bool:
        return self.kd_weight > 0 or self.map_weight > 0


def word_mask(ids, max_words: int, k: int):
    import tensorflow as tf
    w = tf.reshape(ids, (-1, max_words, k))[:, :, 0]
    return tf.cast(w > 0, tf.float32)


class Trainer:
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

    # --- discrete adversary ----------------------------------------------------------------
    def adversarial_ids(self, texts: list[str], y: np.ndarray, tokenizer, epoch: int,
                        with_texts: bool = False):
        """Per text, an adversarial version of it under the current model.

        The perturbations edit the `adv_words` words the model attends to most (its attention
        over words is one forward pass; word i of the input is token i of perturb.Sentence),
        the way the attack suite edits the most important words first. adv_search "joint":
        all but one of `adv_candidates` candidates give each of those words a random character
        edit, the last replaces them by random WordNet synonyms where they have any (otherwise
        a random word-level perturbation); the worst candidate under the current model is
        kept. "greedy": the same candidates for one word at a time (see _greedy).
        Returns the ids, and with `with_texts` also the adversarial texts."""
        from .perturb import Sentence
        cfg = self.cfg
        rng = np.random.default_rng(
            TRAIN_ADVERSARY_SEED_OFFSET + self.recipe.train.seed * 1000 + epoch)
        visible = self.recipe.tokenizer.max_words
        attn = self.model.predict(tokenizer.encode_batch(texts), batch_size=1024, verbose=0)[1]
        sents, tops = [], []
        for t, a in zip(texts, attn):
            s = Sentence.parse(t)
            words = s.word_indices(visible)
            sents.append(s)
            tops.append([words[j] for j in np.argsort(-a[words], kind="stable")[:cfg.adv_words]]
                        if words else [])
        if cfg.adv_search == "codes":
            ids = self._code_greedy(texts, y, tokenizer)
            return (ids, None) if with_texts else ids
        if cfg.adv_search == "greedy":
            ids, done = self._greedy(sents, tops, y, tokenizer, rng)
            return (ids, [s.render(d) for s, d in zip(sents, done)]) if with_texts else ids
        k = cfg.adv_candidates
        cands = []
        for t, s, top in zip(texts, sents, tops):
            if not top:
                cands.extend([t] * k)
                continue
            cands.extend(c if isinstance(c, str) else s.render(c)
                         for c in self._edits(s, {}, top, k, rng))
        ids = tokenizer.encode_batch(cands)
        loss = self._losses(ids, np.repeat(y, k)).reshape(len(texts), k)
        pick = loss.argmax(axis=1)
        out = ids.reshape(len(texts), k, -1)[np.arange(len(texts)), pick]
        return (out, [cands[i * k + c] for i, c in enumerate(pick)]) if with_texts else out

    def _edits(self, s, done: dict, words: list[int], k: int, rng,
               fallback: str = "word") -> list[dict | str]:
        """k perturbations of s (with the replacements `done` applied) that edit `words`: k - 1
        random character edits, then WordNet synonyms where the words have any, else (fallback
        "word") a random word-level perturbation of the whole text, given as the text, or
        (fallback "char") one more character edit. Each is a replacement dict for s.render,
        or a text."""
        from .perturb import _synonyms_lower, char_edit, random_perturbation, synonyms
        out: list[dict | str] = [{**done, **{i: char_edit(s.tokens[i], rng) for i in words}}
                                 for _ in range(k - 1)]
        syn = {i: synonyms(s.tokens[i]) for i in words if _synonyms_lower(s.tokens[i].lower())}
        if syn:
            out.append({**done, **{i: v[int(rng.integers(len(v)))] for i, v in syn.items()}})
        elif fallback == "char":
            out.append({**done, **{i: char_edit(s.tokens[i], rng) for i in words}})
        else:
            out.append(random_perturbation(s.render(done), rng, kind="word",
                                           max_words=self.cfg.adv_words))
        return out

    def _code_greedy(self, texts: list[str], y: np.ndarray, tokenizer) -> np.ndarray:
        """The robust encoding's worst case, word by word: each round, every (word, reachable
        code) replacement of every text is scored and the worst one kept if it raises the
        loss; adv_words rounds, a word changed at most once."""
        if not getattr(tokenizer.spec, "robust", False):
            raise McutextError('objective.adv_search = "codes" needs the robust encoding '
                               '(tokenizer.encoding = "robust")')
        alts = self._alternatives(texts, tokenizer)
        cur = tokenizer.encode_batch(texts)
        cur_loss = self._losses(cur, y)
        changed = [set() for _ in texts]
        for _ in range(self.cfg.adv_words):
            rows, what = [], []
            for j, opts in enumerate(alts):
                for pos, codes in opts:
                    if pos in changed[j]:
                        continue
                    for c in codes:
                        rows.append(j)
                        what.append((pos, c))
            if not rows:
                break
            rows_a = np.array(rows)
            cand = cur[rows_a].copy()
            pos_a = np.array([p for p, _ in what])
            cand[np.arange(len(rows)), pos_a] = [c for _, c in what]
            loss = self._losses(cand, y[rows_a])
            best = {}
            for k, j in enumerate(rows):
                if loss[k] > cur_loss[j] and (j not in best or loss[k] > loss[best[j]]):
                    best[j] = k
            if not best:
                break
            for j, k in best.items():
                cur[j] = cand[k]
                cur_loss[j] = loss[k]
                changed[j].add(what[k][0])
        return cur

    def _alternatives(self, texts: list[str], tokenizer) -> list[list[tuple[int, tuple]]]:
        """Per text, (word position, the other codes one edit of that word reaches) for its
        editable words; computed once per training run (the table does not change)."""
        from .encoding import reachable_codes
        from .perturb import Sentence
        cache = getattr(self, "_alt_cache", None)
        if cache is None:
            cache = self._alt_cache = {}
        todo = [t for t in texts if t not in cache]
        if todo:
            visible = self.recipe.tokenizer.max_words
            sents = {t: Sentence.parse(t) for t in todo}
            # token i of a Sentence is word i of the tokenizer, lowered as it lowers
            key = {t: {i: tokenizer.words(s.tokens[i])[0] for i in s.word_indices(visible)}
                   for t, s in sents.items()}
            reach = reachable_codes(tokenizer, {w for k in key.values() for w in k.values()})
            for t, k in key.items():
                cache[t] = [(i, reach[w]) for i, w in k.items() if reach[w]]
        return [cache[t] for t in texts]

    def _losses(self, ids: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cross-entropy of each row of ids against y under the current model."""
        logits = self.model.predict(ids, batch_size=1024, verbose=0)[0]
        mx = logits.max(1, keepdims=True)
        logp = logits - mx - np.log(np.exp(logits - mx).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y]

    def _greedy(self, sents, tops, y: np.ndarray, tokenizer, rng) -> tuple[np.ndarray, list]:
        """Word by word in attention order: the worst of adv_candidates edits of the word,
        kept only if it raises the loss of the text so far (the attacks' greedy search).
        A candidate's ids are the current ids with the edited word's features replaced
        (word i of the input is token i of the Sentence), not a new tokenization. Returns the
        ids and, per text, the replacements kept."""
        k = self.cfg.adv_candidates
        f = tokenizer.spec.features_per_word
        done: list[dict] = [{} for _ in sents]
        cur = tokenizer.encode_batch([s.render() for s in sents])
        cur_loss = self._losses(cur, y)
        for r in range(self.cfg.adv_words):
            rows = [i for i, top in enumerate(tops) if len(top) > r]
            if not rows:
                break
            edits, cand = [], np.repeat(cur[rows], k, axis=0)
            for j, i in enumerate(rows):
                w = tops[i][r]
                for c, e in enumerate(self._edits(sents[i], done[i], [w], k, rng, "char")):
                    edits.append(e)
                    pieces = tokenizer.words(e[w])
                    if len(pieces) == 1:
                        cand[j * k + c, w * f:(w + 1) * f] = tokenizer.word_features(pieces[0])
                    else:   # not a single word any more: tokenize the whole text
                        cand[j * k + c] = tokenizer.encode(sents[i].render(e))
            loss = self._losses(cand, np.repeat(y[rows], k)).reshape(len(rows), k)
            for j, i in enumerate(rows):
                best = int(loss[j].argmax())
                if loss[j, best] > cur_loss[i]:
                    done[i] = edits[j * k + best]
                    cur[i], cur_loss[i] = cand[j * k + best], loss[j, best]
        return cur, done

    # --- the loop --------------------------------------------------------------------------
    def fit(self, data, x_dv: np.ndarray, y_dv: np.ndarray, tokenizer, epochs: int,
            batch_size: int | None = None) -> dict:
        """Train on `data` (a mcutext.distill.TrainingSet) and keep the weights of the epoch
        with the best dev accuracy."""
        import tensorflow as tf
        x_tr = tokenizer.encode_batch(data.texts)
        n = len(x_tr)
        orig = np.flatnonzero(data.ce_weight > 0)
        history: dict[str, list[float]] = {"loss": [], "val_accuracy": []}
        best_acc, best_weights = -1.0, None
        # FastGRNN's compression phases (mcutext.baselines.CompressionSchedule): only
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
