"""Certification under character edits (mcutext.attack.certify) and the adaptive attack: the edit
family against the attacks' own edits, the enumeration on hand-made cases, and soundness on
a real sst2 student (the strongest char attacks never break a certified sentence; every
witness is a real misclassification within the budget)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcutext.text import perturb
from mcutext.attack.certify import Int8Model, certify, certify_sentence
from mcutext.attack.moves import combination_rows, count_combinations, row_choice, sentence_moves
from mcutext.common.errors import McutextError
from mcutext.text.perturb import Sentence
from mcutext.text.tokenizer import Tokenizer, TokenizerSpec


def one_edit(a: str, b: str) -> bool:
    """b is one adjacent swap, substitution, deletion or insertion away from a."""
    if a == b:
        return False
    if len(a) == len(b):
        d = [i for i in range(len(a)) if a[i] != b[i]]
        return len(d) == 1 or (len(d) == 2 and d[1] == d[0] + 1 and a[d[0]] == b[d[1]]
                               and a[d[1]] == b[d[0]])
    s, t = (a, b) if len(a) < len(b) else (b, a)
    return len(t) == len(s) + 1 and any(t[:i] + t[i + 1:] == s for i in range(len(t)))


# --- the family -----------------------------------------------------------------------------
def test_edit_family_counts():
    # lower-case letters only: distinct swaps + 25 n substitutions + runs (deletions) +
    # (n + 1) 26 - n insertions (inserting a letter next to itself twice gives one word)
    for word, swaps, runs in (("ab", 1, 2), ("movie", 4, 5), ("aab", 1, 2), ("good", 2, 3)):
        n = len(word)
        fam = perturb.edit_family(word)
        assert len(fam) == len(set(fam)) == swaps + 25 * n + runs + (n + 1) * 26 - n, word
        assert word not in fam and all(one_edit(word, v) for v in fam)
    assert len(perturb.edit_family("a")) == 25 + 2 * 26 - 1   # no swap, no deletion
    assert perturb.edit_family("") == []
    # case follows the replaced character (substitution) or the one before (insertion)
    fam = set(perturb.edit_family("Movie"))
    assert {"Xovie", "XMovie", "MXovie", "Moxvie", "oMvie", "ovie"} <= fam
    assert "xovie" not in fam and "Mxovie" not in fam


def test_edit_family_contains_every_attack_edit():
    rng = np.random.default_rng(0)
    for word in ("ab", "a", "Movie", "It's", "aab", "crème", "1930s", "GREAT", "terrible"):
        fam = set(perturb.edit_family(word))
        for _ in range(1500):
            kind = (None, "swap", "substitute", "delete", "insert", "keyboard")[rng.integers(6)]
            e = perturb.char_edit(word, rng, kind)
            assert e == word or e in fam, (word, kind, e)
        assert set(perturb.char_candidates(word, rng, 8)) <= fam
        assert set(perturb.typo_candidates(word, rng)) <= fam
        assert set(perturb.typo_candidates(word)) <= fam
        typos = perturb.typo_family(word)
        # the certificate's "typos" threat: a subset of the family that keeps the first and
        # last characters and holds every typo the typo attack draws
        assert len(typos) == len(set(typos)) and set(typos) <= fam and word not in typos
        assert all(t[0] == word[0] and t[-1] == word[-1] for t in typos)
        assert set(perturb.typo_candidates(word, rng)) <= set(typos) or len(word) < 3
        for _ in range(300):
            assert perturb.typo(word, rng) in set(typos) | {word}


def test_typo_family_counts():
    # "good": the internal swap o-o gives the word itself; both drops give "god"; the 4
    # keyboard neighbours of o (i, p, k, l) at each of the 2 internal positions; 26 letters
    # in each of the 3 internal gaps, where the 3 insertions of o are one word
    fam = perturb.typo_family("good")
    assert "gdoo" not in fam and "god" in fam and "goid" in fam and "gpod" in fam
    assert "ood" not in fam and "goo" not in fam and "hood" not in fam
    assert len(fam) == len(set(fam)) == 1 + 2 * 4 + 26 * 3 - 2
    assert perturb.typo_family("an") == [] and perturb.typo_family("") == []


# --- the enumeration, by hand ---------------------------------------------------------------
def test_count_combinations():
    assert count_combinations([2, 3, 4], 1) == 9
    assert count_combinations([2, 3, 4], 2) == 9 + 2 * 3 + 2 * 4 + 3 * 4
    assert count_combinations([2, 3, 4], 3) == 35 + 24 == count_combinations([2, 3, 4], 9)
    assert count_combinations([], 2) == 0
    assert count_combinations([300] * 30, 2) == 9000 + 435 * 90000   # exact, no overflow


def test_enumeration_reaches_exactly_the_rows_of_the_edited_texts():
    """Every text the family makes of "Ab, cd" with <= 2 words edited, encoded by the
    tokenizer, against the rows the enumeration builds without re-tokenizing."""
    tok = Tokenizer(TokenizerSpec(buckets=64, max_words=4))   # small: many collisions
    text = "Ab, cd"
    row, moves = sentence_moves(tok, text)
    assert [m.index for m in moves] == [0, 2]                  # "," is not editable
    s = Sentence.parse(text)
    brute = set()
    for a in [None] + perturb.edit_family("Ab"):
        for b in [None] + perturb.edit_family("cd"):
            edits = {i: w for i, w in ((0, a), (2, b)) if w is not None}
            brute.add(tok.encode(s.render(edits)).tobytes())
    built = {row.tobytes()}
    n_rows = 0
    F = tok.spec.features_per_word
    for rows, segments in combination_rows(row, moves, 2, F, chunk=100):
        n_rows += len(rows)
        built |= {r.tobytes() for r in rows}
        for r in range(0, len(rows), 37):   # each row's recorded choice rebuilds it
            again = row.copy()
            for p, t in row_choice(segments, r):
                again[moves[p].index * F:(moves[p].index + 1) * F] = moves[p].tuples[t]
            assert np.array_equal(again, rows[r])
    assert built == brute
    assert n_rows == count_combinations([len(m) for m in moves], 2)
    # each move's variant really encodes to its tuple, and no tuple is the word's own
    for m in moves:
        for t, v in zip(m.tuples, m.variants):
            assert tuple(tok.encode(v)[:4]) == tuple(t)
        assert tuple(row[m.index * 4:m.index * 4 + 4]) not in {tuple(t) for t in m.tuples}


class RuleModel:
    """A hand-made two-class int8 model for the enumeration's logic: class 1 exactly when
    word 0 and word 2 both carry the last tuple their moves reach."""

    def __init__(self, row, moves, F):
        self.targets = [(m.index, m.tuples[-1]) for m in moves]
        self.F = F
        self.rows = 0

    def logits(self, ids, check=0):
        self.rows += len(ids)
        hit = np.ones(len(ids), bool)
        for i, t in self.targets:
            hit &= (ids[:, i * self.F:(i + 1) * self.F] == t).all(axis=1)
        return np.stack([np.where(hit, 0, 5), np.where(hit, 5, 0)], 1).astype(np.int8)

    reference = logits


def test_certify_sentence_is_exhaustive_and_its_witness_is_real():
    tok = Tokenizer(TokenizerSpec(buckets=64, max_words=4))
    text = "Ab, cd"
    row, moves = sentence_moves(tok, text)
    model = RuleModel(row, moves, 4)
    one = certify_sentence(model, tok, text, 0, 1)
    # one edit cannot reach the pair: certified after every single move was evaluated
    assert one["status"] == "certified"
    assert one["evaluations"] == one["combinations"] == sum(len(m) for m in moves)
    two = certify_sentence(model, tok, text, 0, 2)
    assert two["status"] == "attacked"
    w = two["witness"]
    assert [c["index"] for c in w["changes"]] == [0, 2]
    assert model.logits(tok.encode(w["text"])[None])[0].argmax() == 1
    assert all(c["to"] in perturb.edit_family(c["from"]) for c in w["changes"])
    many = certify_sentence(model, tok, text, 0, 2, max_evals=10)
    assert many["status"] == "too_many" and many["evaluations"] == 0
    assert many["reason"] == f"not certified (too many combinations: {two['combinations']})"
    # under a cap that fits the single edits only, those are still all searched
    n1 = sum(len(m) for m in moves)
    part = certify_sentence(model, tok, text, 0, 2, max_evals=n1)
    assert part["status"] == "too_many" and part["evaluations"] == n1
    assert part["searched_edits"] == 1
    assert certify_sentence(model, tok, text, 1, 1)["status"] == "wrong_clean"


# --- a real student -------------------------------------------------------------------------
N = 16


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    import mcutext
    return mcutext.load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def cert1(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("certify") / "k1.json"
    return certify(bundle, edits=1, n=N, out=out)


def test_certificate_counts_and_file(cert1):
    c = cert1
    assert c["engine"] == "c" and c["cross_checked_rows"] >= N
    assert c["n"] == N == sum(c[s] for s in ("certified", "attacked", "too_many",
                                             "wrong_clean"))
    assert c["certified"] > 0 and c["attacked"] > 0
    assert c["certified_accuracy"] == c["certified"] / N
    assert c["clean_accuracy"] == (N - c["wrong_clean"]) / N
    saved = json.loads(open(c["out"]).read())
    assert saved["sentences"] == c["sentences"] and saved["certified"] == c["certified"]
    for r in c["sentences"]:
        if r["status"] == "certified":
            assert r["evaluations"] == r["combinations"] > 0


def test_two_edits_keep_the_one_edit_witnesses(bundle, cert1):
    """At K=2 the hashing tokenizer's sentences have far more than 200,000 combinations; the
    single edits are still searched, so every sentence attacked at K=1 is attacked at K=2
    with the same witness, and nothing is certified that was not at K=1."""
    two = certify(bundle, edits=2, n=N)
    for a, b in zip(cert1["sentences"], two["sentences"]):
        assert a["text"] == b["text"]
        if a["status"] in ("attacked", "wrong_clean"):
            assert b["status"] == a["status"] and b.get("witness") == a.get("witness")
        elif b["status"] == "too_many":
            assert b["combinations"] > 200_000 and b["searched_edits"] == 1
        else:
            assert b["status"] in ("certified", "attacked") and a["status"] == "certified"
    assert two["too_many"] > 0 and two["certified"] <= cert1["certified"]


def test_witnesses_are_misclassified_by_tflite_micro_within_the_budget(bundle, cert1):
    attacked = [r for r in cert1["sentences"] if r["status"] == "attacked"]
    texts = [r["witness"]["text"] for r in attacked]
    raw = bundle.run_int8(bundle.tokenize(texts), "tflm")["logits"]
    for r, q in zip(attacked, raw):
        assert bundle.labels[int(np.argmax(q))] != r["true"]
        assert [int(v) for v in q] == r["witness"]["logits"]
        changes = perturb.changed_words(r["text"], r["witness"]["text"])
        assert len(changes) == 1
        assert all(new in perturb.edit_family(old) for _, old, new in changes)


def test_certified_sentences_resist_the_strongest_attacks(bundle, cert1):
    from mcutext.attack import adaptive
    from mcutext.attack.run import run_attack
    from mcutext.text.datasets import Dataset
    cert = [r for r in cert1["sentences"] if r["status"] == "certified"]
    data = Dataset([r["text"] for r in cert], [r["true"] for r in cert], "certified")
    for attack in ("deepwordbug", "adaptive", "typo", "char"):
        for seed in (0, 1):
            res = run_attack(bundle, attack, runtime="tflm", budget=1, seed=seed, data=data,
                             transfer=False)
            assert res["attacked"] == len(cert) and res["successes"] == 0, (attack, seed)
    # and the budget the certificate does not cover breaks some of them (the attacks work)
    res = run_attack(bundle, "char", runtime="tflm", budget=3, data=data, transfer=False)
    assert res["successes"] > 0


def test_adaptive_attack_finds_what_certification_finds(bundle, cert1, monkeypatch):
    """On the attacked sentences, with every encoding of every word and the exhaustive
    search allowed, the adaptive attack at budget 1 finds a misclassification wherever the
    enumeration did (the two coincide: same family, same grouping by encoding)."""
    from mcutext.attack import adaptive
    from mcutext.attack.run import run_attack
    from mcutext.text.datasets import Dataset
    attacked = [r for r in cert1["sentences"] if r["status"] == "attacked"]
    assert attacked
    data = Dataset([r["text"] for r in attacked], [r["true"] for r in attacked], "attacked")
    monkeypatch.setattr(adaptive, "ADAPTIVE_PER_WORD", 10 ** 6)
    monkeypatch.setattr(adaptive, "ADAPTIVE_EXHAUSTIVE", max(r["combinations"] for r in attacked))
    res = run_attack(bundle, "adaptive", budget=1, data=data, transfer=False)
    assert res["attacked"] == res["successes"] == len(attacked)
    for e in res["examples"]:
        assert e["queries"] <= 1 + dict((r["text"], r["combinations"])
                                        for r in attacked)[e["original"]]


def test_device_runtime_checks_the_board(bundle, tmp_path):
    from test_attack import ProtocolStandIn
    board = ProtocolStandIn(bundle)
    try:
        c = certify(bundle, edits=1, n=4, runtime="device", port=board.url)
        d = c["device"]
        assert d["identical"] == d["texts"] == 4 + c["attacked"]
    finally:
        board.close()
    # a board running another model is refused before any work
    other = ProtocolStandIn(bundle, {**bundle.tokenizer.spec.to_dict(),
                                     "buckets": bundle.tokenizer.spec.buckets + 1})
    try:
        with pytest.raises(McutextError, match="does not run this bundle: buckets"):
            certify(bundle, edits=1, n=2, runtime="device", port=other.url)
        assert other.classified == 0
    finally:
        other.close()

    class OffByOne(ProtocolStandIn):
        """A board whose int8 scores differ from TFLite Micro's by one step (the label
        unchanged)."""

        def _answer(self, line):
            out = super()._answer(line)
            if line.startswith(b"classify"):
                k = int(out[0].split()[1])
                q = [int(v) for v in out[1].split()[1:]]
                q[1 - k] += -1 if q[1 - k] > -128 else 1
                out[1] = b"scores " + " ".join(map(str, q)).encode()
            return out
    board = OffByOne(bundle)
    try:
        with pytest.raises(McutextError, match="differ from TFLite Micro's"):
            certify(bundle, edits=1, n=2, runtime="device", port=board.url,
                    out=tmp_path / "v.json")
        assert json.loads((tmp_path / "v.json").read_text())["device"]["identical"] == 0
    finally:
        board.close()


def test_engines_agree(bundle):
    texts = ["a gripping , funny film", "dull and lifeless", "not bad at all"]
    ids = bundle.tokenize(texts)
    c, t = Int8Model(bundle, "c"), Int8Model(bundle, "tflm")
    assert c.engine == "c" and t.engine == "tflm"
    assert np.array_equal(c.logits(ids, check=3), t.logits(ids))
    assert c.checked == 3
    # a generated C that drifts from TFLite Micro on one row of a batch is caught
    good = c.host.run

    def drift(rows):
        out = good(rows)
        out["logits"][-1, 0] += 1
        return out
    c.host.run = drift
    with pytest.raises(McutextError, match="disagree"):
        c.logits(bundle.tokenize(texts * 10))


def test_cli(sst2_small_bundle, tmp_path, capsys, monkeypatch):
    from mcutext.cli import main
    monkeypatch.delenv("MCUTEXT_PORT", raising=False)
    b = str(sst2_small_bundle)
    out = tmp_path / "v.json"
    assert main(["certify", b, "--edits", "1", "-n", "3", "--json", "--out", str(out)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n"] == 3 and s["edits"] == 1 and out.is_file()
    before = out.read_text()
    assert main(["certify", b, "--edits", "1", "-n", "3", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == before
    assert main(["certify", b, "--edits", "1", "-n", "2", "--out", str(out), "--force"]) == 0
    assert "certified accuracy" in capsys.readouterr().out
    assert json.loads(out.read_text())["n"] == 2
    for args, msg in ((["--edits", "0"], "--edits"), (["-n", "0"], "--limit"),
                      (["--runtime", "keras"], "'keras' is not one of"),
                      (["--max-evals", "0"], "--max-evals")):
        assert main(["certify", b, *args]) == 2, args
        assert msg in capsys.readouterr().err, args
    assert main(["certify", b, "--runtime", "device"]) == 2
    err = capsys.readouterr().err
    assert "error: the device runtime needs --port" in err and "hint:" in err
    assert main(["certify", b, "--out", str(tmp_path / "no" / "v.json")]) == 2
    assert "no such folder" in capsys.readouterr().err
    # the narrower threats are for the robust encoding only
    assert main(["certify", b, "--threat", "deletion", "-n", "2"]) == 2
    assert "needs the robust encoding" in capsys.readouterr().err
    assert main(["certify", b, "--threat", "typo"]) == 2
    assert "'typo' is not one of" in capsys.readouterr().err
    # the real-words and typos threats hold for any encoding
    for threat in ("real-words", "typos"):
        assert main(["certify", b, "--threat", threat, "--edits", "1", "-n", "2",
                     "--json"]) == 0, threat
        assert json.loads(capsys.readouterr().out)["threat"] == threat
