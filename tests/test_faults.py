"""Host tool faults against the real firmware in QEMU (netduinoplus2): the port vanishes (QEMU
killed) or the device resets in the middle of `mcutext personalize` and `mcutext attack
--runtime device`; the error is one clear line, the journal keeps the work done, and
`--resume` on a rebooted device ends with exactly the result of an uninterrupted run. Also:
timeouts and refused ports give a hint, `--log` records the exchanges, and the firmware refuses
damaged head blobs and keeps its head. docs/reliability.md, "Faults and bad inputs".
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

from mcutext.cli import main
from mcutext.device.client import Device, DeviceError
from mcutext.common.errors import McutextError
from test_broken_files import one_error  # noqa: E402  (one shared definition)

BOARD = "netduinoplus2"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def hint(err: str) -> str:
    return next((ln for ln in err.splitlines() if ln.startswith("hint: ")), "")


def kill_when(vm, path: Path, needle: str, count: int, timeout: float = 300) -> threading.Thread:
    """Kills QEMU (SIGKILL: the port vanishes mid-exchange) once the file at `path` (a
    journal, a session log) holds `count` occurrences of `needle`."""
    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and vm.running:
            try:
                n = path.read_text().count(needle)
            except OSError:
                n = 0
            if n >= count:
                vm.process.kill()
                return
            time.sleep(0.005)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def cut_off(firmware, tmp_path: Path, capsys, args: list, path: Path, needle: str,
            count: int) -> tuple[str, str]:
    """Runs the CLI command `args` against a fresh QEMU that is killed (the port vanishes)
    once `path` holds `count` occurrences of `needle`. Checks the command fails with exit 2
    and one `lost the connection` line; returns that line and the whole stderr."""
    from mcutext.device.qemu import Qemu
    vm = Qemu(firmware["elf"], BOARD, log_path=tmp_path / "qemu1.log")
    url = vm.start()
    try:
        watcher = kill_when(vm, path, needle, count)
        code, _, err = run_cli(capsys, *args, "--port", url)
        watcher.join()
    finally:
        vm.stop()
    assert code == 2
    line = one_error(err)
    assert line.startswith(f"error: lost the connection to {url}"), line
    return line, err


# --- timeouts and refused ports (no QEMU needed) -------------------------------------------

def test_timeout_gives_a_hint_and_the_log_records_it(tmp_path, capsys):
    """A port where nothing answers (a board without mcutext firmware, a wrong baud rate)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    url = f"socket://127.0.0.1:{silent.getsockname()[1]}"
    log = tmp_path / "session.log"
    try:
        code, _, err = run_cli(capsys, "classify", "--port", url, "--timeout", "0.5",
                               "--log", log, "some text")
    finally:
        silent.close()
    assert code == 2
    assert one_error(err) == f"error: no answer from {url} within 0.5 s to 'ping'"
    h = hint(err)
    for word in ("cable", "baud rate (115200 8N1)", "right one", "runs mcutext firmware"):
        assert word in h, h
    text = log.read_text()
    assert f"# open {url}" in text and re.search(r"> ping [0-9a-f]{8}\\n", text), text


def test_journal_ignores_a_torn_last_line(tmp_path):
    from mcutext.common.journal import Journal
    j = Journal(tmp_path / "j.jsonl")
    j.start({"kind": "test", "n": 3})
    for k in range(3):
        j.append({"step": k})
    j.close()
    with open(j.path, "a") as f:
        f.write('{"step": 3, "lo')          # a power cut in the middle of a line
    got = Journal(j.path).load()
    assert got.entries == [{"step": 0}, {"step": 1}, {"step": 2}]
    got.check({"kind": "test", "n": 3}, hint="")
    with pytest.raises(McutextError, match="differs from this one in n$"):
        got.check({"kind": "test", "n": 4}, hint="")
    (tmp_path / "bad.jsonl").write_text("garbage\n")
    with pytest.raises(McutextError, match="not a journal of mcutext"):
        Journal(tmp_path / "bad.jsonl").load()


def test_resume_without_a_journal(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "mine.tsv"
    data.write_text("label\ttext\npositive\tfine\nnegative\tdull\n")
    code, _, err = run_cli(capsys, "personalize", data, "--port", "socket://127.0.0.1:9",
                           "--resume")
    assert code == 2
    assert one_error(err).startswith("error: nothing to resume: no journal at build/journal/"
                                     "personalize-mine-")


def test_refused_port(capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens there now
    code, _, err = run_cli(capsys, "info", "--port", f"socket://127.0.0.1:{port}")
    assert code == 2
    assert one_error(err).startswith(f"error: cannot open socket://127.0.0.1:{port}: ")
    assert "cable" in hint(err)


# --- QEMU -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def firmware(sst2_small_bundle, tmp_path_factory):
    from mcutext.firmware.build import build
    out = tmp_path_factory.mktemp("fw_faults")
    # MT_FAULT_COMMAND: the test-only `fault` command (a real CPU fault, then a reset)
    return build(sst2_small_bundle, BOARD, out / BOARD, defines={"MT_FAULT_COMMAND": "1"})


@pytest.fixture(scope="module")
def owner_data(tmp_path_factory) -> Path:
    from mcutext.text.datasets import load_split
    dev = load_split("sst2", "dev")
    rows = [f"{y}\t{t}" for t, y in zip(dev.texts[:20], dev.labels[:20])]
    rows += [f"greeting\t{t}" for t in ("hello there", "hi friend", "hey hello", "hi hi",
                                        "good morning to you", "hello hello friend")]
    p = tmp_path_factory.mktemp("owner") / "mine.tsv"
    p.write_text("label\ttext\n" + "\n".join(rows) + "\n")
    return p


PERSONALIZE = ["--epochs", "2", "--new-labels", "--reset", "--lr", "0.1", "--json"]
STEPS = 2 * 21    # 26 examples, 5 held out, 2 epochs


@pytest.fixture(scope="module")
def reference(firmware, owner_data, tmp_path_factory) -> dict:
    """An uninterrupted session: its JSON report and the head it leaves on the device."""
    import contextlib
    import io
    from mcutext.device.qemu import boot
    tmp = tmp_path_factory.mktemp("ref")
    out = io.StringIO()
    with boot(firmware["elf"], BOARD) as url:
        with contextlib.redirect_stdout(out):
            assert main(["personalize", str(owner_data), "--port", url, *PERSONALIZE,
                         "--journal", str(tmp / "j.jsonl")]) == 0
        assert main(["head", "export", str(tmp / "head.bin"), "--port", url]) == 0
    assert not (tmp / "j.jsonl").exists()     # a session that ends deletes its journal
    rep = json.loads(out.getvalue())
    assert rep["updates"] == STEPS and rep["added_labels"] == ["greeting"]
    return {"report": rep, "head": (tmp / "head.bin").read_bytes()}


def test_personalize_resumes_after_the_port_vanishes(firmware, owner_data, reference,
                                                     tmp_path, capsys):
    from mcutext.device.qemu import boot
    capsys.readouterr()
    journal, log = tmp_path / "journal.jsonl", tmp_path / "session.log"
    args = ["personalize", owner_data, *PERSONALIZE, "--journal", journal, "--log", log]
    want = reference["report"]

    # past the checkpoint at step 20
    line, err = cut_off(firmware, tmp_path, capsys, args, journal, '"step"', 25)
    m = re.search(rf"; the work done is kept in {re.escape(str(journal))} \((\d+) of {STEPS} "
                  r"learning steps\)$", line)
    assert m and 25 <= int(m.group(1)) < STEPS, line
    assert "run the same command with --resume to continue" in hint(err)
    assert journal.is_file()

    # without --resume the kept work is not overwritten
    with boot(firmware["elf"], BOARD, log_path=tmp_path / "qemu2.log") as url:
        code, _, err = run_cli(capsys, *args, "--port", url)
        assert code == 2 and "an interrupted session is kept there" in one_error(err)
        assert "--resume" in hint(err)
        # another session (other options) cannot resume this one
        code, _, err = run_cli(capsys, *args, "--port", url, "--resume", "--holdout", "0.3")
        assert code == 2, err
        assert one_error(err) == (f"error: {journal}: the interrupted session differs from "
                                  "this one in holdout")
        # a fresh device (factory head): --resume restores the checkpoint, replays, finishes
        code, out, err = run_cli(capsys, *args, "--port", url, "--resume")
        assert code == 0, err
        assert json.loads(out) == want
        assert main(["head", "export", str(tmp_path / "head.bin"), "--port", url]) == 0
    assert (tmp_path / "head.bin").read_bytes() == reference["head"]
    assert not journal.exists()
    text = log.read_text()
    assert text.count(f"# open {url}") == 2          # appended by both sessions
    assert re.search(r"> learn [0-9a-f]{8} greeting\\t", text)
    assert "< loss " in text and "< updates 42" in text


class FaultAfter(Device):
    """Sends the firmware's test-only `fault` command before learning step `at`: a real CPU
    fault, answered with `error 6` and followed by a reset that loses the head in RAM."""

    at = 30

    def learn(self, *args, **kw):
        self.learned = getattr(self, "learned", 0) + 1
        if self.learned == self.at:
            with pytest.raises(DeviceError) as e:
                self.command("fault")
            assert e.value.code == 6
            time.sleep(0.5)      # the reset and the boot notice; the head is factory again
        return super().learn(*args, **kw)


def test_personalize_resumes_after_a_device_reset(firmware, owner_data, reference, tmp_path,
                                                  capsys):
    from mcutext.cli.personalize import personalize_on_device
    from mcutext.text.datasets import load_file
    from mcutext.device.qemu import boot
    ds = load_file(owner_data)
    journal = tmp_path / "journal.jsonl"
    kw = dict(epochs=2, new_labels=True, reset=True, lr=0.1, journal=journal)
    with boot(firmware["elf"], BOARD) as url:
        # a session that fails before doing anything leaves no journal behind
        with Device(url, timeout=10) as dev:
            with pytest.raises(McutextError, match="labels not on the device: greeting"):
                personalize_on_device(dev, ds.texts, ds.labels, **dict(kw, new_labels=False))
        assert not journal.exists()
        with FaultAfter(url, timeout=10) as dev:
            with pytest.raises(McutextError) as e:
                personalize_on_device(dev, ds.texts, ds.labels, **kw)
            time.sleep(0.2)
            dev.ping()
            assert dev.boots == 1                   # the boot notice after the reset was seen
        msg = str(e.value)
        assert re.search(r"(the device counts 1 updates, the session expects 30: it "
                         r"restarted|device error 4: no such label)", msg), msg
        assert f"the work done is kept in {journal} (29 of {STEPS} learning steps)" in msg
        with Device(url, timeout=30) as dev:
            rep = personalize_on_device(dev, ds.texts, ds.labels, resume=True, **kw)
            blob = dev.export_head()
    assert rep["updates"] == STEPS
    assert blob == reference["head"]
    assert not journal.exists()


def test_attack_on_the_device_resumes_after_the_port_vanishes(firmware, sst2_small_bundle,
                                                               tmp_path, capsys):
    from mcutext.device.qemu import boot
    args = ["attack", sst2_small_bundle, "--attack", "deepwordbug", "--runtime", "device",
            "--n", "6", "--budget", "1", "--json"]
    with boot(firmware["elf"], BOARD) as url:
        code, out, err = run_cli(capsys, *args, "--port", url, "--out", tmp_path / "ref")
    assert code == 0, err
    want = json.loads(out)
    assert not (tmp_path / "ref" / "deepwordbug-device.journal.jsonl").exists()

    out_dir = tmp_path / "run"
    journal = out_dir / "deepwordbug-device.journal.jsonl"
    line, err = cut_off(firmware, tmp_path, capsys, [*args, "--out", out_dir], journal,
                        '"record"', 2)
    m = re.search(rf"the work done is kept in {re.escape(str(journal))} \((\d) of 6 "
                  r"examples\)$", line)
    assert m and 2 <= int(m.group(1)) < 6, line
    assert "--resume" in hint(err)

    with boot(firmware["elf"], BOARD, log_path=tmp_path / "qemu2.log") as url:
        code, out, err = run_cli(capsys, *args, "--port", url, "--out", out_dir, "--resume")
    assert code == 0, err
    got = json.loads(out)
    timing = {"seconds", "load_seconds", "seconds_per_example", "records"}
    assert {k: v for k, v in got.items() if k not in timing} == \
        {k: v for k, v in want.items() if k not in timing}
    assert (out_dir / "deepwordbug-device.jsonl").read_text() == \
        (tmp_path / "ref" / "deepwordbug-device.jsonl").read_text()
    assert not journal.exists()
    log = (out_dir / "deepwordbug-device-serial.log").read_text()
    assert log.count("# open ") == 2 and "< scores " in log


def test_attack_that_never_starts_leaves_no_journal(sst2_small_bundle, tmp_path, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"socket://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    args = ["attack", sst2_small_bundle, "--attack", "deepwordbug", "--runtime", "device", "--n", "2",
            "--port", url, "--out", tmp_path]
    for _ in range(2):      # the second run is not told about an interrupted one
        code, _, err = run_cli(capsys, *args)
        assert code == 2
        assert one_error(err).startswith(f"error: cannot open {url}: "), err
        assert not (tmp_path / "deepwordbug-device.journal.jsonl").exists()


# --- head blobs the device must refuse --------------------------------------------------------

def _recrc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def test_device_refuses_bad_head_blobs_and_keeps_its_head(firmware, sst2_small_bundle,
                                                          tmp_path, capsys):
    """The firmware's own checks (firmware/head_blob.c mt_head_load), with the host's
    checks bypassed: blobs sent straight with Device.import_head."""
    from mcutext.int8.bundle import load_bundle
    from mcutext.device.personalize import BLOB_HEADER, NAME_BYTES, HeadSimulator
    from mcutext.device.qemu import boot
    bundle = load_bundle(sst2_small_bundle)
    with boot(firmware["elf"], BOARD) as url:
        dev = Device(url, timeout=30)
        dev.reset_head()
        dev.add_label("greeting")
        for label, text in (("greeting", "hello there"), ("positive", "a fine film"),
                            ("negative", "dull and slow")):
            dev.learn(label, text)
        good = dev.export_head()
        h, _c0, rows = struct.unpack_from("<HHH", good, 8)
        fl = BLOB_HEADER.size + ((rows + 3) & ~3)
        nan = _recrc(good[:fl + 8] + struct.pack("<f", float("nan")) + good[fl + 12:])
        bias = fl + 4 * rows * h
        inf_bias = _recrc(good[:bias] + struct.pack("<f", float("inf")) + good[bias + 4:])
        other_rows = HeadSimulator.from_bundle(bundle, max_new_labels=3).blob()  # 5 rows
        sim = HeadSimulator.from_bundle(bundle)
        sim.W0[0, 0] += 1.0                         # another factory head: fingerprint differs
        other_model = sim.blob()
        name_at = len(good) - 4 - 4 * NAME_BYTES
        bad_name = _recrc(good[:name_at] + b"hi there".ljust(NAME_BYTES, b"\0")
                          + good[name_at + NAME_BYTES:])
        bad_flag = _recrc(good[:BLOB_HEADER.size] + b"\x07" + good[BLOB_HEADER.size + 1:])
        cases = {
            "NaN weight": (nan, 4, "invalid blob"),
            "inf bias": (inf_bias, 4, "invalid blob"),
            "bad CRC": (good[:100] + bytes([good[100] ^ 1]) + good[101:], 8,
                        "CRC mismatch: blob not loaded"),
            "wrong label count": (other_rows, 4, "blob of another model or firmware build"),
            "another factory head": (other_model, 4, "blob of another model or firmware build"),
            "label name with a space": (bad_name, 4, "invalid blob"),
            "bad row flag": (bad_flag, 4, "invalid blob"),
        }
        before_state = dev.head_state()
        probe = {k: v for k, v in dev.classify("hello there friend").items()
                 if k in ("label", "scores", "head_bits")}
        for case, (blob, code, msg) in cases.items():
            with pytest.raises(DeviceError) as e:
                dev.import_head(blob)
            assert e.value.code == code and msg in e.value.device_message, (case, e.value)
            assert dev.export_head() == good, case
        # truncated: the data stops early, and `end` gives the full length or the short one
        short = good[:len(good) - 64]
        for n_end in (len(good), len(short)):
            for off in range(0, len(short), 64):
                dev.command(f"head import {off} {short[off:off + 64].hex()}")
            with pytest.raises(DeviceError) as e:
                dev.command(f"head import end {n_end}")
            assert e.value.code == 4, e.value
            assert dev.export_head() == good
        assert dev.head_state() == before_state
        assert {k: v for k, v in dev.classify("hello there friend").items()
                if k in ("label", "scores", "head_bits")} == probe
        # the intact blob still loads (the refusals left no half-received state behind)
        dev.reset_head()
        assert dev.import_head(good) == 3 and dev.export_head() == good
        dev.close()     # QEMU's UART socket takes one client at a time

        # `mcutext head import` refuses a blob of another shape before sending it
        f = tmp_path / "other.bin"
        f.write_bytes(other_rows)
        code, _, err = run_cli(capsys, "head", "import", f, "--port", url)
        assert code == 2
        assert one_error(err) == (f"error: {f}: 5 label rows, the device's model has 6 (a head "
                                  "of another model); nothing was sent to the device")
        # and a good file through the CLI, with the session log
        f.write_bytes(good)
        log = tmp_path / "head.log"
        code, out, err = run_cli(capsys, "head", "import", f, "--port", url, "--log", log)
        assert code == 0 and "head loaded (3 updates)" in out, err
        assert "> head import end " in log.read_text()


def test_teach_after_the_port_vanishes(firmware, tmp_path, capsys):
    """`mcutext teach` with QEMU killed part way through the `keep`s: one error line that says
    how far it got and how to start over; the same command with --reset on a rebooted device
    ends with exactly the head of an uninterrupted run."""
    from mcutext.device.qemu import boot
    capsys.readouterr()
    data = tmp_path / "new.tsv"
    rows = [("greeting", f"{g} {w}") for g in ("hello", "hi", "hey") for w in
            ("there", "friend", "you", "all")]
    rows += [("weather", f"{w} {d}") for w in ("will it rain", "is it sunny", "cold")
             for d in ("today", "tomorrow", "tonight", "this week")]     # 24 examples
    data.write_text("label\ttext\n" + "".join(f"{lab}\t{t}\n" for lab, t in rows))
    args = ["teach", data, "--epochs", "2", "--lr", "0.1", "--json"]

    with boot(firmware["elf"], BOARD, log_path=tmp_path / "ref.log") as url:
        code, out, err = run_cli(capsys, *args, "--port", url)
        assert code == 0, err
        assert main(["head", "export", str(tmp_path / "ref.bin"), "--port", url]) == 0
    assert json.loads(out)["kept"] == 24

    log = tmp_path / "session.log"
    line, err = cut_off(firmware, tmp_path, capsys, [*args, "--log", log], log, "> keep ", 3)
    m = re.search(r"\((\d+) of 24 examples kept\)$", line)
    assert m and 2 <= int(m.group(1)) < 24, line
    assert "run the same command again with --reset" in hint(err)
    with boot(firmware["elf"], BOARD, log_path=tmp_path / "qemu2.log") as url:
        code, out, err = run_cli(capsys, *args, "--port", url, "--reset")
        assert code == 0, err
        assert main(["head", "export", str(tmp_path / "again.bin"), "--port", url]) == 0
    assert (tmp_path / "again.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
