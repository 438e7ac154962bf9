"""Labelled text: loaders for TSV / CSV / JSONL and the named datasets.

Every loader reads the whole file before returning and raises McutextError naming the file
and line on the first problem, so a broken file never half-loads.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import os
from pathlib import Path

from ..common.errors import McutextError

NAMED_DATASETS = ("sst2", "sms_spam", "ag_news", "clinc150")
SPLITS = ("train", "dev", "test")


@dataclasses.dataclass
class Dataset:
    texts: list[str]
    labels: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> "Dataset":
        return Dataset([self.texts[i] for i in idx], [self.labels[i] for i in idx], self.source)


def limited(data: Dataset, n: int, rng) -> Dataset:
    """A random subset of n examples (`--limit n`) that keeps every class of `data`.

    The subset is the first n of rng's permutation; if that misses a class, the first example
    of the class further on in the permutation replaces the last-drawn example of a class drawn
    more than once, so a subset that already has every class is the plain random draw."""
    perm = [int(i) for i in rng.permutation(len(data))]
    pick = perm[:n]
    classes = sorted(set(data.labels))
    drawn = collections.Counter(data.labels[i] for i in pick)
    missing = [c for c in classes if c not in drawn]
    if not missing:
        return data.subset(pick)
    if n < len(classes):
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise McutextError(
            f"--limit {n}: a subset of {n} training examples cannot hold all {len(classes)} "
            f"classes of {data.source}; this one lacks {len(missing)}: {shown}",
            hint=f"use --limit {len(classes)} or more (a few examples per class is better)")
    first = {}
    for i in perm[n:]:
        first.setdefault(data.labels[i], i)
    for c in missing:
        for pos in range(len(pick) - 1, -1, -1):
            if drawn[data.labels[pick[pos]]] > 1:
                drawn[data.labels[pick[pos]]] -= 1
                pick[pos] = first[c]
                drawn[c] = 1
                break
    return data.subset(pick)


def data_dir() -> Path:
    """Where the named datasets live: $MCUTEXT_DATA_DIR, else ../shared/datasets beside the
    project checkout (or beside the current directory)."""
    env = os.environ.get("MCUTEXT_DATA_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    candidates = [p.parent / "shared" / "datasets" for p in here.parents]
    candidates.append(Path.cwd().parent / "shared" / "datasets")
    for c in candidates:
        if c.is_dir():
            return c
    raise McutextError(
        "no dataset directory found",
        hint="set MCUTEXT_DATA_DIR to the folder holding sst2/, sms_spam/, ag_news/, clinc150/")


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise McutextError(f"{path}:{line}: invalid UTF-8 (byte 0x{raw[e.start]:02x})") from None


def _check(path: Path, line: int, label: str | None, text: str | None) -> tuple[str, str]:
    if label is None or not str(label).strip():
        raise McutextError(f"{path}:{line}: missing label")
    if text is None or not str(text).strip():
        raise McutextError(f"{path}:{line}: empty text")
    return str(label).strip(), str(text)


def load_tsv(path: Path) -> Dataset:
    content = _decode(path.read_bytes(), path)
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise McutextError(f"{path}: empty file (expected a header line 'label<TAB>text')")
    header = lines[0].rstrip("\r").split("\t")
    if header != ["label", "text"]:
        raise McutextError(f"{path}:1: header must be 'label<TAB>text', got {lines[0][:60]!r}")
    texts, labels = [], []
    for n, line in enumerate(lines[1:], start=2):
        cols = line.rstrip("\r").split("\t")
        if len(cols) != 2:
            raise McutextError(f"{path}:{n}: expected 2 tab-separated columns, got {len(cols)}")
        label, text = _check(path, n, cols[0], cols[1])
        labels.append(label)
        texts.append(text)
    if not texts:
        raise McutextError(f"{path}: no examples after the header")
    return Dataset(texts, labels, str(path))


def load_csv(path: Path) -> Dataset:
    content = _decode(path.read_bytes(), path)
    # strict: a quote left open (a truncated file) is an error, not a text that runs to the end
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise McutextError(f"{path}: empty file (expected a header with 'label' and 'text')")
    except csv.Error as e:
        raise McutextError(f"{path}:1: {e}") from None
    header = [h.strip().lower() for h in header]
    if "label" not in header or "text" not in header:
        raise McutextError(f"{path}:1: header must name a 'label' and a 'text' column")
    li, ti = header.index("label"), header.index("text")
    texts, labels = [], []
    try:
        for row in reader:
            n = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise McutextError(
                    f"{path}:{n}: expected {len(header)} columns, got {len(row)}")
            label, text = _check(path, n, row[li], row[ti])
            labels.append(label)
            texts.append(text)
    except csv.Error as e:
        raise McutextError(f"{path}:{reader.line_num}: {e}") from None
    if not texts:
        raise McutextError(f"{path}: no examples after the header")
    return Dataset(texts, labels, str(path))


def load_jsonl(path: Path) -> Dataset:
    content = _decode(path.read_bytes(), path)
    texts, labels = [], []
    for n, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise McutextError(f"{path}:{n}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise McutextError(f"{path}:{n}: expected a JSON object with 'label' and 'text'")
        for key in ("label", "text"):
            if key in obj and obj[key] is not None and not isinstance(obj[key], str):
                raise McutextError(f"{path}:{n}: '{key}' must be a string, got "
                                   f"{_JSON_TYPES.get(type(obj[key]), 'a value')} "
                                   f"{json.dumps(obj[key])[:40]}")
        label, text = _check(path, n, obj.get("label"), obj.get("text"))
        labels.append(label)
        texts.append(text)
    if not texts:
        raise McutextError(f"{path}: no examples")
    return Dataset(texts, labels, str(path))


_JSON_TYPES = {list: "a list", dict: "an object", int: "a number", float: "a number",
               bool: "a boolean"}

LOADERS = {".tsv": load_tsv, ".csv": load_csv, ".jsonl": load_jsonl}


def load_file(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise McutextError(f"{path}: no such file")
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise McutextError(
            f"{path}: unknown format '{path.suffix}' (use .tsv, .csv or .jsonl)")
    return loader(path)


def has_split(dataset: str, split: str) -> bool:
    if dataset in NAMED_DATASETS:
        return (data_dir() / dataset / f"{split}.tsv").is_file()
    return Path(dataset).is_dir() and any(
        (Path(dataset) / f"{split}{ext}").is_file() for ext in LOADERS)


def load_split(dataset: str, split: str) -> Dataset:
    """Load `split` of a named dataset, or of a folder holding <split>.tsv/.csv/.jsonl."""
    return load_file(split_file(dataset, split))


def split_file(dataset: str, split: str) -> Path:
    """The file holding `split` of a named dataset or of a folder (what load_split reads)."""
    if split not in SPLITS:
        raise McutextError(f"unknown split '{split}' (use one of: {', '.join(SPLITS)})")
    if dataset in NAMED_DATASETS:
        folder = data_dir() / dataset
        if not folder.is_dir():
            raise McutextError(f"dataset '{dataset}' not found under {data_dir()}",
                               hint="set MCUTEXT_DATA_DIR to the shared datasets folder")
    else:
        folder = Path(dataset)
        if not folder.is_dir():
            raise McutextError(
                f"unknown dataset '{dataset}': not one of {', '.join(NAMED_DATASETS)} "
                f"and no folder {folder.absolute()}",
                hint="a recipe's dataset path is relative to the recipe file's folder")
    for ext in LOADERS:
        p = folder / f"{split}{ext}"
        if p.is_file():
            return p
    raise McutextError(f"dataset '{dataset}' has no '{split}' split in {folder}")


# the sentence a device's time per classification is measured on (bench, report)
SENTENCE_WORDS = 32


def long_sentence(texts: list[str], tokenizer, words: int = SENTENCE_WORDS) -> str:
    """The first test sentence with at least `words` words (the model sees `max_words`);
    several sentences joined if none is that long."""
    for t in texts:
        if len(tokenizer.words(t)) >= min(words, tokenizer.spec.max_words):
            return t
    joined = ""
    for t in texts:
        joined = f"{joined} {t}".strip()
        if len(tokenizer.words(joined)) >= min(words, tokenizer.spec.max_words):
            break
    return joined
