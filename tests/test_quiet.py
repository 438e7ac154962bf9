"""A quiet stderr: TensorFlow / absl / Keras lines and library warnings only with --verbose."""

import os
import subprocess
import sys

import pytest


def _mcutext(cwd, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MCUTEXT_QUIET",
                                                            "TF_CPP_MIN_LOG_LEVEL")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run([sys.executable, "-m", "mcutext.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_train_and_explain_keep_stderr_for_the_project(tmp_path):
    """`mcutext train` and `mcutext explain` write nothing to stderr when all goes well (the
    progress bars are off without a terminal, the project's log lines say nothing on a
    --limit run); with --verbose the libraries' own lines come through."""
    p = _mcutext(tmp_path, "train", "sst2", "--limit", "200", "--epochs", "1", "--out", "tmp")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.startswith("bundle: tmp\n")
    assert (tmp_path / "tmp" / "manifest.json").is_file()
    q = _mcutext(tmp_path, "explain", "tmp", "a gripping , funny film")
    assert q.returncode == 0 and q.stderr == "" and "funny" in q.stdout
    v = _mcutext(tmp_path, "--verbose", "explain", "tmp", "a gripping , funny film")
    assert v.returncode == 0 and v.stdout == q.stdout
    assert v.stderr.strip(), "--verbose shows the libraries' lines (TensorFlow's, at least)"
