"""The device commands of the CLI: boards, build errors, flash (pyOCD), classify / info over a
port (against the host-built firmware core of test_protocol_c.py), and `mcutext run` in QEMU."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcutext.cli import main
from test_protocol_c import CoreServer, core  # noqa: F401  (the host-built core fixture)

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_boards(capsys):
    code, out, _ = run_cli(capsys, "boards")
    assert code == 0
    for name in ("netduinoplus2", "microbit", "mps2-an386", "nucleo-f401re"):
        assert name in out
    assert "QEMU microbit" in out and "hardware only" in out
    code, out, _ = run_cli(capsys, "boards", "--json")
    boards = {b["name"]: b for b in json.loads(out)}
    assert boards["microbit"]["ram_bytes"] == 16384
    assert boards["nucleo-f401re"]["pyocd_target"]


def test_unknown_board_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", str(tmp_path), "--board", "arduino-uno")
    assert code == 2
    assert "error: unknown board 'arduino-uno' (known boards: lm3s6965evb, microbit, " \
           "mps2-an386, mps2-an500, mps2-an505, netduinoplus2, nucleo-f401re" in err


def test_board_from_the_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MCUTEXT_BOARD", "no-such")
    code, _, err = run_cli(capsys, "run", str(tmp_path / "x.elf"))
    assert code == 2 and "unknown board 'no-such'" in err


def test_run_refuses_a_hardware_only_board(capsys, tmp_path):
    elf = tmp_path / "x.elf"
    elf.write_bytes(b"\x7fELF")
    code, _, err = run_cli(capsys, "run", "--board", "nucleo-f401re", str(elf))
    assert code == 2 and "has no QEMU machine" in err and "mcutext flash" in err


# --- flash: pyOCD is an optional dependency ---------------------------------------------------

def _no_pyocd_module(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyocd" else real(name, *a))


def test_flash_without_pyocd(capsys, tmp_path, monkeypatch):
    _no_pyocd_module(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pyocd executable either
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    code, _, err = run_cli(capsys, "flash", str(elf), "--board", "nucleo-f401re")
    assert code == 2
    assert "error: pyOCD is not installed" in err and "pip install 'mcutext[flash]'" in err


def test_flash_runs_pyocd_with_the_board_target(capsys, tmp_path, monkeypatch):
    """A stand-in `pyocd` on PATH records its arguments: the command mcutext runs."""
    _no_pyocd_module(monkeypatch)
    record = tmp_path / "args"
    fake = tmp_path / "bin" / "pyocd"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {record}\necho '0055:INFO:loader:Erased'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    code, out, _ = run_cli(capsys, "flash", str(elf), "--board", "nucleo-f401re")
    assert code == 0 and "flashed" in out
    assert record.read_text().split() == ["flash", "--target", "stm32f401retx", str(elf)]

    # A probe that is not there: pyOCD's message becomes a hint about the USB cable.
    fake.write_text("#!/bin/sh\necho 'No available debug probes are connected' >&2\nexit 1\n")
    code, _, err = run_cli(capsys, "flash", str(elf), "--board", "nucleo-f401re")
    assert code == 2 and "no debug probe found" in err and "hint:" in err


def test_flash_refuses_an_emulator_only_board(capsys, tmp_path):
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    code, _, err = run_cli(capsys, "flash", str(elf), "--board", "mps2-an386")
    assert code == 2 and "no pyOCD target" in err and "mcutext run --board mps2-an386" in err


# --- classify / info over a port ----------------------------------------------------------------

@pytest.fixture
def port(core, monkeypatch):  # noqa: F811
    srv = CoreServer(core)
    monkeypatch.setenv("MCUTEXT_PORT", srv.url)
    yield srv.url
    srv.close()


def test_classify_texts_json(capsys, port):
    code, out, _ = run_cli(capsys, "classify", "a gripping, funny movie", "dull", "--json")
    assert code == 0
    res = json.loads(out)
    assert [r["text"] for r in res] == ["a gripping, funny movie", "dull"]
    assert all(len(r["scores"]) == 3 and r["instructions"] for r in res)
    assert res[0]["words"] == 5


def test_classify_plain_explain_and_file(capsys, port, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("first text\n\nsecond one here\n")
    code, out, _ = run_cli(capsys, "classify", "--file", str(f), "--explain")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith("\tfirst text") and "scores" in lines[0]
    assert lines[1].strip().endswith("first") and lines[2].strip().endswith("text")
    assert any(line.endswith("\tsecond one here") for line in lines)


def test_plain_classify_prints_the_scores_that_decided_the_label(capsys):
    """Factory firmware: the int8 model's scores. Once personalized, the float head decides
    the label (its `head` line): the line shows the head's scores, says so, and its cost."""
    from mcutext.reliability.fakedevice import FakeDevice, well_formed_replies
    labels = ["negative", "positive"]
    tok = {"buckets": 10240, "max_words": 32, "typo_features": True, "seed": 0,
           "max_word_bytes": 24}
    replies = well_formed_replies(labels, tok)
    with FakeDevice(replies) as fake:
        code, out, _ = run_cli(capsys, "classify", "--port", fake.url, "a fine film")
    assert code == 0
    assert out.split("\t")[:2] == ["positive", "int8 scores -5 5"]
    replies["classify"] = (b"label 2 greeting\r\nhead 0.090 0.090 0.571 -\r\n"
                           b"head-bits 3db844de 3db94312 3f120f39 ff800000\r\n"
                           b"scores -34 -36\r\nlogits 0.122 0.073\r\nwords 2\r\n"
                           b"cost instructions tokenizer 2367 model 952622 head 885\r\nok\r\n")
    with FakeDevice(replies) as fake:
        code, out, _ = run_cli(capsys, "classify", "--port", fake.url, "hello there")
    assert code == 0
    label, scores, cost, text = out.rstrip("\n").split("\t")
    assert (label, scores, text) == ("greeting", "head scores 0.090 0.090 0.571 -",
                                     "hello there")
    assert cost == "instructions: tokenizer 2367, model 952622, head 885"


def test_classify_dataset_file(capsys, port):
    from mcutext.text.datasets import data_dir
    tsv = data_dir() / "sst2" / "test.tsv"
    code, out, _ = run_cli(capsys, "classify", "--file", str(tsv), "--json")
    assert code == 0 and len(json.loads(out)) > 100


def test_interactive_console(port, core):  # noqa: F811
    p = subprocess.run([sys.executable, "-m", "mcutext.cli", "classify"], text=True,
                       input="a fine film\n\nanother one\n", capture_output=True, timeout=60,
                       env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith("\ta fine film")
    assert "type a text" in p.stderr


def test_info_over_the_port(capsys, port):
    code, out, _ = run_cli(capsys, "info", "--port", port)
    assert code == 0 and "on host" in out and "protocol 1" in out and "flash: 104" in out
    code, out, _ = run_cli(capsys, "info", "--json")   # the port from MCUTEXT_PORT
    assert json.loads(out)["line_max"] == 160


def test_device_error_exit_code(capsys, port):
    code, _, err = run_cli(capsys, "classify", "caf\udce9")   # Latin-1 byte from argv
    assert code == 2 and "device error 7: invalid UTF-8" in err


def test_port_that_is_not_there(capsys, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{s.getsockname()[1]}"
        code, _, err = run_cli(capsys, "classify", "--port", url, "hello")
    assert code == 2 and f"error: cannot open {url}" in err and "hint:" in err
    monkeypatch.delenv("MCUTEXT_PORT", raising=False)
    code, _, err = run_cli(capsys, "classify", "hello")
    assert code == 2 and "MCUTEXT_PORT" in err


# --- mcutext run: QEMU with the UART on TCP, stopped cleanly -------------------------------------

@pytest.mark.qemu
def test_run_prints_the_url_and_stops_on_ctrl_c(sst2_small_bundle, tmp_path):
    from mcutext.firmware.build import build
    res = build(sst2_small_bundle, "microbit", tmp_path / "fw")
    p = subprocess.Popen([sys.executable, "-m", "mcutext.cli", "run", "--board", "microbit",
                          res["elf"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = p.stdout.readline()
            m = re.match(r"serial: (socket://127\.0\.0\.1:\d+)", line)
            url = m.group(1) if m else None
        assert url, "no URL printed"
        q = subprocess.run([sys.executable, "-m", "mcutext.cli", "classify", "--port", url,
                            "--json", "what a lovely film"], capture_output=True, text=True,
                           timeout=60)
        assert q.returncode == 0, q.stderr
        assert json.loads(q.stdout)[0]["label"] in ("negative", "positive")
        qemu_pids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                   text=True).stdout.split()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=15) == 0
        assert "stopping QEMU" in p.stderr.read()
        for pid in qemu_pids:   # QEMU is gone, not orphaned
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def microbit_elf(sst2_small_bundle, tmp_path_factory) -> Path:
    from mcutext.firmware.build import build
    return Path(build(sst2_small_bundle, "microbit", tmp_path_factory.mktemp("fw") / "mb")["elf"])


def _gone(pid: str) -> bool:
    """The process has ended (a zombie waiting for its new parent to reap it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.qemu
def test_qemu_dies_with_mcutext_run_even_on_sigkill(microbit_elf):
    p = subprocess.Popen([sys.executable, "-m", "mcutext.cli", "run", "--board", "microbit",
                          str(microbit_elf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    qemu_pids: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not p.stdout.readline().startswith("serial: "):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
        qemu_pids = subprocess.run(["pgrep", "-P", str(p.pid), "qemu-system-arm"],
                                   capture_output=True, text=True).stdout.split()
        assert qemu_pids, "no QEMU child of mcutext run"
        p.kill()     # SIGKILL: mcutext cannot stop QEMU itself
        p.wait(timeout=10)
        deadline = time.monotonic() + 2.0
        while not all(_gone(pid) for pid in qemu_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(pid) for pid in qemu_pids), f"QEMU {qemu_pids} outlived mcutext run"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in qemu_pids:
            if not _gone(pid):
                os.kill(int(pid), signal.SIGKILL)


@pytest.mark.qemu
def test_run_and_flash_refuse_an_elf_built_for_another_board(capsys, microbit_elf, tmp_path,
                                                             monkeypatch):
    import shutil
    from mcutext.firmware.build import elf_board
    code, out, err = run_cli(capsys, "run", "--board", "netduinoplus2", str(microbit_elf))
    assert code == 2 and out == ""          # QEMU not started, no URL printed
    assert f"error: {microbit_elf}: built for microbit, not for netduinoplus2" in err
    assert "--board microbit" in err
    # a copy without its build folder still carries its board (a section in the ELF)
    copied = tmp_path / "copy.elf"
    shutil.copy(microbit_elf, copied)
    assert elf_board(copied) == "microbit"
    code, _, err = run_cli(capsys, "run", "--board", "mps2-an386", str(copied))
    assert code == 2 and "built for microbit, not for mps2-an386" in err
    _no_pyocd_module(monkeypatch)
    record = tmp_path / "args"
    fake = tmp_path / "bin" / "pyocd"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {record}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    code, _, err = run_cli(capsys, "flash", str(copied), "--board", "nucleo-f401re")
    assert code == 2 and "built for microbit, not for nucleo-f401re" in err
    assert not record.exists()              # pyOCD was not started
    code, out, err = run_cli(capsys, "flash", str(copied), "--board", "microbit")
    assert code == 0, err                   # the matching board: handed to pyOCD
    assert record.read_text().split() == ["flash", "--target", "nrf51", str(copied)]
