"""Nothing the user made is lost: the --out rule, atomic publishing, staging folders, and
Ctrl-C / SIGTERM sent to a real `mcutext train` (docs/reliability.md, "Outputs and signals").

--out may hold nothing, an empty folder or an earlier output of the same kind (a bundle, a
firmware folder, ...); a folder of the user's or a file is refused (exit 2, one error line)
unless --force. A bundle is written in a staging folder beside the target and swapped in.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcutext.common import outputs
from mcutext.int8.bundle import load_bundle
from mcutext.common.errors import McutextError
from test_broken_files import DEAD_PORT, one_error, run_cli, tree

ROOT = Path(__file__).resolve().parents[1]


def precious_folder(path: Path) -> dict[str, bytes]:
    path.mkdir(parents=True)
    (path / "thesis.txt").write_text("precious\n")
    return tree(path)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if outputs.is_staging(p))


# --- the --out rule, command by command --------------------------------------------------------

def test_train_refuses_a_folder_that_is_not_a_bundle(capsys, tmp_path):
    d = tmp_path / "d"
    before = precious_folder(d)
    code, out, err = run_cli(capsys, "train", "sst2", "--limit", "50", "--epochs", "1",
                             "--out", d)
    assert code == 2
    line = one_error(err)
    assert str(d) in line and "not a bundle" in line and "'thesis.txt'" in line
    assert "--force" in err
    assert tree(d) == before and leftovers(tmp_path) == []


def test_train_refuses_a_file_in_the_way(capsys, tmp_path):
    f = tmp_path / "bundle"
    f.write_text("mine\n")
    code, _, err = run_cli(capsys, "train", "sst2", "--limit", "50", "--out", f)
    assert code == 2 and "a file is in the way" in one_error(err)
    assert f.read_text() == "mine\n" and not (tmp_path / "bundle.old").exists()
    assert leftovers(tmp_path) == []


def test_build_refuses_a_folder_that_is_not_a_firmware_folder(capsys, sst2_small_bundle,
                                                              tmp_path):
    d = tmp_path / "fw"
    before = precious_folder(d)
    code, _, err = run_cli(capsys, "build", sst2_small_bundle, "--board", "microbit",
                           "--out", d)
    assert code == 2 and "not a firmware folder" in one_error(err)
    assert tree(d) == before and leftovers(tmp_path) == []


def test_head_export_refuses_a_file_that_is_not_a_head(capsys, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    # checked before the port is opened: no device listens on DEAD_PORT
    code, _, err = run_cli(capsys, "head", "export", f, "--port", DEAD_PORT)
    assert code == 2 and "not a head blob" in one_error(err) and "cannot open" not in err
    assert f.read_text() == "mine\n"
    code, _, err = run_cli(capsys, "head", "export", tmp_path, "--port", DEAD_PORT)
    assert code == 2 and "is a directory" in err and "cannot open" not in err


def test_attack_refuses_a_folder_of_other_files(capsys, sst2_small_bundle, tmp_path):
    d = tmp_path / "att"
    before = precious_folder(d)
    code, _, err = run_cli(capsys, "attack", sst2_small_bundle, "--attack", "char",
                           "--limit", "2", "--out", d)
    assert code == 2 and "not a folder of attack results" in one_error(err)
    assert tree(d) == before


def test_ablate_and_teacher_refuse_a_folder_of_other_files(capsys, tmp_path):
    d = tmp_path / "d"
    before = precious_folder(d)
    code, _, err = run_cli(capsys, "ablate", "sst2", "--limit", "50", "--out", d)
    assert code == 2 and "not an ablation folder" in one_error(err)
    code, _, err = run_cli(capsys, "teacher", "train", "sst2", "--limit", "50", "--out", d)
    assert code == 2 and "not a teacher folder" in one_error(err)
    assert tree(d) == before


def test_fuzz_refuses_a_folder_of_other_files(capsys, sst2_small_bundle, tmp_path):
    from mcutext.reliability import fuzz
    d = tmp_path / "fz"
    precious_folder(d)
    (d / "gen").mkdir()      # a folder the fuzz build would have emptied
    (d / "gen" / "keep.c").write_text("int x;\n")
    before = tree(d)
    assert fuzz.main(["--bundle", str(sst2_small_bundle), "--out", str(d), "--seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert "not a fuzzing folder" in one_error(err) and tree(d) == before


def test_check_out_accepts_earlier_outputs_of_the_same_kind(sst2_small_bundle, tmp_path):
    outputs.check_out(tmp_path / "absent", "bundle")
    (tmp_path / "empty").mkdir()
    outputs.check_out(tmp_path / "empty", "bundle")
    outputs.check_out(sst2_small_bundle, "bundle")          # re-training over a bundle
    with pytest.raises(McutextError, match="not a firmware folder"):
        outputs.check_out(sst2_small_bundle, "firmware")    # but not another kind's output
    precious_folder(tmp_path / "d")
    outputs.check_out(tmp_path / "d", "bundle", force=True)
    att = tmp_path / "att"             # earlier attack results, a temp file left by a kill
    att.mkdir()
    for name in ("deepwordbug-tflm.jsonl", "deepwordbug-tflm.json",
                 "pwws-device.journal.jsonl", "pwws-device-serial.log",
                 f".pwws-device.json{outputs.STAGING_TAG}1-x"):
        (att / name).write_text("{}")
    outputs.check_out(att, "attack")
    (att / "notes.txt").write_text("mine")
    with pytest.raises(McutextError, match="not a folder of attack results"):
        outputs.check_out(att, "attack")
    blob = tmp_path / "old.head"
    blob.write_bytes(b"MTHD" + bytes(60))                   # an earlier head export
    outputs.check_out(blob, "head")


# --- publishing ---------------------------------------------------------------------------------

def test_publish_swaps_whole_folders_and_keeps_the_old_one_on_failure(tmp_path):
    out = tmp_path / "bundle"
    with outputs.staging(out, "bundle") as d:
        (d / "manifest.json").write_text('{"format": 1, "labels": ["a", "b"], "v": 1}')
    assert out.is_dir() and leftovers(tmp_path) == []
    old = tree(out)
    with pytest.raises(RuntimeError):
        with outputs.staging(out, "bundle") as d:
            (d / "manifest.json").write_text('{"format": 1, "labels": ["a", "b"], "v": 2}')
            raise RuntimeError("stopped half-way")
    assert tree(out) == old and leftovers(tmp_path) == []
    with outputs.staging(out, "bundle") as d:
        (d / "manifest.json").write_text('{"format": 1, "labels": ["a", "b"], "v": 3}')
    assert '"v": 3' in (out / "manifest.json").read_text() and leftovers(tmp_path) == []
    # --force replaces a file in the way, and only then
    f = tmp_path / "f"
    f.write_text("x")
    with outputs.staging(f, "bundle", force=True) as d:
        (d / "a").write_text("y")
    assert (f / "a").read_text() == "y" and leftovers(tmp_path) == []


def test_stale_staging_folders_are_refused_and_cleaned_up(capsys, sst2_small_bundle, tmp_path):
    # a staging folder left by a process that is gone (SIGKILL, power cut): a complete copy
    # of a bundle, yet never taken for one
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".bundle{outputs.STAGING_TAG}{dead}-abc123"
    shutil.copytree(sst2_small_bundle, stale)
    live = tmp_path / f".bundle{outputs.STAGING_TAG}{os.getpid()}-xyz789"   # still working
    live.mkdir()
    with pytest.raises(McutextError, match="staging folder"):
        load_bundle(stale)
    code, _, err = run_cli(capsys, "info", stale)
    assert code == 2 and "an unfinished bundle" in one_error(err)
    with outputs.staging(tmp_path / "bundle", "bundle") as d:
        (d / "x").write_text("new")
    assert not stale.exists() and live.exists()


def test_write_file_is_whole_or_absent(tmp_path):
    p = tmp_path / "a.json"
    outputs.write_file(p, "one\n")
    assert p.read_text() == "one\n"
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~outputs._umask())
    outputs.write_file(p, "two\n")
    assert p.read_text() == "two\n" and sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]


# --- the whole train command: over a bundle, over a folder with --force ------------------------

@pytest.mark.slow
def test_train_over_a_bundle_and_with_force(capsys, tmp_path):
    out = tmp_path / "b"
    code, _, err = run_cli(capsys, "train", "sst2", "--limit", "50", "--epochs", "1",
                           "--out", out)
    assert code == 0, err
    first = load_bundle(out).manifest["training"]["examples"]
    code, _, err = run_cli(capsys, "train", "sst2", "--limit", "60", "--epochs", "1",
                           "--out", out)    # an earlier bundle: replaced without --force
    assert code == 0, err
    assert load_bundle(out).manifest["training"]["examples"] > first
    d = tmp_path / "d"
    precious_folder(d)
    code, _, err = run_cli(capsys, "train", "sst2", "--limit", "50", "--epochs", "1",
                           "--out", d, "--force")
    assert code == 0, err
    assert not (d / "thesis.txt").exists() and load_bundle(d).labels
    assert leftovers(tmp_path) == []
    # convert rewrites the bundle the same way: a whole new copy swapped in
    code, _, err = run_cli(capsys, "convert", out)
    assert code == 0, err
    load_bundle(out).tflite_bytes
    assert leftovers(tmp_path) == []


# --- signals to a real `mcutext train` ----------------------------------------------------------

def _train_process(out: Path, tty: bool, epochs: int) -> tuple[subprocess.Popen, int | None]:
    """`mcutext train sst2` into `out` in a child process; with tty=True its stderr is a
    pseudo-terminal, so that the progress bar says when the model starts to fit."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "toolchain"), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("MCUTEXT_QUIET", None)
    master = None
    stderr = subprocess.PIPE
    if tty:
        master, slave = pty.openpty()
        stderr = slave
    p = subprocess.Popen([sys.executable, "-m", "mcutext.cli", "train", "sst2", "--limit",
                          "2000", "--epochs", str(epochs), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=stderr, env=env)
    if tty:
        os.close(slave)
    return p, master


def _read_until(fd: int, needle: bytes, p: subprocess.Popen, timeout: float = 600) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        assert time.monotonic() < deadline and p.poll() is None, buf[-2000:]
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break
    return buf


def _read_to_exit(fd: int, p: subprocess.Popen, timeout: float = 300) -> bytes:
    """Everything the child writes to the terminal until it has exited (read all along, so
    that a full terminal buffer never blocks it)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        r, _, _ = select.select([fd], [], [], 0.5)
        chunk = b""
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:   # EIO: the child's side of the terminal is closed
                time.sleep(0.05)
            buf += chunk
        if not chunk and p.poll() is not None:
            return buf
        assert time.monotonic() < deadline, f"still running after {timeout} s: {buf[-2000:]!r}"


def _one_stop_line(err: str, line: str) -> None:
    """`line` once, and nothing that looks like a traceback or a wrapped error (TensorFlow's
    own log lines on stderr aside)."""
    assert err.count(line) == 1, err[-3000:]
    for bad in ("Traceback", "SystemError", "RuntimeError", "KeyboardInterrupt", "error:"):
        assert bad not in err, err[-3000:]


@pytest.mark.parametrize("signum, wrapped, line", [
    (signal.SIGINT, SystemError, "aborted (Ctrl-C)"),
    (signal.SIGTERM, RuntimeError, "terminated (SIGTERM)")])
def test_an_error_caused_by_a_signal_is_the_signal(capsys, monkeypatch, signum, wrapped, line):
    """TensorFlow may turn the exception a signal raises inside a training step into a
    SystemError or RuntimeError (the outside probe saw a traceback and exit 1). Here a real
    signal reaches the CLI's handler inside `train` and the exception it raises is wrapped
    the same way: the CLI still prints its one line and exits 128 + the signal."""
    import mcutext.train.pipeline

    def wrapping_train(*args, **kw):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(30)          # the handler raises during the sleep
        except BaseException as e:
            raise wrapped("error return without exception set") from e
        raise AssertionError("the signal did not arrive")

    monkeypatch.setattr(mcutext.train.pipeline, "train", wrapping_train)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    code, out, err = run_cli(capsys, "train", "sst2")
    assert code == 128 + signum and out == ""
    assert [ln for ln in err.splitlines() if ln.strip()] == [line]
    # the CLI's handlers are gone again: this process's signals behave as before
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


@pytest.mark.parametrize("signum, line", [(signal.SIGINT, "aborted (Ctrl-C)"),
                                          (signal.SIGTERM, "terminated (SIGTERM)")])
def test_a_signal_inside_a_destructor_still_stops_the_run(capsys, monkeypatch, signum, line):
    """A signal whose handler runs inside a `__del__` (CI caught one in a regex object's)
    raises where Python cannot propagate it: Python printed a traceback, swallowed the
    exception and the training ran on to its last epoch. The signal must still stop the run
    at once, with its one line, even while the main thread then waits in a blocking call."""
    import gc

    import mcutext.train.pipeline

    class Dies:
        def __del__(self):
            os.kill(os.getpid(), signum)
            time.sleep(0.5)         # the handler raises here, inside __del__

    def train_with_a_dying_object(*args, **kw):
        Dies()
        gc.collect()
        time.sleep(20)              # the signal, delivered again, must end this
        raise AssertionError("the signal was swallowed")

    monkeypatch.setattr(mcutext.train.pipeline, "train", train_with_a_dying_object)
    hook = sys.unraisablehook
    t0 = time.monotonic()
    code, out, err = run_cli(capsys, "train", "sst2")
    assert code == 128 + signum and out == ""
    assert [ln for ln in err.splitlines() if ln.strip()] == [line]
    assert time.monotonic() - t0 < 10
    assert sys.unraisablehook is hook       # and the CLI's hook is gone again


@pytest.fixture
def previous_bundle(sst2_small_bundle, tmp_path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(sst2_small_bundle, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("signum, line", [(signal.SIGINT, "aborted (Ctrl-C)"),
                                          (signal.SIGTERM, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_while_the_model_fits(previous_bundle, tmp_path, signum, line):
    before = tree(previous_bundle)
    p, master = _train_process(previous_bundle, tty=True, epochs=40)
    try:
        _read_until(master, b"training sst2", p)   # the fit's progress bar is up
        time.sleep(1.0)                             # inside the first epochs' steps
        p.send_signal(signum)
        err = _read_to_exit(master, p).decode("utf-8", "replace")
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    assert rc == 128 + signum, err[-3000:]
    _one_stop_line(err, line)
    assert tree(previous_bundle) == before
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_sigterm_while_staging(previous_bundle, tmp_path):
    before = tree(previous_bundle)
    p, _ = _train_process(previous_bundle, tty=False, epochs=2)
    try:
        deadline = time.monotonic() + 900
        while not leftovers(tmp_path):    # the staging folder appears after the fit
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()[-3000:]
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=120)
        err = p.stderr.read().decode("utf-8", "replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 143, err[-3000:]
    _one_stop_line(err, "terminated (SIGTERM)")
    assert tree(previous_bundle) == before
    assert leftovers(tmp_path) == []
