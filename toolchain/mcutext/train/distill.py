"""What the student learns from besides the gold labels: the teacher-labelled transfer set.

Transfer set (after Tang et al. 2019, "Distilling task-specific knowledge from BERT into simple
neural networks"): the training texts plus `copies` augmented variants of each, all labelled
by the teacher (logits and word attributions). A variant drops each word with probability
`mask`, replaces it with a nearby word with probability `replace`, and then, with probability
`ngram`, is cut down to a random window of 1..`ngram_max` words. "Nearby" means one of the
nearest whole-word neighbours in the teacher's own input-embedding space (cosine), which is
where the student meets the many words of the test set that the training set never shows it;
the teacher says what each variant means, so a replacement that flips the sentiment (good ->
bad) is labelled as such. The labels of the variants are the teacher's alone: the
cross-entropy on gold labels only applies to the original texts.

The labelled variants are cached next to the teacher (build/teachers/<recipe>/), keyed by the
teacher, the augmentation settings and the training texts, so `mcutext train` pays for the
teacher's passes only once. docs/teacher.md has the measurements (and what did not help).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..common import progress
from ..common.errors import McutextError

NEIGHBOURS = 10          # candidates per word for replacement
# the DistillConfig fields that define the transfer set (its cache key)
AUGMENT_KEYS = ("copies", "mask", "ngram", "ngram_max", "replace", "seed")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)
_VOCAB_WORD = re.compile(r"^[a-z0-9][a-z0-9']*$")


@dataclasses.dataclass
class TrainingSet:
    """What the student's training loop consumes: texts with hard labels (and how much the
    label counts), teacher logits and teacher word attributions."""

    texts: list[str]
    y: np.ndarray            # int32[n] gold label (originals) or the teacher's argmax
    ce_weight: np.ndarray    # float32[n] 1 for original texts, 0 for augmented ones
    t_logits: np.ndarray     # float32[n, C]
    t_attr: np.ndarray       # float32[n, max_words]
    # float32[n, 384] the encoder's sentence embeddings (objective.embed_weight), or None
    t_sent: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def plain(cls, texts: Sequence[str], y: np.ndarray, n_classes: int,
              max_words: int) -> "TrainingSet":
        n = len(texts)
        return cls(list(texts), np.asarray(y, np.int32), np.ones(n, np.float32),
                   np.zeros((n, n_classes), np.float32), np.zeros((n, max_words), np.float32))


# --- neighbours in the teacher's input-embedding space ------------------------------------

def vocab_words(wp) -> tuple[list[str], np.ndarray]:
    """Whole words of the WordPiece vocabulary (lower-case letters, digits, apostrophes), with
    their piece ids."""
    words, ids = [], []
    for i, t in enumerate(wp.inv_vocab):
        if _VOCAB_WORD.match(t) and not t.isdigit():
            words.append(t)
            ids.append(i)
    return words, np.array(ids, np.int64)


def neighbours(query: set[str] | Sequence[str], k: int = NEIGHBOURS) -> dict[str, list[str]]:
    """For each query word that is a whole word of the vocabulary: its k nearest other
    vocabulary words by cosine of the encoder's input embeddings, nearest first."""
    from .teacher.encoder import load_pretrained
    _, weights, wp, _ = load_pretrained()
    words, ids = vocab_words(wp)
    index = {w: i for i, w in enumerate(words)}
    q = sorted({w for w in query if w in index})
    if not q:
        return {}
    e = weights["embeddings.word_embeddings.weight"][ids].astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-9
    qi = np.array([index[w] for w in q])
    out: dict[str, list[str]] = {}
    for s in range(0, len(q), 1024):
        rows = qi[s:s + 1024]
        sim = e[rows] @ e.T
        sim[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        for r, j in enumerate(rows):
            out[words[j]] = [words[t] for t in top[r]]
    return out


# --- augmentation ------------------------------------------------------------------------------

class Augmenter:
    """Tang et al.'s three operations: word masking (here: dropping), replacement with a nearby
    word, n-gram sampling. `nearby` maps a lower-case word to its candidate replacements."""

    def __init__(self, cfg, nearby: dict[str, list[str]]):
        self.cfg = cfg
        self.nearby = nearby

    @staticmethod
    def core(token: str) -> str:
        """The word inside a whitespace token, lower-cased (punctuation around it stripped)."""
        return _CORE.match(token).group(2).lower()

    def _replace(self, token: str, rng: np.random.Generator) -> str:
        pre, core, post = _CORE.match(token).groups()
        cands = self.nearby.get(core.lower())
        if not cands:
            return token
        return pre + cands[int(rng.integers(len(cands)))] + post

    def variant(self, text: str, rng: np.random.Generator) -> str:
        cfg = self.cfg
        out = []
        for tok in text.split():
            u = rng.random()
            if u < cfg.mask:
                continue
            if u < cfg.mask + cfg.replace:
                tok = self._replace(tok, rng)
            out.append(tok)
        if len(out) > 1 and rng.random() < cfg.ngram:
            n = int(rng.integers(1, min(cfg.ngram_max, len(out)) + 1))
            s = int(rng.integers(0, len(out) - n + 1))
            out = out[s:s + n]
        return " ".join(out)

    def transfer_texts(self, texts: Sequence[str], copies: int, seed: int) -> list[str]:
        """The augmented variants (new, non-empty, distinct texts) of `texts`, in a
        deterministic order."""
        rng = np.random.default_rng(seed)
        seen = set(texts)
        out = []
        for t in texts:
            for _ in range(copies):
                v = self.variant(t, rng)
                if v and v not in seen:
                    seen.add(v)
                    out.append(v)
        return out


# --- the transfer set ----------------------------------------------------------------------

def _teacher_id(teacher) -> str:
    return hashlib.sha256((teacher.path / "teacher.json").read_bytes()).hexdigest()[:16]


def _texts_key(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(hashlib.sha1(t.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()[:16]


def _save(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _pack(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    raw = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.zeros(len(raw) + 1, np.int64)
    np.cumsum([len(r) for r in raw], out=offsets[1:])
    return np.frombuffer(b"".join(raw), np.uint8), offsets


def _unpack(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    b = data.tobytes()
    return [b[offsets[i]:offsets[i + 1]].decode("utf-8", "surrogatepass")
            for i in range(len(offsets) - 1)]


def prepare(recipe, texts: Sequence[str], teacher) -> None:
    """Label (or find) the transfer set, so that the student's training itself is timed
    without the teacher's passes."""
    _augmented(recipe, texts, teacher)


def transfer_set(recipe, texts: Sequence[str], y: np.ndarray, teacher) -> TrainingSet:
    """The training texts (gold labels) plus their augmented variants (teacher labels), all with
    teacher logits and word attributions; cached under the teacher's folder."""
    tok = recipe.tokenizer
    aug, z_aug, a_aug = _augmented(recipe, texts, teacher)
    z_tr, a_tr = teacher.outputs(texts, tok.max_words, tok.max_word_bytes,
                                 description="teacher: train")
    n, m = len(texts), len(aug)
    return TrainingSet(
        texts=list(texts) + list(aug),
        y=np.concatenate([np.asarray(y, np.int32), z_aug.argmax(1).astype(np.int32)]),
        ce_weight=np.concatenate([np.ones(n, np.float32), np.zeros(m, np.float32)]),
        t_logits=np.concatenate([z_tr, z_aug]).astype(np.float32),
        t_attr=np.concatenate([a_tr, a_aug]).astype(np.float32))


def _augmented(recipe, texts: Sequence[str], teacher) -> tuple[list[str], np.ndarray,
                                                              np.ndarray]:
    """The augmented texts with the teacher's logits and word attributions (cached)."""
    cfg = recipe.distill
    tok = recipe.tokenizer
    if cfg.copies == 0:
        return [], np.zeros((0, len(teacher.labels)), np.float32), np.zeros(
            (0, tok.max_words), np.float32)
    key = json.dumps({"teacher": _teacher_id(teacher), "texts": _texts_key(texts),
                      "distill": {k: getattr(cfg, k) for k in AUGMENT_KEYS},
                      "max_words": tok.max_words, "max_word_bytes": tok.max_word_bytes,
                      "k": NEIGHBOURS}, sort_keys=True)
    path = teacher.path / f"transfer-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    extra = None
    if path.is_file():
        try:
            with np.load(path) as z:
                extra = (_unpack(z["text_bytes"], z["offsets"]), z["logits"],
                         z["attr"].astype(np.float32))
        except (OSError, ValueError, KeyError, UnicodeDecodeError):
            extra = None  # a broken cache entry is recomputed
    if extra is None:
        nearby = neighbours({Augmenter.core(w) for t in texts for w in t.split()})
        aug = Augmenter(cfg, nearby).transfer_texts(texts, cfg.copies, cfg.seed)
        progress.log(f"transfer set: labelling {len(aug):,} augmented texts with the teacher "
                     f"(cached in {path.parent})")
        z, a = teacher.outputs(aug, tok.max_words, tok.max_word_bytes,
                               description="teacher: transfer set")
        data, offsets = _pack(aug)
        _save(path, text_bytes=data, offsets=offsets, logits=z, attr=a.astype(np.float16))
        extra = (aug, z, a)
    return extra
