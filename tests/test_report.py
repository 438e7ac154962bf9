"""`mcutext report`: the page's figures are the commands' figures, the page opens offline in
a real browser (headless Chromium) without a console message, every section is there, and a
150-class confusion matrix stays readable (docs/report.md).

The report of the suite's small sst2 bundle is made once (module fixture): `build --json`,
`evaluate --json` and `attack --json` run first through the CLI, then `report` with the
same board, evaluation limit and attack sample (it reuses the firmware `build` left, as
`mcutext run` does).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from mcutext.cli import main
from test_broken_files import one_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
BOARD = "netduinoplus2"
EVAL_LIMIT = 300
ATTACK_N = 10
BUDGETS = (1, 2)
SECTIONS = ("accuracy", "explanations", "boards", "robustness", "provenance")
DATA_BLOCK = re.compile(r'<script type="application/json" id="mcutext-report-data">(.*?)'
                        r"</script>", re.S)


def cli_json(*args):
    """Runs the CLI (outside a test function, so without capsys) and parses its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    assert code == 0, out.getvalue()[-2000:]
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def made(sst2_small_bundle, tmp_path_factory) -> dict:
    bundle = tmp_path_factory.mktemp("report") / "sst2" / "bundle"
    shutil.copytree(sst2_small_bundle, bundle)   # its builds and report go beside it
    res = {"bundle": bundle,
           "build": cli_json("build", bundle, "--board", BOARD, "--json"),
           "evaluate": cli_json("evaluate", bundle, "--limit", EVAL_LIMIT, "--json"),
           "attack": cli_json("attack", bundle, "--attack", "char", "--budget", BUDGETS[-1],
                              "--limit", ATTACK_N, "--json")}
    res["data"] = cli_json("report", bundle, "--board", BOARD, "--attack", "char",
                           "--budgets", ",".join(map(str, BUDGETS)), "--attack-limit",
                           ATTACK_N, "--limit", EVAL_LIMIT, "--examples", 6, "--json")
    res["page"] = bundle.parent / "report.html"
    res["html"] = res["page"].read_text(encoding="utf-8")
    return res


class _Nums(HTMLParser):
    """Every <span data-key=K data-value=V> of a page: [(K, V)]."""

    def __init__(self):
        super().__init__()
        self.nums: list[tuple[str, object]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self.nums.append((a["data-key"], json.loads(a["data-value"])))


def _at(data, key: str):
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


@pytest.mark.qemu
def test_the_page_shows_the_figures_of_evaluate_build_and_attack(made):
    data = json.loads(DATA_BLOCK.search(made["html"]).group(1))
    assert data == json.loads(json.dumps(made["data"]))   # the page's block = --json

    ev, acc = made["evaluate"], data["accuracy"]
    for key in ("n", "accuracy", "macro_f1", "per_class", "float_accuracy",
                "agreement_with_float"):
        assert acc[key] == ev[key], key
    m = np.array(acc["confusion"]["matrix"])
    assert m.sum() == ev["n"] and np.trace(m) == round(ev["accuracy"] * ev["n"])

    board = data["boards"][0]
    for key, value in board["build"].items():
        assert value == made["build"][key], key
    mem = board["memory"]
    assert sum(p["bytes"] for p in mem["flash"]) == made["build"]["flash_bytes"]
    assert sum(p["bytes"] for p in mem["ram"]) == made["build"]["ram_bytes"]
    dev = board["device"]
    assert dev["unit"] == "instructions" and dev["total"] == dev["tokenizer"] + dev["model"]
    assert [o["op"] for o in dev["ops"]] == made["build"]["ops"]
    assert all(o["instructions"] > 0 for o in dev["ops"])

    rob = data["robustness"]
    assert [r["budget"] for r in rob["budgets"]] == list(BUDGETS)
    at = made["attack"]
    same = rob["budgets"][-1]
    for key in ("n", "clean_accuracy", "accuracy_under_attack", "success_rate", "successes",
                "attacked", "mean_words_changed", "mean_share_words_changed", "mean_queries",
                "budget", "seed"):
        assert same[key] == at[key], key
    assert rob["certified"][0]["edits"] == 1 and rob["certified"][0]["n"] == ATTACK_N

    # every figure shown in the text is the data block's, at the key it names
    nums = _Nums()
    nums.feed(made["html"])
    assert len(nums.nums) > 50
    for key, value in nums.nums:
        assert _at(data, key) == value, key


@pytest.mark.qemu
def test_the_page_opens_offline_in_chromium_without_console_messages(made):
    from mcutext.studies.browser import open_page
    assert made["page"].stat().st_size < 2 * 1024 * 1024
    # no address outside the page: the Content Security Policy would block (and log) it
    assert not re.search(r'(src|href)="(?!data:|#)', made["html"])
    shot = ROOT / "build" / "test-report" / "report-sst2.png"
    shot.unlink(missing_ok=True)
    page = open_page(made["page"], screenshot=shot)
    assert page.console == []
    root = re.search(r"<html[^>]*>", page.dom).group(0)
    assert 'data-ready="1"' in root and "data-errors" not in root
    for s in SECTIONS:
        assert f'<section id="{s}" data-section="{s}">' in page.dom, s
    dom = page.dom
    assert dom.count('<img class="chart') >= 5   # confusion, per class, memory, ops, attack
    assert dom.count('<span class="w"') > 20 and 'class="wrong"' in dom
    assert "<ins>" in dom or "<del>" in dom       # edited characters marked
    assert made["data"]["provenance"]["fingerprint"]["sha256"] in dom
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_150_class_confusion_matrix_lists_the_most_confused_pairs():
    """clinc150-size: the heat map drops the unreadable tick labels (class numbers, with the
    list of names below it) and the 20 most-confused pairs are listed beside it."""
    from mcutext.studies.report import MOST_CONFUSED, confusion, most_confused
    from mcutext.studies.report_html import accuracy_section
    rng = np.random.default_rng(0)
    labels = [f"intent_{k:03d}" for k in range(150)]
    gold = [labels[k] for k in rng.integers(0, 150, 3000)]
    pred = [labels.index(g) if rng.random() < 0.8 else int(rng.integers(0, 150)) for g in gold]
    pred[:30] = [7] * 30                 # one pair confused far more than any other
    gold[:30] = [labels[3]] * 30
    m = confusion(labels, gold, pred)
    pairs = most_confused(labels, m)
    assert len(pairs) == MOST_CONFUSED
    assert (pairs[0]["true"], pairs[0]["pred"], pairs[0]["count"]) == ("intent_003",
                                                                       "intent_007", 30)
    assert [p["count"] for p in pairs] == sorted((p["count"] for p in pairs), reverse=True)
    assert all(p["true"] != p["pred"] for p in pairs)
    per_class = {lab: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 20}
                 for lab in labels}
    data = {"bundle": {"path": "b"}, "options": {"limit": None},
            "accuracy": {"n": 3000, "accuracy": 0.8, "macro_f1": 0.8, "per_class": per_class,
                         "split": "test", "source": "test.tsv",
                         "confusion": {"labels": labels, "matrix": m.tolist()},
                         "most_confused": pairs}}
    html = accuracy_section(data)
    side = html[html.index("Most confused pairs"):]
    assert side.index("intent_003") < side.index("intent_007") < side.index("</table>")
    assert 'class="classes"' in html and html.count("<li>intent_") == 150
    assert len(html) < 400_000


def test_out_refuses_a_file_that_is_not_a_report(capsys, sst2_small_bundle, tmp_path):
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    code, _, err = run_cli(capsys, "report", sst2_small_bundle, "--out", mine)
    assert code == 2 and "not a report page mcutext wrote" in one_error(err)
    assert mine.read_text() == "<p>my notes</p>"
    from mcutext.common.outputs import check_out
    from mcutext.studies.report_html import render
    earlier = tmp_path / "earlier.html"
    earlier.write_text(render(_minimal_data()))
    check_out(earlier, "report")      # an earlier report: replaced without --force
    code, _, err = run_cli(capsys, "report", sst2_small_bundle, "--board", "no-such-board",
                           "--out", earlier)
    assert code == 2 and "no-such-board" in one_error(err)


def _minimal_data() -> dict:
    return {"format": 1, "generator": "mcutext report", "mcutext": "0", "created": "now",
            "seconds": 0, "bundle": {"path": "b", "name": "b", "dataset": "d", "labels": ["x"]},
            "options": {"limit": None},
            "accuracy": {"n": 1, "accuracy": 1.0, "macro_f1": 1.0, "split": "test",
                         "source": "t", "per_class": {"x": {"precision": 1.0, "recall": 1.0,
                                                            "f1": 1.0, "support": 1}},
                         "confusion": {"labels": ["x"], "matrix": [[1]]},
                         "most_confused": []},
            "explanations": {"sentences": []}, "boards": [], "provenance": {"name": "b"}}


def test_evaluation_in_pieces_equals_one_call(sst2_small_bundle, monkeypatch):
    """The report's (and `mcutext evaluate`'s) evaluation classifies a long split in pieces
    under a progress bar: the same probabilities as one call, for the float and int8 model."""
    from mcutext.int8 import evaluate
    from mcutext.int8.bundle import load_bundle
    from mcutext.text.datasets import load_split
    b = load_bundle(sst2_small_bundle)
    texts = load_split("sst2", "test").texts[:20]
    monkeypatch.setattr(evaluate, "CHUNK", 7)
    for runtime in ("keras", "tflm"):
        assert np.array_equal(evaluate.predict_proba(b, texts, runtime),
                              b.predict_proba(texts, runtime)), runtime
