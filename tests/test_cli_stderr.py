"""What the CLI writes to stderr: the project's progress bars (steps, time left) and lines;
TensorFlow / absl / Keras lines and library warnings only with --verbose."""

import os
import pty
import re
import subprocess
import sys

import pytest


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MCUTEXT_QUIET",
                                                            "TF_CPP_MIN_LOG_LEVEL")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def _mcutext(cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcutext.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=900)


def _mcutext_on_a_terminal(cwd, *args) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (so the progress bars draw); returns the exit
    code, stdout and what the terminal received."""
    master, slave = pty.openpty()
    env = {**_env(), "TERM": "xterm", "COLUMNS": "120"}   # a terminal of a known kind and width
    p = subprocess.Popen([sys.executable, "-m", "mcutext.cli", *args], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    out = p.stdout.read().decode()
    return p.wait(timeout=60), out, seen.decode("utf-8", errors="replace")


@pytest.mark.slow
def test_stderr_has_the_projects_progress_and_nothing_else(tmp_path):
    """`mcutext train` on a terminal: the student's bar counts steps (2 epochs x 7 batches of
    200 examples), not epochs, with the time elapsed and left; every line on stderr is that
    bar. `mcutext explain` without a terminal writes nothing to stderr; with --verbose the
    libraries' own lines come through."""
    code, out, term = _mcutext_on_a_terminal(tmp_path, "train", "sst2", "--limit", "200",
                                             "--epochs", "2", "--out", "tmp")
    assert code == 0, term
    assert out.startswith("bundle: tmp\n") and (tmp_path / "tmp" / "manifest.json").is_file()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term)
    frames = [f.strip() for f in re.split(r"[\r\n]+", plain) if f.strip()]
    # the fit's bar, then the test split's evaluation (keras, then int8) in bars of their own
    train = [f for f in frames if f.startswith("training sst2 ")]
    others = [f for f in frames if not f.startswith(("training sst2 ", "classifying (keras) ",
                                                     "classifying (tflm) "))]
    assert train and others == [], repr(term[-4000:])
    assert re.fullmatch(r"training sst2 \S+ 14/14 epoch 2/2 loss [\d.]+ val_acc [\d.]+ "
                        r"\d+:\d\d:\d\d \d+:\d\d:\d\d", train[-1]), train[-1]
    q = _mcutext(tmp_path, "explain", "tmp", "a gripping , funny film")
    assert q.returncode == 0 and q.stderr == "" and "funny" in q.stdout
    v = _mcutext(tmp_path, "--verbose", "explain", "tmp", "a gripping , funny film")
    assert v.returncode == 0 and v.stdout == q.stdout
    assert v.stderr.strip(), "--verbose shows the libraries' lines (TensorFlow's, at least)"


def test_without_a_terminal_a_task_writes_plain_progress_lines(monkeypatch, capsys):
    """stderr not a terminal (pytest captures it): a line every MCUTEXT_PROGRESS_EVERY
    seconds (0 here: every step) with the count, the status and the time left; none when
    MCUTEXT_QUIET is set."""
    from mcutext.common import progress
    monkeypatch.delenv("MCUTEXT_QUIET", raising=False)
    monkeypatch.setenv("MCUTEXT_PROGRESS_EVERY", "0")
    with progress.task("teacher sst2", total=4) as update:
        for step in range(4):
            update(status=f"epoch {step // 2 + 1}/2")
            update(advance=1)
    assert list(progress.track(["a", "b"], 2, "classifying")) == ["a", "b"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 6
    for line, (n, tot, what) in zip(lines, [(1, 4, " epoch 1/2"), (2, 4, " epoch 1/2"),
                                            (3, 4, " epoch 2/2"), (4, 4, " epoch 2/2"),
                                            (1, 2, ""), (2, 2, "")]):
        name = "teacher sst2" if tot == 4 else "classifying"
        assert re.fullmatch(rf"{name}: {n}/{tot}{what} \(\d+:\d\d:\d\d elapsed, about "
                            r"\d+:\d\d:\d\d left\)", line), line
    monkeypatch.setenv("MCUTEXT_QUIET", "1")
    with progress.task("quiet", total=2) as update:
        update(advance=2)
    assert capsys.readouterr().err == ""
