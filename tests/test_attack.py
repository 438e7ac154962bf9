"""The attack suite: perturbation primitives, the attacks on a real sst2 student, their
bookkeeping (verification, budgets, batching, query counts, determinism), the runtimes (the
device through a stand-in of the serial contract, and through the real firmware under QEMU),
the CLI and the bench section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcutext.text import perturb
from mcutext.common.errors import McutextError
from mcutext.text.perturb import Sentence

TEXTS = [
    "a stirring , funny and finally transporting re-imagining of beauty and the beast .",
    "apparently reassembled from the cutting-room floor of any given daytime soap .",
    "  It's a (GREAT) crème brûlée,  film!!  ",
    "this is a visually stunning rumination on love , memory , history and the war .",
]


def damerau1(a: str, b: str) -> bool:
    """True when b is one substitution, insertion, deletion or adjacent swap away from a."""
    if a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    if abs(len(a) - len(b)) != 1:
        return False
    s, t = (a, b) if len(a) < len(b) else (b, a)
    return any(t[:i] + t[i + 1:] == s for i in range(len(t)))


# --- primitives -----------------------------------------------------------------------------
def test_sentence_round_trip_and_tokenizer_alignment():
    from mcutext.text.tokenizer import Tokenizer, TokenizerSpec
    tok = Tokenizer(TokenizerSpec(max_words=8, max_word_bytes=4))
    for text in TEXTS + ["", "   ", "!!", "don't stop", "naïve\u00a0café ;-)"]:
        s = Sentence.parse(text)
        assert s.render() == text
        assert [t.lower().encode()[:tok.spec.max_word_bytes]
                for t in s.tokens][:tok.spec.max_words] == tok.words(text)


def test_char_edits():
    rng = np.random.default_rng(0)
    assert perturb.swap_chars("abcd", 1) == "acbd"
    assert perturb.substitute_char("Movie", 0, "x") == "Xovie"
    assert perturb.delete_char("movie", 4) == "movi"
    assert perturb.insert_char("movie", 5, "s") == "movies"
    assert "s" in perturb.keyboard_neighbours("a") and "a" in perturb.keyboard_neighbours("s")
    assert perturb.keyboard_neighbours("G").isupper()
    for kind in ("swap", "substitute", "delete", "insert", "keyboard"):
        for w in ("movie", "terrible", "ok"):
            e = perturb.char_edit(w, rng, kind)
            assert damerau1(w, e), (kind, w, e)
    cands = perturb.char_candidates("wonderful", rng, per_kind=2)
    assert 4 <= len(cands) <= 8 and len(set(cands)) == len(cands)
    assert all(damerau1("wonderful", c) for c in cands)


def test_typos_edit_one_internal_character():
    rng = np.random.default_rng(3)
    for w in ("movie", "brilliant", "bad"):
        cands = perturb.typo_candidates(w, rng)
        assert cands and len(set(cands)) == len(cands)
        for c in cands:
            assert c[0] == w[0] and c[-1] == w[-1] and damerau1(w, c), (w, c)
        assert len(perturb.typo_candidates(w, rng, max_candidates=5)) == min(5, len(cands))
        t = perturb.typo(w, rng)
        assert t[0] == w[0] and t[-1] == w[-1] and damerau1(w, t)
    assert perturb.typo_candidates("ok", rng) == []


@pytest.mark.parametrize("kind", ["char", "word"])
def test_random_perturbation_is_seeded_and_within_budget(kind):
    for text in TEXTS:
        a = [perturb.random_perturbation(text, np.random.default_rng(7), kind, 2)
             for _ in range(2)]
        assert a[0] == a[1]
        for seed in range(20):
            for k in (1, 2, 3):
                out = perturb.random_perturbation(text, np.random.default_rng(seed), kind, k)
                s0, s1 = Sentence.parse(text), Sentence.parse(out)
                assert s1.gaps == s0.gaps and len(s1) == len(s0)
                changes = perturb.changed_words(text, out)
                assert len(changes) <= k
                for _, old, new in changes:
                    if kind == "char":
                        assert damerau1(old, new)
                    else:
                        assert new.lower() in [x.lower() for x in perturb.synonyms(old)]
    outs = {perturb.random_perturbation(TEXTS[0], np.random.default_rng(s), kind, 2)
            for s in range(10)}
    assert len(outs) > 3
    assert perturb.random_perturbation("!!! ...", np.random.default_rng(0), kind) == "!!! ..."


def test_wordnet_synonyms():
    for w in ("good", "movie", "funny", "terrible", "boring", "great"):
        assert perturb.synonyms(w), w
    assert "film" in perturb.synonyms("movie")
    assert perturb.synonyms("Movie")[0][0].isupper()
    for w in ("the", "was", "it", "and", "1930s", "qwzx"):
        assert perturb.synonyms(w) == [], w
    for s in perturb.synonyms("funny"):
        assert s.isalpha() and s != "funny"


def test_missing_wordnet_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MCUTEXT_WORDNET_DIR", raising=False)
    monkeypatch.setattr(perturb, "WORDNET_DIRS", (tmp_path,))
    with pytest.raises(McutextError) as e:
        perturb.wordnet_dir()
    assert "apt-get install wordnet-base" in e.value.hint


# --- attacks --------------------------------------------------------------------------------
N = 60


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    import mcutext
    return mcutext.load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def dwb(bundle, tmp_path_factory):
    """DeepWordBug at a budget of 2 words on TFLite Micro."""
    from mcutext.attack.run import run_attack
    out = tmp_path_factory.mktemp("attack")
    return run_attack(bundle, "deepwordbug", runtime="tflm", n=N, budget=2, seed=0, out=out)


def check_report(bundle, res, runtime, budget=2):
    """Every success re-classifies (independently, through Bundle.predict) to another label;
    every failure keeps the true label; the budget holds (edited words counted from the
    texts); only the reported words changed, and nothing else in the sentence."""
    ex = res["examples"]
    assert len(ex) == res["n"]
    for status in ("success", "failed"):
        rows = [r for r in ex if r["status"] == status]
        if not rows:
            continue
        pred = bundle.predict(
            [r["perturbed"] for r in rows], runtime if runtime != "device" else "tflm")
        for r, p in zip(rows, pred):
            assert r["pred"] == p
            assert (p != r["true"]) == (status == "success"), r
    for r in ex:
        if r["status"] == "skipped":
            assert r["pred_clean"] != r["true"] and r["perturbed"] == r["original"]
            continue
        assert r["pred_clean"] == r["true"]
        changes = perturb.changed_words(r["original"], r["perturbed"])
        assert len(changes) == r["words_changed"] <= budget
        assert Sentence.parse(r["perturbed"]).gaps == Sentence.parse(r["original"]).gaps
        assert [(c["index"], c["from"], c["to"]) for c in r["changes"]] == changes
        # only words the model sees are edited
        assert all(i < bundle.tokenizer.spec.max_words for i, _, _ in changes)
    assert res["successes"] == sum(r["status"] == "success" for r in ex)
    assert res["unverified"] == 0


def test_char_attack_drives_accuracy_well_below_clean(bundle, dwb, record_property):
    for k in ("clean_accuracy", "accuracy_under_attack", "success_rate"):
        record_property(k, dwb[k])
    assert dwb["attack"] == "deepwordbug" and dwb["budget"] == 2
    check_report(bundle, dwb, "tflm")
    # Measured over train seeds 1-6 of the fixture (MCUTEXT_TEST_SEED, conftest), on these
    # 60 sentences: clean accuracy 0.683, 0.783, 0.733, 0.583, 0.600, 0.650; share of it
    # left under attack 0.44, 0.49, 0.52, 0.57, 0.50, 0.36; success rate 0.56, 0.51, 0.48,
    # 0.43, 0.50, 0.64. (The bounds were 0.6, 0.5 and 0.5, which seeds 3, 4 and 5 fail.)
    assert dwb["clean_accuracy"] > 0.5
    # "well below": at most 70 % of the clean accuracy is left
    assert dwb["accuracy_under_attack"] < 0.7 * dwb["clean_accuracy"], dwb
    assert dwb["success_rate"] > 0.3
    edited = [r for r in dwb["examples"] if r["status"] != "skipped"]
    assert any(r["words_changed"] == 2 for r in edited)
    for r in edited:
        for c in r["changes"]:
            assert damerau1(c["from"], c["to"])


def test_failed_attacks_leave_the_label_alone(bundle, dwb):
    """A sentence reported as failed (or skipped) is, as perturbed, still classified as
    before, on the runtime attacked; its int8 scores are what TFLite Micro gives."""
    rows = [r for r in dwb["examples"] if r["status"] != "success"]
    assert any(r["status"] == "failed" for r in rows)
    q = bundle.run_int8(bundle.tokenize([r["perturbed"] for r in rows]), "tflm")["logits"]
    for r, scores in zip(rows, q):
        assert bundle.labels[int(np.argmax(scores))] == r["pred_clean"]
        if r["status"] == "failed":
            assert r["pred"] == r["true"] and r["scores_int8"] == scores.tolist()


def test_output_files_and_queries(dwb):
    from pathlib import Path
    rec = Path(dwb["records"])
    assert rec.name == "deepwordbug-tflm.jsonl"
    rows = [json.loads(line) for line in rec.read_text().splitlines()]
    assert len(rows) == dwb["n"]
    summary = json.loads(rec.with_suffix(".json").read_text())
    assert summary["successes"] == dwb["successes"]
    for key in ("original", "perturbed", "true", "pred", "scores_clean", "queries",
                "words_changed"):
        assert all(key in r for r in rows)
    # batched: every text the runtime classified is a counted query (plus one re-check per
    # attacked example), and far fewer calls than texts were made
    assert dwb["runtime_rows"] == sum(r["queries"] for r in rows) + dwb["attacked"]
    assert dwb["runtime_calls"] * 4 < dwb["runtime_rows"]
    assert dwb["mean_queries"] > 3


def test_attacks_are_seeded(bundle, dwb):
    from mcutext.attack.run import run_attack
    again = run_attack(bundle, "deepwordbug", runtime="tflm", n=N, seed=0, transfer=False)
    assert [r["perturbed"] for r in again["examples"]] == [
        r["perturbed"] for r in dwb["examples"]]
    assert [r["queries"] for r in again["examples"]] == [r["queries"] for r in dwb["examples"]]
    # another seed attacks the same sentences with other random edits
    other = run_attack(bundle, "deepwordbug", runtime="tflm", n=N, seed=1, transfer=False)
    assert [r["original"] for r in other["examples"]] == [r["original"] for r in dwb["examples"]]
    assert [r["perturbed"] for r in other["examples"]] != [
        r["perturbed"] for r in dwb["examples"]]


@pytest.mark.parametrize("budget", [1, 0.1])
def test_budget_is_respected(bundle, budget, record_property):
    from mcutext.attack.run import run_attack
    res = run_attack(bundle, "char", runtime="tflm", n=30, budget=budget, seed=2,
                     transfer=False)
    record_property("successes", res["successes"])
    check_report(bundle, res, "tflm", budget=1 if budget == 1 else 32)
    # measured over train seeds 1-6: 8, 4, 13, 6, 11, 6 (budget 1); 11, 7, 16, 9, 16, 12 (0.1)
    assert res["successes"] > 0
    for r in res["examples"]:
        if r["status"] != "skipped":
            allowed = 1 if budget == 1 else max(1, int(budget * r["words"]))
            assert len(perturb.changed_words(r["original"], r["perturbed"])) <= allowed


def test_char_is_the_stronger_of_deepwordbug_and_adaptive(bundle, dwb):
    """`char` keeps every DeepWordBug success as is and adds the adaptive attack's on the
    sentences DeepWordBug leaves; the adaptive edits stay within one character per word."""
    from mcutext.attack.run import run_attack
    res = run_attack(bundle, "char", runtime="tflm", n=N, budget=2, seed=0, transfer=False)
    assert res["attack"] == "char"
    check_report(bundle, res, "tflm")
    by_dwb = {r["original"]: r for r in dwb["examples"]}
    extra = 0
    for r in res["examples"]:
        old = by_dwb[r["original"]]
        if old["status"] == "success":
            assert r["status"] == "success" and r["found_by"] == "deepwordbug"
            assert r["perturbed"] == old["perturbed"]
        elif r["status"] == "success":
            assert r["found_by"] == "adaptive"
            extra += 1
        for c in r.get("changes", []):
            assert c["to"] in perturb.edit_family(c["from"])
    assert extra > 0 and res["successes"] == dwb["successes"] + extra


class Counting:
    """A classifier wrapper that records the size of every call."""

    def __init__(self, inner):
        self.inner, self.sizes = inner, []
        self.labels, self.runtime = inner.labels, inner.runtime
        self.calls = self.rows = 0

    def proba(self, texts):
        texts = list(texts)
        self.sizes.append(len(texts))
        self.calls += 1
        self.rows += len(texts)
        return self.inner.proba(texts)

    def close(self):
        pass


def test_typo_batches_and_edits_internal_characters(bundle, record_property):
    from mcutext.attack.classifiers import make_classifier
    from mcutext.attack.run import run_attack
    clf = Counting(make_classifier(bundle, "litert"))
    res = run_attack(bundle, "typo", runtime="litert", n=40, budget=1, seed=1,
                     classifier=clf, transfer=False)
    record_property("successes", res["successes"])
    check_report(bundle, res, "litert", budget=1)
    assert res["successes"] > 0      # measured over train seeds 1-6: 7, 9, 12, 11, 3, 9
    for r in res["examples"]:
        for c in r.get("changes", []):
            a, b = c["from"], c["to"]
            assert a[0] == b[0] and a[-1] == b[-1] and damerau1(a, b)
    # per attacked example: the leave-one-out ranking and each word's candidates come in
    # one call each, so calls stay few while texts are many
    assert max(clf.sizes) > 10
    assert sum(clf.sizes) / len(clf.sizes) > 5


def test_word_attack_substitutes_synonyms(bundle, record_property):
    from mcutext.attack.run import run_attack
    res = run_attack(bundle, "word", runtime="tflm", n=40, budget=0.25, seed=0)
    record_property("successes", res["successes"])
    assert res["attack"] == "pwws"
    check_report(bundle, res, "tflm", budget=32)
    assert res["successes"] > 0      # measured over train seeds 1-6: 19, 20, 19, 18, 18, 21
    for r in res["examples"]:
        if r["status"] == "skipped":
            continue
        assert r["words_changed"] <= max(1, int(0.25 * r["words"]))
        for c in r["changes"]:
            assert c["to"] in perturb.synonyms(c["from"])
    assert set(res["transfer"]) == {"keras", "litert"}


def test_hotflip_white_box_and_transfer(bundle, record_property):
    from mcutext.attack.run import run_attack
    res = run_attack(bundle, "hotflip", runtime="keras", n=30, budget=2, seed=0)
    record_property("success_rate", res["success_rate"])
    record_property("transfer_tflm_rate", res["transfer"]["tflm"]["rate"])
    check_report(bundle, res, "keras")
    # measured over train seeds 1-6: success rate 0.78, 0.69, 0.86, 0.70, 0.79, 0.85;
    # transfer rate to tflm 1.0 each time; successes on tflm 17, 11, 19, 16, 19, 18
    assert res["success_rate"] > 0.3
    assert res["float_success_rate"] == res["success_rate"]
    for r in res["examples"]:
        for c in r.get("changes", []):
            assert damerau1(c["from"], c["to"]) or c["to"] in perturb.synonyms(c["from"])
    tr = res["transfer"]["tflm"]
    assert tr["eligible"] > 0 and tr["rate"] > 0.5
    # on an int8 runtime, success is judged by replaying the float model's texts there
    res8 = run_attack(bundle, "hotflip", runtime="tflm", n=30, budget=2, seed=0,
                      transfer=False)
    record_property("tflm_successes", res8["successes"])
    check_report(bundle, res8, "tflm")
    assert res8["successes"] > 0


class ProtocolStandIn:
    """A TCP server speaking the serial protocol (docs/protocol.md: ping, info, classify)
    with the TFLite Micro interpreter as its model, which the firmware matches byte for
    byte: the real Device client and the device runtime talk to it over socket://. (The real
    firmware under QEMU: test_char_attack_on_qemu_matches_tflite_micro.)"""

    def __init__(self, bundle, tokenizer_spec=None, line_max=1024):
        import socket
        import threading
        self.bundle, self.line_max = bundle, line_max
        self.spec = dict(tokenizer_spec or bundle.tokenizer.spec.to_dict())
        self.classified = 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self, line: bytes) -> list[bytes]:
        verb, _, arg = line.partition(b" ")
        if verb == b"ping":
            return [b"pong " + arg]
        if verb == b"info":
            t = self.spec
            return [b"protocol 1", b"model " + self.bundle.name.encode(),
                    *[f"label {i} {lab}".encode() for i, lab in enumerate(self.bundle.labels)],
                    (f"tokenizer version 1 buckets {t['buckets']} max-words {t['max_words']} "
                     f"features-per-word {4 if t['typo_features'] else 1} seed {t['seed']} "
                     f"max-word-bytes {t['max_word_bytes']}").encode(),
                    f"line-max {self.line_max}".encode()]
        if verb == b"classify":
            self.classified += 1
            b = self.bundle
            q = b.run_int8(b.tokenize([arg]), "tflm")["logits"][0]
            k = int(np.argmax(q))
            return [f"label {k} {b.labels[k]}".encode(),
                    b"scores " + " ".join(str(int(v)) for v in q).encode()]
        return []

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            buf = b""
            with conn:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            conn.sendall(b"".join(x + b"\r\n" for x in self._answer(line))
                                         + b"ok\r\n")

    def close(self):
        self.server.close()


def test_device_runtime_over_the_serial_protocol(bundle, tmp_path):
    from mcutext.attack.run import run_attack
    from bench.attack import compare_runs
    board = ProtocolStandIn(bundle)
    try:
        dev = run_attack(bundle, "deepwordbug", runtime="device", n=15, port=board.url,
                         out=tmp_path, transfer=False)
        ref = run_attack(bundle, "deepwordbug", runtime="tflm", n=15, transfer=False)
        cmp = compare_runs(dev, ref)
        assert cmp["identical"] == 15 and cmp["same_successes"], cmp["differ"]
        assert dev["successes"] > 0
        # one classify exchange per query, plus the verdicts (and the runtime's warm-up)
        assert board.classified == dev["runtime_rows"] + 1
        log = (tmp_path / "deepwordbug-device-serial.log").read_text()
        assert log.count(" > classify ") == board.classified
    finally:
        board.close()
    with pytest.raises(McutextError, match="needs --port"):
        run_attack(bundle, "typo", runtime="device", n=2)  # no port
    # a board running another model is refused, not attacked
    other = ProtocolStandIn(bundle, {**bundle.tokenizer.spec.to_dict(),
                                     "buckets": bundle.tokenizer.spec.buckets + 1})
    try:
        with pytest.raises(McutextError, match="does not run this bundle: buckets"):
            run_attack(bundle, "typo", runtime="device", n=2, port=other.url)
        assert other.classified == 0
    finally:
        other.close()


def test_bad_arguments_are_clear_errors(bundle):
    from mcutext.attack.run import run_attack
    with pytest.raises(McutextError, match="unknown attack 'textfooler'.*char.*pwws"):
        run_attack(bundle, "textfooler", n=2)
    with pytest.raises(McutextError, match="unknown runtime 'gpu'.*keras, litert, tflm, device"):
        run_attack(bundle, "typo", runtime="gpu", n=2)
    for b in (0, -1, 1.5, "two", float("inf"), float("nan"), True, None):
        with pytest.raises(McutextError, match="bad budget") as e:
            run_attack(bundle, "typo", n=2, budget=b)
        assert "whole number of words" in str(e.value) and e.value.hint
    assert run_attack(bundle, "typo", n=2, budget="1", transfer=False)["budget"] == 1
    for n in (0, -3, 2.5):
        with pytest.raises(McutextError, match="bad number of examples"):
            run_attack(bundle, "typo", n=n)
    with pytest.raises(McutextError, match="bad seed"):
        run_attack(bundle, "typo", n=2, seed=-1)
    with pytest.raises(McutextError, match="not a bundle"):
        run_attack("/nonexistent/bundle", "typo", n=2)


def test_cli(sst2_small_bundle, tmp_path, capsys, monkeypatch):
    from mcutext.cli import main
    monkeypatch.delenv("MCUTEXT_PORT", raising=False)
    b = str(sst2_small_bundle)
    assert main(["attack", b, "--attack", "typo", "--limit", "10", "--budget", "1", "--json",
                 "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 10 and summary["attack"] == "typo" and summary["budget"] == 1
    assert (tmp_path / "typo-tflm.jsonl").is_file() and (tmp_path / "typo-tflm.json").is_file()
    assert main(["attack", b, "--attack", "char", "--n", "5", "--runtime", "keras"]) == 0
    out = capsys.readouterr().out
    assert "char on keras" in out and "accuracy under attack" in out
    # bad input: exit 2 with a one-line reason
    for args, msg in ((["--budget", "2.5"], "--budget"), (["--budget", "0"], "--budget"),
                      (["--runtime", "gpu"], "'gpu' is not one of"),
                      (["--attack", "textfooler"], "'textfooler' is not one of"),
                      (["--limit", "0"], "--limit")):
        argv = ["attack", b, "--attack", "char", *args]
        if "--attack" in args:
            argv = ["attack", b, *args]
        assert main(argv) == 2, args
        assert msg in capsys.readouterr().err, args
    assert main(["attack", b, "--attack", "char", "--runtime", "device"]) == 2
    err = capsys.readouterr().err
    assert "error: the device runtime needs --port" in err and "hint:" in err


def test_robustness_bench_writes_tables(sst2_small_bundle, tmp_path):
    from bench.attack import robustness_bench
    res = robustness_bench({"sst2": sst2_small_bundle}, tmp_path, n=8,
                           runtimes=("tflm", "litert"), attacks=("deepwordbug",), sweep=False,
                           device=False, certify_edits=(1,))
    rows = json.loads((tmp_path / "robustness.json").read_text())
    assert [(r["attack"], r["runtime"]) for r in rows] == [
        ("deepwordbug", "tflm"), ("deepwordbug", "litert")]
    assert rows == res["rows"] and rows[0]["n"] == 8
    md = (tmp_path / "robustness.md").read_text()
    assert "| sst2 | deepwordbug | tflm | 2 | 8 |" in md
    assert (tmp_path / "robustness_transfer.md").is_file()
    assert "Not measured" in (tmp_path / "robustness_device.md").read_text()
    assert (tmp_path / "attacks" / "sst2" / "deepwordbug-tflm.jsonl").is_file()
    cert = json.loads((tmp_path / "robustness_certified.json").read_text())
    assert cert == res["certified"] and [(c["edits"], c["n"]) for c in cert] == [(1, 8)]
    saved = json.loads((tmp_path / "certify" / "sst2-k1.json").read_text())
    assert saved["certified"] == cert[0]["certified"] and len(saved["sentences"]) == 8


# --- the real firmware ---------------------------------------------------------------------
@pytest.mark.qemu
def test_char_attack_on_qemu_matches_tflite_micro(bundle, sst2_small_bundle, tmp_path):
    """DeepWordBug through the firmware over serial (QEMU) finds exactly what it
    finds on TFLite Micro: same statuses, adversarial texts, queries, int8 scores."""
    from mcutext.attack.run import run_attack
    from bench.attack import booted_device, compare_runs
    with booted_device(sst2_small_bundle, out_dir=tmp_path / "fw") as (url, report):
        dev = run_attack(bundle, "deepwordbug", runtime="device", port=url, n=10, seed=0,
                         out=tmp_path, transfer=False)
    ref = run_attack(bundle, "deepwordbug", runtime="tflm", n=10, seed=0, transfer=False)
    check_report(bundle, dev, "device")
    cmp = compare_runs(dev, ref)
    assert cmp["identical"] == cmp["n"] == 10, cmp["differ"]
    assert cmp["same_successes"] and dev["successes"] > 0
    assert (tmp_path / "deepwordbug-device-serial.log").stat().st_size > 0
