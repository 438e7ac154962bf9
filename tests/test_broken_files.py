"""Broken files through the real CLI: a truncated or edited .tflite, a manifest that disagrees
with its model or with itself, recipes with unknown keys or impossible values, datasets with
broken lines and damaged head blobs. Each must give one `error:` line naming the file and
what is wrong, exit code 2, and leave the output folder as it was (absent, or unchanged).
docs/reliability.md, "Faults and bad inputs", lists these cases.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mcutext.cli import main

# No device listens here: a command that reaches for the port fails with "cannot open",
# so a file error proves that the file was checked first.
DEAD_PORT = "socket://127.0.0.1:9"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def tree(path: Path) -> dict[str, bytes]:
    """Every file under path with its content (an absent folder is {})."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def one_error(err: str) -> str:
    """The `error:` line; at most a `hint:` line besides it."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, err
    assert all(ln.startswith(("error: ", "hint: ")) for ln in lines), err
    return errors[0]


@pytest.fixture
def bundle(sst2_small_bundle, tmp_path) -> Path:
    b = tmp_path / "bundle"
    shutil.copytree(sst2_small_bundle, b)
    return b


def _edit_manifest(b: Path, fn) -> None:
    p = b / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m))


def _truncate(b: Path) -> None:
    p = b / "model_int8.tflite"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_byte(b: Path) -> None:
    p = b / "model_int8.tflite"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01     # same size: one weight changed
    p.write_bytes(bytes(data))


def _add_label(m: dict) -> None:      # consistent in the manifest, not with the model
    m["labels"].append("neutral")
    m["head"]["weights"] = [row + [0.0] for row in m["head"]["weights"]]
    m["head"]["bias"].append(0.0)
    m["head"]["classes"] = 3
    m["recipe"]["tokenizer"] = m["tokenizer"]


def _requantize_logits(m: dict) -> None:   # consistent in the manifest, not with the model
    for q in (m["int8"]["outputs"]["logits"], m["head"]["output_quantization"]):
        q["zero_point"] = 3


def _set(path: str, value):
    def fn(m):
        *keys, last = path.split(".")
        d = m
        for k in keys:
            d = d[k]
        d[last] = value
    return fn


BUNDLE_CASES = {
    "truncated tflite": (_truncate, "model_int8.tflite", r"bytes, the manifest says \d+ "
                                                         r"\(truncated or replaced\)"),
    "edited tflite": (_flip_byte, "model_int8.tflite", "the file was changed after the bundle "
                                                       "was written"),
    "label count": (lambda b: _edit_manifest(b, _set("labels", ["negative", "positive", "x"])),
                    "manifest.json", "3 labels, but the head has 2 outputs"),
    "label count vs model": (lambda b: _edit_manifest(b, _add_label), "model_int8.tflite",
                             "output 'logits' has 2 values, the manifest says 3"),
    "max length": (lambda b: _edit_manifest(b, _set("max_words", 16)), "manifest.json",
                   "max_words 16 disagrees with tokenizer.max_words 32"),
    "seq_len": (lambda b: _edit_manifest(b, _set("seq_len", 64)), "manifest.json",
                "seq_len 64 disagrees with the tokenizer spec"),
    "tokenizer spec": (lambda b: _edit_manifest(b, _set("tokenizer.buckets", 4096)),
                       "manifest.json", "tokenizer spec disagrees with the recipe the model "
                                        "was trained with .buckets 4096, trained with 10240"),
    "tokenizer key": (lambda b: _edit_manifest(b, _set("tokenizer.lowercase", True)),
                      "manifest.json", "unknown tokenizer keys: lowercase"),
    "manifest not JSON": (lambda b: (b / "manifest.json").write_text('{"name": "sst2", '),
                          "manifest.json", "not valid JSON"),
    # quantization the host dequantizes with and the firmware is built with, not the model's
    "logits quantization": (lambda b: _edit_manifest(b, _requantize_logits), "model_int8.tflite",
                            "output 'logits' is quantized with scale .*; manifest.json's "
                            "int8.outputs.logits says"),
    "head quantization": (lambda b: _edit_manifest(b, _set("head.input_quantization.zero_point",
                                                           5)),
                          "manifest.json", "head.input_quantization .* disagrees with "
                                           "int8.outputs.features"),
    "head classes": (lambda b: _edit_manifest(b, _set("head.classes", 3)), "manifest.json",
                     "head.classes 3 disagrees with the 2 labels"),
}


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_broken_bundle_build_writes_nothing(case, bundle, tmp_path, capsys):
    """`mcutext build` of a broken bundle: one error naming the file, exit 2, and the
    firmware folder of an earlier build untouched."""
    edit, fname, msg = BUNDLE_CASES[case]
    edit(bundle)
    out = tmp_path / "fw"
    (out / "gen").mkdir(parents=True)
    (out / "gen" / "model.c").write_text("/* an earlier build */\n")
    before = tree(out)
    code, _, err = run_cli(capsys, "build", bundle, "--board", "netduinoplus2", "--out", out)
    assert code == 2, err
    line = one_error(err)
    assert f"{bundle / fname}" in line, line
    assert re.search(msg, line), line
    assert tree(out) == before


@pytest.mark.parametrize("case", ["truncated tflite", "edited tflite", "label count",
                                  "tokenizer spec"])
def test_broken_bundle_other_commands(case, bundle, capsys):
    edit, fname, _msg = BUNDLE_CASES[case]
    edit(bundle)
    for args in (["info", bundle], ["evaluate", bundle, "--limit", "5"],
                 ["attack", bundle, "--attack", "char", "--n", "2"]):
        code, _, err = run_cli(capsys, *args)
        assert code == 2, (args, err)
        assert str(bundle / fname) in one_error(err), (args, err)


# Fields the commands read, given the wrong type by a hand edit: a traceback (TypeError,
# KeyError, AttributeError) in info / evaluate / explain before
FIELD_CASES = {
    "int8.output_order.logits": [], "int8.outputs.logits": 0.5, "int8.outputs": None,
    "int8.outputs.logits.scale": "x", "int8.outputs.attention.zero_point": 300,
    "seq_len": "128", "eval": "x", "eval.exclude_labels": 3, "metrics": [],
    "metrics.test.tflm": {"n": 3}, "sizes": {}, "int8.ops": None, "recipe": 7,
    "recipe.model": "cnn", "dataset": None, "int8.input": "prado", "head.max_new_labels": -1,
    "training.limit": "2000",
}


@pytest.mark.parametrize("field", list(FIELD_CASES))
def test_a_field_of_the_wrong_type_is_one_error(field, bundle, capsys):
    _edit_manifest(bundle, _set(field, FIELD_CASES[field]))
    for args in (["info", bundle], ["evaluate", bundle, "--limit", "3", "--runtime", "tflm"],
                 ["explain", bundle, "a fine film", "--runtime", "tflm"]):
        code, _, err = run_cli(capsys, *args)
        assert code == 2, (args, err)
        line = one_error(err)
        assert str(bundle / "manifest.json") in line and f"'{field.split('.')[0]}" in line, line


def test_a_head_without_reserved_rows_is_one_error(bundle, tmp_path, capsys):
    """head.max_new_labels 0 (the recipe allows it): personalize.c did not compile
    (zero-length arrays) and the build ended in a screen of compiler errors."""
    _edit_manifest(bundle, _set("head.max_new_labels", 0))
    code, _, err = run_cli(capsys, "build", bundle, "--board", "netduinoplus2",
                           "--out", tmp_path / "fw")
    assert code == 2, err
    line = one_error(err)
    assert f"{bundle / 'manifest.json'}: head max_new_labels 0: the personalizable firmware " \
           "needs at least one reserved row" in line, line
    assert "--no-personalize" in err


def test_label_count_against_the_keras_model(bundle, capsys):
    """Three labels in a consistent manifest, two logits in model.keras: the float runtime
    answered with two classes before (wrong, silently)."""
    _edit_manifest(bundle, _add_label)
    for args in (["explain", bundle, "a fine film", "--runtime", "keras"],
                 ["evaluate", bundle, "--limit", "3", "--runtime", "keras"]):
        code, _, err = run_cli(capsys, *args)
        assert code == 2, (args, err)
        line = one_error(err)
        assert str(bundle / "model.keras") in line and "gives 2 logits" in line, line


def test_intact_bundle_copy_still_works(bundle, capsys):
    """The checks pass on a real bundle (the copy the cases above break)."""
    code, out, err = run_cli(capsys, "info", bundle)
    assert code == 0, err
    m = json.loads((bundle / "manifest.json").read_text())
    assert len(m["int8"]["sha256"]) == 64


# --- recipes --------------------------------------------------------------------------------

RECIPE_CASES = [
    ("[train]\nepochs = -3\n", "'train.epochs' = -3 is out of range [1, 1000]"),
    ("[tokenizer]\nbuckets = 0\n", "tokenizer.buckets must be in [2, 1048576], got 0"),
    ("[model]\nconv_widht = 3\n", "unknown key 'model.conv_widht'"),
    ("colour = 'red'\n", r"unknown key\(s\) colour"),
    ("[train]\nepochs = true\n", "'train.epochs' must be int, got bool"),
    ("[tokenizer]\nmax_words = '32'\n", "'tokenizer.max_words' must be int, got str"),
    ("[train]\nlearning_rate = nan\n", "'train.learning_rate' = nan is out of range"),
    ("[train]\ndrop_labels = [1, 2]\n", "'train.drop_labels' must be a list of str"),
    ("[model]\ndropout = 1.5\n", r"'model.dropout' = 1.5 is out of range \[0.0, 0.9\]"),
    # a label the data does not have: trained silently before (nothing was dropped)
    ("[train]\ndrop_labels = ['positive', 'neutral']\n",
     "train.drop_labels names 'neutral', which"),
]


@pytest.mark.parametrize("body,msg", RECIPE_CASES)
def test_broken_recipe(body, msg, tmp_path, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_text('name = "bad"\ndataset = "sst2"\n' + body)
    out = tmp_path / "out" / "bundle"
    code, _, err = run_cli(capsys, "train", recipe, "--out", out)
    assert code == 2, err
    line = one_error(err)
    assert str(recipe) in line and msg.replace("\\", "") in line, line
    assert not (tmp_path / "out").exists()


# --- datasets -------------------------------------------------------------------------------

DATA_CASES = [
    ("mine.tsv", b"label\ttext\npositive\tfine\nnegative\ttoo\tmany\n",
     "mine.tsv:3: expected 2 tab-separated columns, got 3"),
    ("mine.tsv", b"label\ttext\npositive\tfine\n\tno label\n", "mine.tsv:3: missing label"),
    ("mine.tsv", b"label\ttext\npositive\tfine\nnegative\tbad \xff byte\n",
     "mine.tsv:3: invalid UTF-8 (byte 0xff)"),
    ("mine.jsonl", b'{"label": "positive", "text": "fine"}\n{"label": "negative", "te\n',
     "mine.jsonl:2: invalid JSON"),
    ("mine.csv", b'label,text\npositive,fine\nnegative,"open quote\n',
     "mine.csv:3: unexpected end of data"),
    ("mine.tsv", b"text\tlabel\nfine\tpositive\n", "mine.tsv:1: header must be"),
    # JSON values that are not strings were turned into strings ("['a', 'b']", "7") before
    ("mine.jsonl", b'{"label": "positive", "text": "fine"}\n{"label": ["a", "b"], "text": "x"}\n',
     "mine.jsonl:2: 'label' must be a string, got a list"),
    ("mine.jsonl", b'{"label": 7, "text": "fine"}\n', "mine.jsonl:1: 'label' must be a string, "
                                                     "got a number 7"),
    ("mine.jsonl", b'{"label": "positive", "text": {"en": "fine"}}\n',
     "mine.jsonl:1: 'text' must be a string, got an object"),
    ("mine.jsonl", b'{"label": "positive", "text": 3.5}\n',
     "mine.jsonl:1: 'text' must be a string, got a number 3.5"),
]


@pytest.mark.parametrize("name,content,msg", DATA_CASES)
def test_broken_dataset_before_the_device(name, content, msg, tmp_path, capsys):
    """personalize and classify --file read the whole file before opening the port."""
    data = tmp_path / name
    data.write_bytes(content)
    for args in (["personalize", data, "--port", DEAD_PORT],
                 ["classify", "--file", data, "--port", DEAD_PORT]):
        code, _, err = run_cli(capsys, *args)
        assert code == 2, err
        line = one_error(err)
        assert msg in line and "cannot open" not in line, line


def test_a_file_error_hint_speaks_of_the_path(tmp_path, capsys):
    """--log naming a folder: an OS error about a file; its hint speaks of the path, not of
    cables (only a port's error does)."""
    (tmp_path / "logdir").mkdir()
    code, _, err = run_cli(capsys, "classify", "x", "--port", DEAD_PORT,
                           "--log", tmp_path / "logdir")
    assert code == 2, err
    line = one_error(err)
    assert "logdir" in line and "cable" not in err and "hint: check the path" in err, err
    code, _, err = run_cli(capsys, "info", "--port", DEAD_PORT)
    assert code == 2 and "cable" in err, err      # the port's error keeps its hint


def test_broken_training_set_writes_no_bundle(tmp_path, capsys):
    ds = tmp_path / "mydata"
    ds.mkdir()
    rows = [f"{'positive' if i % 2 else 'negative'}\tsentence number {i}" for i in range(40)]
    rows[17] = "positive"                      # line 19: the text column is missing
    (ds / "train.tsv").write_text("label\ttext\n" + "\n".join(rows) + "\n")
    recipe = tmp_path / "mine.toml"
    recipe.write_text(f'name = "mine"\ndataset = "{ds}"\n')
    out = tmp_path / "out" / "bundle"
    code, _, err = run_cli(capsys, "train", recipe, "--out", out)
    assert code == 2, err
    assert f"{ds / 'train.tsv'}:19: expected 2 tab-separated columns, got 1" in one_error(err)
    assert not (tmp_path / "out").exists()


# --- head blobs (host-side checks of `mcutext head import`) ----------------------------------

def _blob(bundle_path: Path) -> bytes:
    """A real head blob: the simulator of the bundle's head after a few SGD steps and a new
    label (the same format the firmware exports)."""
    from mcutext.int8.bundle import load_bundle
    from mcutext.device.personalize import HeadSimulator
    b = load_bundle(bundle_path)
    sim = HeadSimulator.from_bundle(b)
    ids = b.tokenize(["a gripping, funny film", "dull and slow", "hello there friend"])
    feats = b.run_int8(ids, "tflm")["features"]
    sim.add_label("greeting")
    for f, y in zip(feats, (1, 0, 2)):
        sim.step(sim.dequantize(f), y)
    return sim.blob()


def _recrc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _nan_weight(blob: bytes) -> bytes:
    from mcutext.device.personalize import BLOB_HEADER
    rows = struct.unpack_from("<H", blob, 12)[0]
    pos = BLOB_HEADER.size + ((rows + 3) & ~3) + 4 * 5
    return _recrc(blob[:pos] + struct.pack("<f", float("nan")) + blob[pos + 4:])


def _label_count(blob: bytes) -> bytes:
    """Factory classes 2 -> 3 in the header, CRC made valid: the sizes no longer add up."""
    return _recrc(blob[:10] + struct.pack("<H", 3) + blob[12:])


def _bad_name(blob: bytes) -> bytes:
    from mcutext.device.personalize import NAME_BYTES
    pos = len(blob) - 4 - 4 * NAME_BYTES          # the first added row's name
    return _recrc(blob[:pos] + b"greet ing".ljust(NAME_BYTES, b"\0") + blob[pos + NAME_BYTES:])


BLOB_CASES = {
    "truncated": (lambda b: b[:-100], r"bytes, its header says \d+ \(truncated or padded\)"),
    "bad CRC": (lambda b: b[:40] + bytes([b[40] ^ 0x10]) + b[41:],
                r"CRC-32 mismatch \(the file is damaged\)"),
    "NaN weight": (_nan_weight, r"weight 5 is nan \(every weight and bias must be finite\)"),
    "label count": (_label_count, r"inconsistent header \(features 32, classes 3, rows 6\)"),
    "label name": (_bad_name, "invalid added label name b'greet ing'"),
    "not a blob": (lambda b: b"PK\x03\x04" + b[4:], "not a version-1 head blob"),
}


@pytest.mark.parametrize("case", list(BLOB_CASES))
def test_broken_head_blob_is_refused_on_the_host(case, sst2_small_bundle, tmp_path, capsys):
    from mcutext.int8.bundle import load_bundle
    from mcutext.cli.personalize import check_head_blob
    from mcutext.device.personalize import HeadSimulator
    blob = _blob(sst2_small_bundle)
    # the intact blob passes the host check and loads in the simulator
    assert check_head_blob(blob, Path("x"), feature_dim=32, classes=2, rows=6)["updates"] == 3
    HeadSimulator.from_bundle(load_bundle(sst2_small_bundle)).load_blob(blob)
    edit, msg = BLOB_CASES[case]
    f = tmp_path / "head.bin"
    f.write_bytes(edit(blob))
    code, _, err = run_cli(capsys, "head", "import", f, "--port", DEAD_PORT)
    assert code == 2, err
    line = one_error(err)
    assert line.startswith(f"error: {f}: ") and re.search(msg, line), line
    assert "cannot open" not in line
    assert "nothing was sent to the device" in line


def test_head_blob_of_another_model_shape(sst2_small_bundle):
    """Dimensions are checked against the device's model (a real device in test_faults)."""
    from mcutext.cli.personalize import check_head_blob
    from mcutext.common.errors import McutextError
    blob = _blob(sst2_small_bundle)
    with pytest.raises(McutextError, match="2 factory labels, the device's model has 3"):
        check_head_blob(blob, Path("h.bin"), feature_dim=32, classes=3, rows=7)
    with pytest.raises(McutextError, match="32 features per example, the device's model has 64"):
        check_head_blob(blob, Path("h.bin"), feature_dim=64, classes=2, rows=6)
    assert np.isfinite(check_head_blob(blob, Path("h.bin"))["updates"])
