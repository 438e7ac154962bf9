"""Loaders: real datasets load fully; broken files fail naming the file and line."""

import pytest

from mcutext.text.datasets import NAMED_DATASETS, load_file, load_split
from mcutext.common.errors import McutextError


@pytest.mark.parametrize("name", NAMED_DATASETS)
def test_named_datasets_load(name):
    test = load_split(name, "test")
    assert len(test) > 500
    assert len(test.texts) == len(test.labels)
    assert all(t.strip() for t in test.texts[:100])


def test_counts_match_dataset_readme():
    assert len(load_split("sst2", "train")) == 6920
    assert len(load_split("sst2", "test")) == 1821
    assert len(load_split("clinc150", "test")) == 5500
    assert len(set(load_split("clinc150", "train").labels)) == 151


def test_unknown_split_and_dataset():
    with pytest.raises(McutextError, match="unknown split 'validation'"):
        load_split("sst2", "validation")
    with pytest.raises(McutextError, match="no 'dev' split"):
        load_split("ag_news", "dev")
    with pytest.raises(McutextError, match="unknown dataset 'imdb'"):
        load_split("imdb", "train")


@pytest.mark.parametrize("content,msg", [
    (b"label\ttext\npos\tgood\nneg\n", r"x.tsv:3: expected 2 tab-separated columns, got 1"),
    (b"label\ttext\npos\tgood\n\tbad film\n", r"x.tsv:3: missing label"),
    (b"label\ttext\npos\t  \n", r"x.tsv:2: empty text"),
    (b"label\ttext\npos\tgood\nneg\tbad \xff film\n", r"x.tsv:3: invalid UTF-8"),
    (b"text\tlabel\ngood\tpos\n", r"x.tsv:1: header must be"),
    (b"", r"x.tsv: empty file"),
    (b"label\ttext\na\tb\tc\n", r"x.tsv:2: expected 2 tab-separated columns, got 3"),
])
def test_tsv_errors(tmp_path, content, msg):
    p = tmp_path / "x.tsv"
    p.write_bytes(content)
    with pytest.raises(McutextError, match=msg):
        load_file(p)


def test_csv_and_jsonl(tmp_path):
    c = tmp_path / "d.csv"
    c.write_text('text,label\n"a, quoted, text",pos\nplain,neg\n')
    d = load_file(c)
    assert d.texts == ["a, quoted, text", "plain"] and d.labels == ["pos", "neg"]
    j = tmp_path / "d.jsonl"
    j.write_text('{"label": "pos", "text": "nice"}\n\n{"label": "neg", "text": "bad"}\n')
    assert load_file(j).labels == ["pos", "neg"]


@pytest.mark.parametrize("name,content,msg", [
    ("e.csv", "label,text\npos,good\nneg\n", r"e.csv:3: expected 2 columns, got 1"),
    ("e.csv", "lbl,txt\npos,good\n", r"e.csv:1: header must name"),
    ("e.jsonl", '{"label": "pos", "text": "ok"}\n{"label": "pos"\n', r"e.jsonl:2: invalid JSON"),
    ("e.jsonl", '{"label": "pos", "text": "ok"}\n{"text": "no label"}\n', r"e.jsonl:2: missing label"),
    ("e.jsonl", '["pos", "ok"]\n', r"e.jsonl:1: expected a JSON object"),
    ("e.txt", "pos good\n", r"unknown format '.txt'"),
])
def test_other_format_errors(tmp_path, name, content, msg):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(McutextError, match=msg):
        load_file(p)


def test_missing_file(tmp_path):
    with pytest.raises(McutextError, match="no such file"):
        load_file(tmp_path / "nope.tsv")


def _plain_misses_a_class(data, n: int) -> int:
    """A seed whose plain random draw of n examples lacks a class (searched, deterministic)."""
    import numpy as np
    for seed in range(1000):
        pick = np.random.default_rng(seed).permutation(len(data))[:n]
        if len({data.labels[i] for i in pick}) < len(set(data.labels)):
            return seed
    raise AssertionError("no such seed")


def test_limit_keeps_every_class():
    """--limit n: the plain random draw when it holds every class; otherwise one example of
    each missing class replaces an example of a class drawn more than once."""
    import numpy as np

    from mcutext.text.datasets import limited
    spam = load_split("sms_spam", "train")
    seed = _plain_misses_a_class(spam, 10)
    plain = spam.subset(np.random.default_rng(seed).permutation(len(spam))[:10])
    got = limited(spam, 10, np.random.default_rng(seed))
    assert len(got) == 10 and set(got.labels) == set(spam.labels)
    assert len(set(got.texts) - set(plain.texts)) == 1
    full = limited(spam, 200, np.random.default_rng(1))
    assert full.texts == spam.subset(np.random.default_rng(1).permutation(len(spam))[:200]).texts


def test_limit_below_the_number_of_classes_says_so():
    import numpy as np

    from mcutext.text.datasets import limited
    clinc = load_split("clinc150", "train")
    with pytest.raises(McutextError, match=r"--limit 100: a subset of 100 training examples "
                                           r"cannot hold all 151 classes of .*train.tsv; this "
                                           r"one lacks \d+: ") as e:
        limited(clinc, 100, np.random.default_rng(1))
    assert "--limit 151 or more" in e.value.hint


def test_cli_limit_missing_classes_is_one_error_line(capsys):
    from mcutext.cli import main
    assert main(["train", "clinc150", "--limit", "100", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: --limit 100: a subset of 100 training examples cannot "
                             "hold all 151 classes")
    assert err[1] == "hint: use --limit 151 or more (a few examples per class is better)"
