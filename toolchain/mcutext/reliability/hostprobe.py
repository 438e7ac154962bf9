"""Host probe: hostile inputs to the real `mcutext` command line (docs/reliability.md).

The firmware has its fuzzers (mcutext.reliability.fuzz); this is the host's. Hypothesis draws hostile
inputs in five families and runs the real CLI on each (in-process through `cli.main`, a few
as real subprocesses):

    replies     a fake device on a local socket (mcutext.reliability.fakedevice) answers one command with a
                mutated reply: lines dropped, doubled, cut, swapped, a field replaced by
                garbage, binary lines, a boot notice, a missing final line, a connection
                closed part-way, an overlong line
    manifests   manifest.json of a real bundle with one field set to a hostile JSON value,
                deleted, swapped with another, nudged, or the file cut short
    data        TSV / CSV / JSONL files of hostile rows (any JSON type, control characters,
                invalid UTF-8, quotes, headers), read by classify --file, personalize, teach
    recipes     recipe files with a hostile value, an unknown key, a base cycle, labels to
                drop that do not exist, hostile datasets; trained for real (--limit 10)
    argv        hostile arguments (surrogate-escaped text, numbers, paths, ports) in the
                slots of every command that does not train or boot QEMU

Every run must end with exit code 0 or 2 (130 / 143 for signals), at most one `error:` line
and no traceback on stderr, and write nothing outside the output folder it was given (the
example's folder is snapshot before and after).

    python -m mcutext.reliability.hostprobe --bundle build/sst2/bundle --seconds 600 --out build/fuzz/host
    pytest tests/test_hostprobe.py            # the short, derandomized run of `make test`
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

FAMILIES = ("replies", "manifests", "data", "recipes", "argv")
OK_CODES = (0, 2, 130, 143)
TIMEOUT = "0.5"                               # --timeout of the device commands (seconds)
DEAD_PORT = "socket://127.0.0.1:9"            # nothing listens: "cannot open"
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


class ProbeFailure(AssertionError):
    """One run broke a rule; the message holds the family, the arguments and what broke."""


# --- running the CLI ------------------------------------------------------------------------

def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """`mcutext ARGV` in this process, in folder `cwd`: (exit code, stdout, stderr). An
    exception that escapes cli.main is a traceback: code 1 and the traceback on stderr."""
    from ..cli import main
    out, err = io.StringIO(), io.StringIO()
    old, stdin = os.getcwd(), sys.stdin
    os.chdir(cwd)
    sys.stdin = io.StringIO("")       # an interactive console (classify, no text) reads EOF
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:          # noqa: BLE001  (what the probe looks for)
                err.write(traceback.format_exc())
                code = 1
    finally:
        os.chdir(old)
        sys.stdin = stdin
    return code, out.getvalue(), err.getvalue()


def run_subprocess(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    """`python -m mcutext.cli ARGV` as a real process; str arguments carrying surrogate
    escapes go as the bytes they stand for (os.fsencode), as a shell would pass them."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT), MCUTEXT_QUIET="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.run([sys.executable, "-m", "mcutext.cli", *map(os.fsencode, argv)],
                       cwd=cwd, env=env, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def snapshot(root: Path, skip: str = "out") -> dict[str, str]:
    """Every path under root but `skip`, with a digest of each file's bytes."""
    snap = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == skip:
            continue
        snap[str(rel)] = (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file()
                          else "dir" if p.is_dir() else "other")
    return snap


def problems(code: int, err: str, before: dict, after: dict) -> list[str]:
    """The rules every run must keep."""
    found = []
    if code not in OK_CODES:
        found.append(f"exit code {code}")
    if "Traceback (most recent call last)" in err:
        found.append("a traceback on stderr")
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if len(errors) > 1:
        found.append(f"{len(errors)} error lines")
    if code == 2 and not errors and "Error:" not in err and "Usage:" not in err:
        found.append("exit code 2 without an error line")
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        found.append(f"wrote outside its output folder: {', '.join(changed[:5])}")
    return found


# --- hostile values ---------------------------------------------------------------------------

def _st():
    from hypothesis import strategies as st
    return st


def hostile_text():
    """Text a user or a file could hand the host: any Unicode, controls, surrogate escapes
    (argv that is not UTF-8), long words, empty."""
    st = _st()
    surrogates = st.lists(st.integers(0x80, 0xFF), min_size=1, max_size=4).map(
        lambda bs: os.fsdecode(bytes(bs)))
    return st.one_of(st.text(max_size=40), st.sampled_from(
        ["", " ", "\t", "\n", "\r\n", "\0", "caf\xe9", "\u0436" * 30, "a" * 2000, "\ufeffx",
         "--json", "-h", "'", '"', "\\", "x\ty", "\U0001f600" * 5]), surrogates,
        st.tuples(st.text(max_size=10), surrogates).map("".join))


def hostile_json():
    st = _st()
    scalars = st.one_of(
        st.none(), st.booleans(),
        st.sampled_from([0, 1, -1, 2, 3, 255, 256, -129, 2 ** 31, 2 ** 64, 10 ** 30]),
        st.sampled_from([0.0, -0.0, 0.5, 1e-45, 1e308, math.nan, math.inf, -math.inf]),
        st.sampled_from(["", "x", "0", "1.5", "nan", "negative", "\0", "\udcff", "é" * 30]))
    return st.one_of(scalars, st.lists(scalars, max_size=4),
                     st.dictionaries(st.sampled_from(["a", "scale", "zero_point", "n"]),
                                     scalars, max_size=3))


# --- the probe ------------------------------------------------------------------------------

class Probe:
    """Runs examples of the five families against one real bundle (never modified: each
    example works on copies in its own folder under `work`)."""

    def __init__(self, bundle: str | Path, work: str | Path, subprocess_share: float = 0.05):
        self.bundle = Path(bundle)
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.manifest = json.loads((self.bundle / "manifest.json").read_text(encoding="utf-8"))
        self.labels = list(self.manifest["labels"])
        self.tokenizer = dict(self.manifest["tokenizer"])
        self.subprocess_share = subprocess_share
        self.counts: Counter = Counter()
        self.kinds: Counter = Counter()
        self._n = 0

    # one example: a fresh folder with in/ and out/, the arguments, the checks
    def _folder(self) -> Path:
        self._n += 1
        root = Path(tempfile.mkdtemp(prefix=f"ex{self._n}-", dir=self.work))
        (root / "in").mkdir()
        (root / "out").mkdir()
        return root

    def example(self, family: str, draw) -> None:
        root = self._folder()
        try:
            with contextlib.ExitStack() as stack:
                argv, kind, sub = getattr(self, f"_{family}")(draw, root, stack)
                before = snapshot(root)
                code, _out, err = (run_subprocess if sub else run_cli)(argv, root)
                after = snapshot(root)
            self.counts[family] += 1
            self.kinds[(family, kind)] += 1
            found = problems(code, err, before, after)
            if found:
                raise ProbeFailure(f"{family} ({kind}): {'; '.join(found)}\n"
                                   f"argv: {argv!r}\nexit code {code}\nstderr:\n{err[-3000:]}")
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _fake(self, stack, replies: dict | None = None):
        from .fakedevice import FakeDevice, well_formed_replies
        r = well_formed_replies(self.labels, self.tokenizer)
        r.update(replies or {})
        return stack.enter_context(FakeDevice(r))

    def _bundle_copy(self, root: Path) -> Path:
        b = root / "in" / "bundle"
        shutil.copytree(self.bundle, b)
        return b

    def _data_file(self, root: Path, rows: list[tuple[str, str]], new: str = "greeting") -> Path:
        p = root / "in" / "mine.tsv"
        p.write_text("label\ttext\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")
        return p

    def _good_rows(self, new: str = "greeting") -> list[tuple[str, str]]:
        texts = ["a gripping , funny film", "dull and too long", "hello there", "hi friend",
                 "what a lovely story", "i want my money back"]
        labels = [self.labels[0], self.labels[-1], new, new, self.labels[-1], self.labels[0]]
        return list(zip(labels, texts))

    # --- replies ------------------------------------------------------------------------------
    # CLI command -> (the arguments after the command, the device commands it issues)
    REPLY_TARGETS = {
        "info": (["info"], ("info",)),
        "classify": (["classify", "a gripping , funny film", "--json"], ("info", "classify")),
        "explain": (["explain", "a gripping film"], ("info", "explain")),
        "head state": (["head", "state"], ("head state",)),
        "head export": (["head", "export", "out/head.bin"], ("head export",)),
        "head import": (["head", "import", "in/head.bin"],
                        ("info", "head state", "head import", "head import end")),
        "head save": (["head", "save"], ("head save",)),
        "head reset": (["head", "reset"], ("head reset",)),
        "personalize": (["personalize", "in/mine.tsv", "--new-labels", "--holdout", "0.34",
                         "--journal", "out/journal.jsonl", "--save"],
                        ("info", "head state", "label add", "head export", "classify", "learn",
                         "head save")),
        "teach": (["teach", "in/mine.tsv", "--epochs", "1", "--save"],
                  ("head state", "label add", "keep", "head imprint", "head config",
                   "head train", "head save")),
    }
    NO_TIMEOUT = ("info", "explain")     # commands without --timeout: the reply must end

    def _replies(self, draw, root: Path, stack):
        st = _st()
        from .fakedevice import CLOSE, head_blob, well_formed_replies
        target = draw(st.sampled_from(sorted(self.REPLY_TARGETS)), label="command")
        args, issued = self.REPLY_TARGETS[target]
        victim = draw(st.sampled_from(issued), label="answered badly")
        plan = draw(st.lists(st.tuples(
            st.sampled_from(["drop", "dup", "cut", "token", "insert", "noterm", "close",
                             "error", "long", "notice", "swap", "garbage"]),
            st.integers(0, 1 << 16), st.integers(0, 1 << 16), hostile_field()),
            min_size=1, max_size=3), label="mutations")
        good = well_formed_replies(self.labels, self.tokenizer)[victim]
        # teach waits up to 10 minutes for `head train` (it takes long on a board)
        ends = target.split()[0] in self.NO_TIMEOUT or victim == "head train"

        def answer(line: bytes) -> bytes:
            raw = good(line) if callable(good) else good
            return mutate_reply(raw, plan, ends, CLOSE)

        fake = self._fake(stack, {victim: answer})
        if target in ("personalize", "teach"):
            self._data_file(root, self._good_rows())
        if target == "head import":
            n = len(self.labels)
            (root / "in" / "head.bin").write_bytes(head_blob(n, 4, n + 2))
        argv = args[:1] + ["--port", fake.url] + args[1:]
        if not ends:
            argv += ["--timeout", TIMEOUT]
        return argv, f"{target}: {victim}: {'+'.join(p[0] for p in plan)}", False

    # --- manifests ----------------------------------------------------------------------------
    MANIFEST_COMMANDS = {
        "info": lambda b: ["info", str(b)],
        "info --json": lambda b: ["info", str(b), "--json"],
        "evaluate": lambda b: ["evaluate", str(b), "--limit", "3", "--runtime", "tflm"],
        "explain tflm": lambda b: ["explain", str(b), "a gripping film", "--runtime", "tflm"],
        "explain keras": lambda b: ["explain", str(b), "a gripping film", "--runtime", "keras"],
        "build": lambda b: ["build", str(b), "--board", "mps2-an386", "--out", "out/fw"],
    }

    def _manifests(self, draw, root: Path, stack):
        st = _st()
        b = self._bundle_copy(root)
        mp = b / "manifest.json"
        m = json.loads(mp.read_text(encoding="utf-8"))
        paths = sorted(_paths(m))
        op = draw(st.sampled_from(["set", "set", "delete", "swap", "nudge", "truncate"]),
                  label="edit")
        path = draw(st.sampled_from(paths), label="field")
        if op == "truncate":
            text = mp.read_bytes()
            mp.write_bytes(text[:draw(st.integers(0, len(text) - 1), label="cut at")])
            kind = "truncated file"
        else:
            if op == "set":
                _put(m, path, draw(hostile_json(), label="value"))
            elif op == "delete":
                _put(m, path, _DELETE)
            elif op == "swap":
                other = draw(st.sampled_from(paths), label="with")
                _put(m, path, _get(m, other))
            else:
                v = _get(m, path)
                delta = draw(st.sampled_from([1, -1, 2, 0.5, -2]), label="by")
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    _put(m, path, delta)
                else:
                    _put(m, path, v + delta if isinstance(delta, int) else v * delta)
            mp.write_text(json.dumps(m), encoding="utf-8")
            kind = f"{op} {path.split('.')[0]}"
        names = [k for k in self.MANIFEST_COMMANDS if k != "build" or self.allow_build]
        cmd = draw(st.sampled_from(names), label="command")
        return self.MANIFEST_COMMANDS[cmd](b.relative_to(root)), f"{kind} ({cmd})", False

    allow_build = False      # `mcutext build` compiles (seconds): the long run turns it on

    # --- data ---------------------------------------------------------------------------------
    def _data(self, draw, root: Path, stack):
        st = _st()
        fmt = draw(st.sampled_from(["tsv", "csv", "jsonl"]), label="format")
        cell = st.one_of(st.sampled_from(self.labels + ["greeting", "caf\xe9", "a b",
                                                        "\u0436" * 12, "x" * 30]),
                         hostile_text())
        rows = draw(st.lists(st.tuples(cell, cell), min_size=0, max_size=6), label="rows")
        raw = render_rows(fmt, rows, draw(st.one_of(st.none(), hostile_json()), label="json"))
        raw = draw(st.sampled_from([raw, b"\xef\xbb\xbf" + raw, raw.replace(b"\n", b"\r\n"),
                                    raw[: len(raw) // 2], raw + b"\xff\xfe\n", b""]),
                   label="bytes")
        p = root / "in" / f"mine.{fmt}"
        p.write_bytes(raw)
        cmd = draw(st.sampled_from(["classify --file", "personalize", "teach"]), label="command")
        fake = self._fake(stack)
        argv = {"classify --file": ["classify", "--file", f"in/{p.name}", "--port", DEAD_PORT],
                "personalize": ["personalize", f"in/{p.name}", "--port", fake.url,
                                "--new-labels", "--journal", "out/journal.jsonl",
                                "--timeout", TIMEOUT],
                "teach": ["teach", f"in/{p.name}", "--port", fake.url, "--epochs", "1",
                          "--timeout", TIMEOUT]}[cmd]
        return argv, f"{fmt} ({cmd})", False

    # --- recipes ------------------------------------------------------------------------------
    def _recipes(self, draw, root: Path, stack):
        st = _st()
        from ..model.recipe import TABLES, _RANGES
        ds = root / "in" / "ds"
        ds.mkdir()
        write_tiny_dataset(ds)
        keys = sorted(_RANGES) + [("train", "drop_labels"), ("eval", "exclude_labels"),
                                  ("model", "arch"), ("model", "head"), ("tokenizer", "buckets"),
                                  ("tokenizer", "typo_features"), ("train", "lr_schedule")]
        edit = draw(st.sampled_from(["value", "value", "unknown key", "base", "dataset",
                                     "drop_labels", "table"]), label="edit")
        head = {"name": "probe", "dataset": str(ds.relative_to(root))}
        tables: dict = {"model": {"embed_dim": 4, "conv_filters": 8, "feature_dim": 8}}
        if edit == "value":
            table, key = draw(st.sampled_from(keys), label="key")
            tables.setdefault(table, {})[key] = draw(hostile_toml(), label="value")
        elif edit == "unknown key":
            tables.setdefault(draw(st.sampled_from(TABLES), label="table"), {})["colour"] = 1
        elif edit == "base":
            head["base"] = draw(st.sampled_from(["probe", "sst2", "nonexistent", "", "../x"]),
                                label="base")
            (root / "in" / "probe.toml").write_text('name = "probe"\nbase = "recipe"\n')
        elif edit == "dataset":
            head["dataset"] = draw(st.sampled_from(["", "nonexistent", "in/ds/train.tsv", "/",
                                                    "in"]), label="dataset")
        elif edit == "drop_labels":
            tables["train"] = {"drop_labels": draw(st.lists(st.sampled_from(
                ["pos", "neg", "neutral", "", "caf\xe9"]), max_size=3), label="labels")}
        else:
            head[draw(st.sampled_from(TABLES), label="table")] = draw(hostile_toml(),
                                                                      label="value")
        p = root / "in" / "recipe.toml"
        p.write_text(render_toml(head, tables), encoding="utf-8")
        argv = ["train", "in/recipe.toml", "--limit", "10", "--epochs", "1",
                "--out", "out/bundle"]
        return argv, edit, False

    # --- argv ---------------------------------------------------------------------------------
    def _argv(self, draw, root: Path, stack):
        st = _st()
        b = self._bundle_copy(root)
        (root / "in" / "texts.txt").write_text("a fine film\n", encoding="utf-8")
        self._data_file(root, self._good_rows())
        (root / "in" / "folder").mkdir()
        fake = self._fake(stack)
        path_in = st.sampled_from(["in/bundle", "in/texts.txt", "in/mine.tsv", "in/folder",
                                   "in/missing", "", "in/bundle/manifest.json", "in"])
        path_out = st.sampled_from(["out/x", "out/x.bin", "out", "out/deep/x"])
        port = st.sampled_from([fake.url, DEAD_PORT, "", "socket://", "socket://127.0.0.1:x",
                                "socket://127.0.0.1:99999", "in/missing", "\udcff"])
        number = st.sampled_from(["0", "-1", "1", "3", "1e309", "nan", "inf", "0.5", "x",
                                  "99999999999999999999", "", "\udcff"])
        val = st.one_of(hostile_text(), number, path_in)
        B = "in/bundle"
        forms = {
            "info": lambda: ["info", draw(st.one_of(path_in, val))],
            "info --port": lambda: ["info", "--port", draw(port)],
            "evaluate": lambda: ["evaluate", B, "--split", draw(st.one_of(
                st.sampled_from(["test", "dev"]), val)), "--limit", draw(number),
                "--runtime", draw(st.one_of(st.sampled_from(["tflm", "keras"]), val))],
            "explain": lambda: ["explain", draw(st.one_of(st.just(B), path_in)),
                                draw(hostile_text()), "--runtime",
                                draw(st.sampled_from(["tflm", "keras", "device", "x"]))],
            "explain --port": lambda: ["explain", "--port", draw(port), draw(hostile_text())],
            "classify": lambda: ["classify", "--port", draw(port), draw(hostile_text()),
                                 "--timeout", draw(st.sampled_from([TIMEOUT, "0", "-1", "x"]))],
            "classify --file": lambda: ["classify", "--port", fake.url, "--file",
                                        draw(path_in), "--timeout", TIMEOUT],
            "head export": lambda: ["head", "export", draw(path_out), "--port", draw(port),
                                    "--timeout", TIMEOUT],
            "head import": lambda: ["head", "import", draw(path_in), "--port", draw(port),
                                    "--timeout", TIMEOUT],
            "head": lambda: ["head", draw(val), "--port", fake.url],
            "personalize": lambda: ["personalize", draw(path_in), "--port", draw(port),
                                    "--epochs", draw(number), "--holdout", draw(number),
                                    "--journal", draw(path_out), "--timeout", TIMEOUT,
                                    *draw(st.sampled_from([[], ["--resume"], ["--restart"],
                                                           ["--new-labels"]]))],
            "teach": lambda: ["teach", draw(path_in), "--port", draw(port), "--epochs",
                              draw(number), "--lr", draw(number), "--timeout", TIMEOUT],
            "build": lambda: ["build", draw(st.one_of(st.just(B), path_in)), "--board",
                              draw(st.one_of(st.sampled_from(["mps2-an386", "microbit"]), val)),
                              "--out", draw(path_out)],
            "boards": lambda: ["boards", draw(val)],
            "unknown": lambda: [draw(val)],
        }
        names = sorted(k for k in forms if k != "build" or self.allow_build)
        form = draw(st.sampled_from(names), label="form")
        argv = forms[form]()
        # a few run as real processes: argv bytes, the process's own stdout and stderr
        sub = (form in ("info --port", "classify", "head", "head export", "boards", "unknown")
               and draw(st.floats(0, 1), label="subprocess") < self.subprocess_share)
        del b
        return argv, form + (" (subprocess)" if sub else ""), sub


# --- helpers of the families ------------------------------------------------------------------

def hostile_field():
    st = _st()
    return st.one_of(st.sampled_from([b"", b"x", b"-1", b"-", b"nan", b"inf", b"1.5", b"0x10",
                                      b"99999999999999999999", b"\xff\xfe", b"of", b"ok",
                                      b"error", b"#", b"1" * 5000, b"\\x4", b"label"]),
                     st.binary(max_size=12).filter(lambda v: b"\n" not in v))


def mutate_reply(raw: bytes, plan: list, ends: bool, close: bytes) -> bytes:
    """Applies the drawn mutations to one well-formed reply (bytes with CR LF lines)."""
    lines = raw.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    tail = b"\r\n"
    closing = b""
    for op, a, c, field in plan:
        n = max(len(lines), 1)
        i = a % n
        if op == "drop" and lines:
            del lines[i]
        elif op == "dup" and lines:
            lines.insert(i, lines[i])
        elif op == "cut" and lines:
            lines[i] = lines[i][: c % (len(lines[i]) + 1)]
        elif op == "token" and lines:
            words = lines[i].split(b" ")
            words[c % len(words)] = field
            lines[i] = b" ".join(words)
        elif op == "insert":
            lines.insert(i, field)
        elif op == "noterm" and lines:
            lines = [ln for ln in lines if ln not in (b"ok",)]
        elif op == "close":
            closing = close
            cut = b"\r\n".join(lines)
            lines = [cut[: c % (len(cut) + 1)]]
            tail = b""
        elif op == "error":
            lines = [b"error " + field]
        elif op == "long":
            lines.insert(i, b"scores " + b"1 " * (1000 + c * 8))
        elif op == "notice":
            lines.insert(i, b"# mcutext firmware 0.1.0 protocol 1 board fake model fake ready")
        elif op == "swap" and len(lines) > 1:
            j = c % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "garbage":
            lines.insert(i, bytes((a + k * c) % 256 for k in range(1 + c % 64)).replace(
                b"\n", b" "))
    if ends and not closing and not (lines and (lines[-1] == b"ok"
                                                or lines[-1].startswith(b"error "))):
        lines.append(b"ok")      # commands without --timeout would wait 10 s for it
    body = b"\r\n".join(lines) + tail
    return body + closing


def render_rows(fmt: str, rows: list[tuple[str, str]], json_value) -> bytes:
    """The rows as a file of `fmt`; a JSONL file may get one row whose label or text is
    `json_value` (any JSON type). Surrogate escapes become the bytes they stand for."""
    def b(s: str) -> bytes:
        return s.encode("utf-8", "surrogateescape")
    if fmt == "tsv":
        return b"label\ttext\n" + b"".join(b(a) + b"\t" + b(t) + b"\n" for a, t in rows)
    if fmt == "csv":
        import csv
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["label", "text"])
        w.writerows(rows)
        return b(buf.getvalue())
    out = [json.dumps({"label": a, "text": t}) for a, t in rows]
    if json_value is not None:
        out.append(json.dumps({"label": json_value, "text": "x"}))
        out.append(json.dumps({"label": "greeting", "text": json_value}))
    return b("\n".join(out) + "\n")


def write_tiny_dataset(folder: Path) -> None:
    """train.tsv (40 rows) and test.tsv (10) of two labels: enough to train on in seconds."""
    words = ["good", "great", "fine", "bad", "awful", "dull", "film", "story", "plot", "cast"]
    rng = random.Random(7)
    for split, n in (("train", 40), ("test", 10)):
        rows = []
        for i in range(n):
            lab = "pos" if i % 2 else "neg"
            rows.append(f"{lab}\t{' '.join(rng.choice(words) for _ in range(5))}")
        (folder / f"{split}.tsv").write_text("label\ttext\n" + "\n".join(rows) + "\n")


def hostile_toml():
    st = _st()
    return st.one_of(st.sampled_from([0, -1, 1, 2 ** 31, 10 ** 20, 0.0, -0.5, 1e308, math.nan,
                                      math.inf, True, False, "", "x", "cnn", "nan", [], [1],
                                      ["a"], [1.5, "x"], {}, {"a": 1}]),
                     st.text(max_size=10))


def render_toml(head: dict, tables: dict) -> str:
    lines = [f"{k} = {_toml(v)}" for k, v in head.items()]
    for t, kv in tables.items():
        lines.append(f"[{t}]")
        lines += [f"{k} = {_toml(v)}" for k, v in kv.items()]
    return "\n".join(lines) + "\n"


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


_DELETE = object()


def _paths(obj, prefix: str = "") -> list[str]:
    """Dotted paths of every dict key (lists of numbers count as one value)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}{k}"
            out.append(p)
            out += _paths(v, p + ".")
    return out


def _get(m: dict, path: str):
    for k in path.split("."):
        m = m[k]
    return m


def _put(m: dict, path: str, value) -> None:
    *keys, last = path.split(".")
    for k in keys:
        m = m[k]
    if value is _DELETE:
        m.pop(last, None)
    else:
        m[last] = value


# --- the long run (`make fuzz-host`) ----------------------------------------------------------

CHUNK = {"replies": 20, "manifests": 6, "data": 20, "recipes": 2, "argv": 20}


def run_for(probe: Probe, seconds: float, seed: int, log=print) -> list[str]:
    """Rounds over the families, CHUNK[family] examples each with fresh random draws, until
    `seconds` have passed; returns the failures (each shrunk by hypothesis)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    rng = random.Random(seed)
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for fam in FAMILIES:
            if time.monotonic() >= deadline:
                break

            @hseed(rng.randrange(1 << 32))
            @settings(max_examples=CHUNK[fam], database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
            @given(st.data())
            def one(data):
                probe.example(fam, data.draw)

            try:
                one()
            except ProbeFailure as e:
                failures.append(str(e))
                log(f"FAILURE in {fam}: {str(e).splitlines()[0]}")
    return failures


def write_report(probe: Probe, failures: list[str], seconds: float, out: Path,
                 bundle: str) -> None:
    rows = [{"family": f, "kind": k, "runs": n} for (f, k), n in sorted(probe.kinds.items())]
    (out / "report.json").write_text(json.dumps(
        {"bundle": bundle, "seconds": seconds, "runs": dict(probe.counts), "kinds": rows,
         "failures": failures}, indent=2) + "\n")
    lines = [f"# host probe: {sum(probe.counts.values())} runs in {seconds:.0f} s "
             f"(bundle {bundle})", "", "| family | runs |", "|---|---:|"]
    lines += [f"| {f} | {probe.counts[f]} |" for f in FAMILIES]
    lines += ["", f"failures: {len(failures)}", ""]
    lines += ["```\n" + f + "\n```" for f in failures]
    lines += ["", "| family | kind | runs |", "|---|---|---:|"]
    lines += [f"| {r['family']} | {r['kind']} | {r['runs']} |" for r in rows]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    from ..firmware.boards import PROJECT_ROOT
    ap = argparse.ArgumentParser(prog="python -m mcutext.reliability.hostprobe",
                                 description="hostile inputs to the mcutext CLI for a while")
    ap.add_argument("--bundle", default=str(PROJECT_ROOT / "build" / "sst2" / "bundle"))
    ap.add_argument("--out", default=str(PROJECT_ROOT / "build" / "fuzz" / "host"))
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock")
    ap.add_argument("--no-build", action="store_true", help="leave `mcutext build` out")
    a = ap.parse_args(argv)
    if not (Path(a.bundle) / "manifest.json").is_file():
        print(f"error: {a.bundle}: no bundle to probe with", file=sys.stderr)
        print("hint: train one first (`make demo`) or pass --bundle DIR", file=sys.stderr)
        return 2
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        print("error: the host probe needs hypothesis", file=sys.stderr)
        print("hint: pip install -e '.[test]' (`make setup`)", file=sys.stderr)
        return 2
    os.environ.setdefault("MCUTEXT_QUIET", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = a.seed if a.seed is not None else int(time.time())
    work = Path(tempfile.mkdtemp(prefix="hostprobe-"))
    probe = Probe(a.bundle, work)
    probe.allow_build = not a.no_build
    print(f"host probe: {a.seconds:.0f} s, seed {seed}, bundle {a.bundle}", flush=True)
    t0 = time.monotonic()
    try:
        failures = run_for(probe, a.seconds, seed, log=lambda s: print(s, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - t0
    write_report(probe, failures, took, out, a.bundle)
    print(f"host probe: {sum(probe.counts.values())} runs "
          f"({', '.join(f'{f} {probe.counts[f]}' for f in FAMILIES)}), "
          f"{len(failures)} failures; report: {out / 'report.md'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
