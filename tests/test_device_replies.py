"""The host against a device that sends malformed replies (a fake device on a local socket,
mcutext.reliability.fakedevice): a missing field, a non-number, a wrong count, an overlong line, a
connection closed mid-reply. Each must end in one line, `error: ... the device sent ...
(expected ...)`, exit code 2, never a traceback and never a hang."""

from __future__ import annotations

import pytest

from mcutext.cli import main
from mcutext.reliability.fakedevice import CLOSE, FakeDevice, well_formed_replies
from test_broken_files import one_error  # noqa: E402  (one shared definition)

LABELS = ["negative", "positive"]
TOKENIZER = {"buckets": 10240, "max_words": 32, "typo_features": True, "seed": 0,
             "max_word_bytes": 24}


def _lines(*ls: str) -> bytes:
    return b"".join(ln.encode() + b"\r\n" for ln in ls)


OK = b"ok\r\n"
# (command answered badly, its reply, the CLI arguments (after --port URL is added), the
# words the one error line must hold)
CASES = {
    "info: label line without a name": (
        "info", _lines("protocol 1", "label 0") + OK, ["info"], "label <index> <name>"),
    "info: flash without budget": (
        "info", _lines("protocol 1", "flash 12") + OK, ["info"], "flash"),
    "info: tokenizer value not a number": (
        "info", _lines("protocol 1", "tokenizer buckets many") + OK, ["info"], "tokenizer"),
    "info: line-max not a number": (
        "info", _lines("protocol 1", "line-max lots") + OK, ["classify", "x"], "line-max"),
    "info: labels disagree with classes": (
        "info", _lines("protocol 1", "classes 3", "label 0 a", "label 1 b") + OK,
        ["info"], "3 label lines"),
    "classify: label index not a number": (
        "classify", _lines("label x negative", "scores 1 2", "logits 0.1 0.2") + OK,
        ["classify", "x"], "label <index> <name>"),
    "classify: a score is not a number": (
        "classify", _lines("label 0 negative", "scores 1 z", "logits 0.1 0.2") + OK,
        ["classify", "x"], "scores"),
    "classify: three scores for two labels": (
        "classify", _lines("label 0 negative", "scores 1 2 3", "logits 0.1 0.2 0.3") + OK,
        ["classify", "x"], "2 int8 scores"),
    "explain: no logits": (
        "explain", _lines("label 0 negative", "scores 1 2") + OK,
        ["explain", "--port", None, "x"], "logits"),
    "classify: label index out of range": (
        "classify", _lines("label 7 negative", "scores 1 2", "logits 0.1 0.2") + OK,
        ["classify", "x"], "label <index> <name>"),
    "classify: cost line cut short": (
        "classify", _lines("label 0 negative", "scores 1 2", "logits 0.1 0.2", "cost") + OK,
        ["classify", "x"], "cost"),
    "classify: an endless line": (
        "classify", b"label 0 negative\r\nscores " + b"1 " * 200_000, ["classify", "x"],
        "bytes"),
    "classify: closed mid-reply": (
        "classify", b"label 0 negative\r\nsco" + CLOSE, ["classify", "x"],
        "lost the connection"),
    "explain: word line without its word": (
        "explain", _lines("label 0 negative", "scores 1 2", "logits 0.1 0.2", "word 0 1") + OK,
        ["explain", "--port", None, "x"], "word <index>"),
    "head state: nothing but updates": (
        "head state", _lines("updates 1") + OK, ["head", "state"], "head state"),
    "head state: config value not a number": (
        "head state", _lines("updates 0", "personalized 0", "rows 4", "new-labels 0 of 2",
                             "config lr fast momentum 0 l2 0") + OK, ["head", "state"],
        "config"),
    "head export: data not hex": (
        "head export", _lines("blob 10", "data 0 zz") + OK, ["head", "export", "OUT"],
        "data <offset> <hex>"),
    "head export: blob size not a number": (
        "head export", _lines("blob big") + OK, ["head", "export", "OUT"], "blob"),
    "head save: seq not a number": (
        "head save", _lines("saved seq x bytes 3") + OK, ["head", "save"], "saved"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_reply_is_one_error_line(case, capsys, tmp_path, monkeypatch):
    cmd, reply, args, words = CASES[case]
    replies = well_formed_replies(LABELS, TOKENIZER)
    replies[cmd] = reply
    monkeypatch.chdir(tmp_path)
    with FakeDevice(replies) as fake:
        argv = [fake.url if a is None else str(tmp_path / "head.bin") if a == "OUT" else a
                for a in args]
        if None not in args:
            argv += ["--port", fake.url]
        if argv[0] in ("classify", "head"):
            argv += ["--timeout", "2"]
        code = main(argv)
    err = capsys.readouterr().err
    line = one_error(err)
    assert code == 2, err
    assert words in line, line
    if "lost the connection" not in words:
        assert "the device sent" in line and "(expected" in line, line
    assert not (tmp_path / "head.bin").exists()


# --- labels: the protocol counts bytes --------------------------------------------------------

def test_a_multibyte_label_counts_its_bytes_against_line_max():
    """`learn <crc> LABEL<TAB>text`: the room left for the text is line-max minus the bytes of
    the label (20 characters of 'é' are 40 bytes), so the line sent fits the device's line."""
    from mcutext.device.client import Device
    label = "\xe9" * 20
    with FakeDevice(well_formed_replies(LABELS + [label], TOKENIZER)) as fake:
        with Device(fake.url, timeout=2) as dev:
            dev.learn(label, "word " * 400)
            dev.learn(label, "ab " * 326)      # 978 bytes: fits 1024 - 36 - 20, not - 40
        sent = [ln for ln in fake.requests if ln.startswith(b"learn ")]
    assert len(sent) == 2
    assert all(len(ln) <= 1024 for ln in sent), [len(ln) for ln in sent]


@pytest.mark.parametrize("command", ["teach", "personalize"])
def test_a_label_the_device_cannot_add_is_refused_before_anything_is_sent(
        command, capsys, tmp_path, monkeypatch):
    """The device adds labels of 1 to 23 bytes of printable ASCII: 'café' (not ASCII) and
    twelve Cyrillic letters (24 bytes) are refused on the host, naming the label, before a
    single `label add` or example is sent."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "mine.tsv"
    data.write_text("label\ttext\ncaf\xe9\tan espresso please\nnegative\tawful\n"
                    + "\u0436" * 12 + "\tlong name\n", encoding="utf-8")
    with FakeDevice(well_formed_replies(LABELS, TOKENIZER)) as fake:
        args = [command, str(data), "--port", fake.url, "--timeout", "2"]
        code = main(args + (["--new-labels", "--journal", str(tmp_path / "j.jsonl")]
                            if command == "personalize" else []))
        sent = [ln for ln in fake.requests
                if ln.split(b" ")[0] in (b"label", b"learn", b"keep", b"head")
                and not ln.startswith((b"head state", b"head export", b"head import"))]
    line = one_error(capsys.readouterr().err)
    assert code == 2
    assert "cannot be added on the device" in line and "bytes" in line, line
    assert sent == [], sent
