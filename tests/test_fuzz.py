"""The fuzz targets of the firmware's input paths (firmware/fuzz/, docs/reliability.md): built
with clang, libFuzzer, ASan and UBSan around the real core and a real generated model, seeded
with real traffic, each run briefly (the CI smoke run; `make fuzz` runs them for 10 minutes).
Inputs that once crashed a target are kept in tests/fuzz_regressions/<target>/ and run
first, every time."""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from mcutext.reliability import fuzz

ROOT = Path(__file__).resolve().parents[1]
REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
SMOKE_SECONDS = 10


@pytest.fixture(scope="module")
def targets(sst2_small_bundle, tmp_path_factory):
    if shutil.which("clang") is None:
        pytest.fail("clang not found: install clang and libclang-rt-14-dev (`make setup`)")
    out = tmp_path_factory.mktemp("fuzz")
    exes = fuzz.build_targets(sst2_small_bundle, out)
    seeds = fuzz.write_seeds(sst2_small_bundle, exes, out)
    return out, exes, seeds


@pytest.mark.slow
@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_fuzz_smoke(targets, target):
    out, exes, seeds = targets
    extra = [REGRESSIONS / target] if (REGRESSIONS / target).is_dir() else []
    r = fuzz.run_target(exes[target], seeds[target], out, SMOKE_SECONDS, extra_inputs=extra)
    assert not r["crashed"], f"{target} crashed ({r['crash_files']}):\n{r['log_tail']}"
    assert r["executions"] > 0, r["log_tail"]
    assert r["corpus_files"] > 0


def _echo(exe: Path, data: bytes, tmp_path: Path) -> bytes:
    """The device's replies to one input (the target echoes them with MT_FUZZ_ECHO=1); the
    last run of the input, after libFuzzer's empty warm-up run."""
    f = tmp_path / "input"
    f.write_bytes(data)
    p = subprocess.run([str(exe), str(f)], capture_output=True, timeout=60,
                       env=dict(os.environ, MT_FUZZ_ECHO="1"))
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    return p.stdout


@pytest.mark.slow
def test_protocol_target_drives_the_real_device(targets, tmp_path):
    """The protocol target runs the real command loop and model: a recorded seed session
    answers as the device does, `head save` writes to the board's storage, and the device
    boots and answers again after the target's reset."""
    _, exes, seeds = targets
    out = _echo(exes["protocol"], (seeds["protocol"] / "save").read_bytes(), tmp_path)
    runs = out.split(b"# mcutext firmware fuzz protocol 1 board fuzz model ")
    session = runs[-2]            # the input; runs[-1] is the boot after the reset
    assert b"\r\nlearned 2 greet\r\n" in session
    assert b"\r\nsaved seq 1 bytes " in session
    assert runs[-1].endswith(b"ready\r\npong fuzz\r\nok\r\n")
    out = _echo(exes["protocol"], b"classify a gripping, funny movie\n", tmp_path)
    reply = out.split(b"ready\r\n")[-2]
    assert reply.startswith(b"label ") and b"\r\nwords 5\r\n" in reply


@pytest.mark.slow
def test_head_import_target_loads_a_recorded_blob(targets, tmp_path):
    """The seed blob, exported by the device itself, is accepted as sent (and then exported
    back byte for byte by the target's own check); with a damaged line it is refused."""
    _, exes, seeds = targets
    blob = (seeds["head_import"] / "blob_0").read_bytes()[2:]
    out = _echo(exes["head_import"], bytes([0x04, 63]) + blob, tmp_path)
    assert b"\r\nupdates 9\r\nok\r\n" in out
    out = _echo(exes["head_import"], bytes([0x00, 1]) + blob, tmp_path)
    assert b"\r\nupdates 9\r\nok\r\n" not in out and b"error 4 usage: head import" in out


@pytest.mark.slow
def test_a_diverging_step_is_refused(targets, tmp_path):
    """Found with the targets' finite-head check: `head config lr 100 momentum 0.99 l2 100`
    then a few `learn` made the head's weights inf / NaN; such a head exports a blob the
    device refuses to import (so a saved head would not come back after a reset). The step
    is now refused and the head stays finite (tests/fuzz_regressions/*/head-diverges)."""
    _, exes, _ = targets
    data = (REGRESSIONS / "protocol" / "head-diverges").read_bytes()
    out = _echo(exes["protocol"], data, tmp_path)
    assert b"error 4 the step would make the head overflow (lower lr or l2): not learned" in out
    blob = b"".join(bytes.fromhex(ln.split(b" ")[2].decode())
                    for ln in out.split(b"# mcutext firmware")[-2].split(b"\r\n")
                    if ln.startswith(b"data "))
    # header 32 bytes, flags of the 6 rows padded to 8, then floats (and the added rows'
    # names, all zero here: 0.0), then the CRC
    floats = struct.unpack_from(f"<{(len(blob) - 44) // 4}f", blob, 32 + 8)
    assert blob and all(math.isfinite(v) for v in floats)
