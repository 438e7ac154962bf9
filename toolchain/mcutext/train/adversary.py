"""The training-time adversary of the objective's third part: for each example, the
perturbed token ids that hurt the student most (objective.adv_search: "joint" random edits of
adv_words words, "greedy" word by word, or "codes", every code the robust encoding reaches).
Seeds are offset so they never coincide with the seeds the attack suite evaluates with."""

from __future__ import annotations

import numpy as np

from ..common.errors import McutextError

# Seeds of the training-time adversary are offset so they never coincide with the seeds the
# attack suite uses for evaluation (small integers).
TRAIN_ADVERSARY_SEED_OFFSET = 1_000_003


class Adversary:
    """Part of Trainer (its model, recipe and objective config): the adversarial ids."""

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
        from ..text.perturb import Sentence
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
        from ..text.perturb import _synonyms_lower, char_edit, random_perturbation, synonyms
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
        from ..text.encoding import reachable_codes
        from ..text.perturb import Sentence
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
